"""The market feed: the marks of every watched futures product type every `mark_interval`, the USDT price of spot
coins every `spot_interval`, read once for all accounts.

The price that liquidates a position is public and the same for everyone, so one unsigned tickers request per
product type serves every account. The feed's requests go first in line inside the per-IP budget (its
`MarkPrices` is built with `priority=FEED`): one read that serves every account must not wait behind a minute
of signed account reads.

A product type (or the spot prices) without a fresh answer for `stale_after` intervals is stale: `mark` and
`spot_price` then answer None, so callers fall back to the marks of their account reads, and the feed logs
once when it becomes stale and once when it recovers. Times of marks are the clock's `now()` before the request
went out; staleness is judged on the clock's monotonic time.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from decimal import Decimal

from monitor import errors
from monitor.clock import Clock, wait_for_event
from monitor.exchange.bitget import endpoints as ep
from monitor.exchange.bitget.market import MarkPrices, Marks, SpotPrices
from monitor.market.mark import Mark

log = logging.getLogger(__name__)

SPOT = "spot"  # the name the spot prices go by in `health`, `stale` and updates
STALE_AFTER = 3  # intervals without a fresh answer
_ONE = Decimal(1)

Subscriber = Callable[[str], None]  # called with the product type (or SPOT) that has a new answer


@dataclass(frozen=True, slots=True)
class FeedHealth:
    """One watched source of the feed (a product type, or SPOT) for the page, `/metrics` and `/readyz`."""

    name: str
    stale: bool
    age: float | None  # seconds since the last fresh answer was asked for; None: none yet
    error: str | None  # why the last read failed; None when it succeeded


@dataclass(slots=True)
class _Source:
    interval: float
    since: float  # monotonic: when it was last asked for with success, or when watching began
    answered: bool = False
    reading: asyncio.Task[None] | None = None
    error: str | None = None
    logged_stale: bool = False


class MarketFeed:
    """Reads the marks of the watched futures product types and the spot prices, and keeps the latest.

    Run `run()` as a task (it reads until cancelled); `watch()` changes the product types at any time.
    """

    def __init__(
        self,
        prices: MarkPrices,
        clock: Clock,
        *,
        mark_interval: float = 1.0,
        spot_interval: float = 10.0,
        stale_after: int = STALE_AFTER,
        spot: bool = True,
    ) -> None:
        if mark_interval <= 0 or spot_interval <= 0 or stale_after < 1:
            raise ValueError("mark_interval and spot_interval must be positive, stale_after at least 1")
        self.prices = prices
        self.clock = clock
        self.mark_interval = mark_interval
        self.spot_interval = spot_interval
        self.stale_after = stale_after
        self.version = 0  # counts answers: a subscriber that polls compares it
        self._sources: dict[str, _Source] = {}
        self._marks: dict[tuple[str, str], tuple[Mark, float]] = {}  # (product type, symbol) -> mark, asked (mono)
        self._spot: dict[str, tuple[Decimal, float]] = {}  # coin -> USDT price, asked (monotonic)
        self._subscribers: list[Subscriber] = []
        self._failing: set[int] = set()  # ids of subscribers whose failure has been logged (once, not every second)
        self._updated = asyncio.Event()
        self._wake = asyncio.Event()  # the loop looks again: a read ended, the watched set changed
        if spot:
            self._sources[SPOT] = _Source(spot_interval, clock.monotonic())

    # -- what to read --------------------------------------------------------------------------------------

    def watch(self, product_types: Iterable[str]) -> None:
        """Read these futures product types from now on (any case), and stop reading the others. A product type
        newly watched counts as stale only once it has gone `stale_after` intervals without an answer. Raises
        ValueError for a name that is not a futures product type."""
        wanted = {pt.upper() for pt in product_types}
        unknown = sorted(wanted - set(ep.FUTURES_PRODUCT_TYPES))
        if unknown:
            raise ValueError(f"not futures product types: {', '.join(unknown)} ({', '.join(ep.FUTURES_PRODUCT_TYPES)})")
        now = self.clock.monotonic()
        for name in [n for n in self._sources if n != SPOT and n not in wanted]:
            source = self._sources.pop(name)
            if source.reading is not None:
                source.reading.cancel()
        for name in sorted(wanted - set(self._sources)):
            self._sources[name] = _Source(self.mark_interval, now)
        self._wake.set()  # read what is newly watched at once

    @property
    def watched(self) -> frozenset[str]:
        return frozenset(n for n in self._sources if n != SPOT)

    # -- what it read --------------------------------------------------------------------------------------

    def mark(self, product_type: str, symbol: str, *, stale_ok: bool = False) -> Mark | None:
        """The latest mark of a symbol; None when there is none, or when it is not fresh (its product type is
        stale or unwatched, or the symbol was missing from the answers since) unless `stale_ok`."""
        found = self._marks.get((product_type.upper(), symbol))
        if found is None:
            return None
        mark, asked = found
        if not stale_ok and (self.is_stale(mark.product_type) or self._too_old(asked, self.mark_interval)):
            return None
        return mark

    def spot_price(self, coin: str) -> Decimal | None:
        """USDT per coin from the spot tickers (USDT itself: 1); None when unknown or not fresh."""
        if coin == "USDT":
            return _ONE
        found = self._spot.get(coin)
        if found is None or self.is_stale(SPOT) or self._too_old(found[1], self.spot_interval):
            return None
        return found[0]

    def is_stale(self, name: str) -> bool:
        """Whether a product type (or SPOT) has had no fresh answer for `stale_after` of its intervals. One that
        is not watched is stale: nothing keeps its marks fresh."""
        source = self._sources.get(name.upper() if name != SPOT else SPOT)
        return source is None or self._too_old(source.since, source.interval)

    @property
    def stale(self) -> frozenset[str]:
        """The watched product types (and SPOT) that are stale now."""
        return frozenset(name for name in self._sources if self.is_stale(name))

    def health(self) -> tuple[FeedHealth, ...]:
        now = self.clock.monotonic()
        return tuple(
            FeedHealth(name, self.is_stale(name), now - s.since if s.answered else None, s.error)
            for name, s in sorted(self._sources.items())
        )

    def _too_old(self, asked: float, interval: float) -> bool:
        return self.clock.monotonic() - asked > self.stale_after * interval

    # -- subscribers ---------------------------------------------------------------------------------------

    def subscribe(self, callback: Subscriber) -> Callable[[], None]:
        """Call `callback(product_type or SPOT)` after each new answer; returns the function that unsubscribes.
        A callback runs in the feed's task: it must be quick and must not block (hand work to a queue)."""
        self._subscribers.append(callback)

        def unsubscribe() -> None:
            if callback in self._subscribers:
                self._subscribers.remove(callback)

        return unsubscribe

    async def updated(self, after: int) -> int:
        """Wait until `version` has moved past `after`; the new version."""
        while self.version <= after:
            await self._updated.wait()
        return self.version

    # -- reading -------------------------------------------------------------------------------------------

    async def run(self) -> None:
        """Read every interval until cancelled. A read still in flight when its next turn comes is not doubled:
        the next one starts as soon as it ends."""
        next_at: dict[str, float] = {}
        try:
            while True:
                now = self.clock.monotonic()
                for name, source in self._sources.items():
                    due = next_at.get(name, now)
                    if now < due or source.reading is not None:
                        continue
                    # Evenly spaced; a turn missed (a slow answer, a busy loop) is skipped, not made up in a burst.
                    next_at[name] = due + source.interval if due + source.interval > now else now + source.interval
                    source.reading = asyncio.create_task(self._read(name, source), name=f"market feed {name}")
                for name in [n for n in next_at if n not in self._sources]:
                    del next_at[name]
                self._log_staleness()
                # Until the next turn of a source not being read, and at least every interval (staleness is logged
                # even while every read hangs); a read that ends (late or not) wakes us too.
                turns = [next_at[n] for n, s in self._sources.items() if s.reading is None]
                wake = min([*turns, now + self.mark_interval])
                self._wake.clear()
                await wait_for_event(self._wake, wake - self.clock.monotonic())
        finally:
            for source in self._sources.values():
                if source.reading is not None:
                    source.reading.cancel()
            await asyncio.gather(*(s.reading for s in self._sources.values() if s.reading), return_exceptions=True)

    async def _read(self, name: str, source: _Source) -> None:
        asked = self.clock.monotonic()
        try:
            if name == SPOT:
                self._take_spot(await self.prices.read_spot(), asked)
            else:
                self._take_marks(await self.prices.read(name, self.clock.now()), asked)
        except errors.ExchangeError as exc:
            if str(exc) != source.error:
                log.debug("market feed: %s not read: %s", name, exc)
            source.error = str(exc)
            return
        except Exception as exc:  # a bug must not stop the feed; staleness then says so, and this once
            if repr(exc) != source.error:
                log.exception("market feed: reading %s failed", name)
            source.error = repr(exc)
            return
        finally:
            source.reading = None
            self._wake.set()
        if self._sources.get(name) is not source:  # no longer watched while it was read
            return
        source.since, source.answered, source.error = asked, True, None
        self._log_staleness()
        self.version += 1
        self._updated.set()
        self._updated = asyncio.Event()
        for callback in list(self._subscribers):
            try:
                callback(name)
            except Exception:  # one broken subscriber must not starve the others
                if id(callback) not in self._failing:
                    self._failing.add(id(callback))
                    log.exception("market feed: a subscriber failed on %s (logged once until it recovers)", name)
            else:
                self._failing.discard(id(callback))

    def _take_marks(self, marks: Marks, asked: float) -> None:
        # Symbol by symbol: one symbol unreadable in this answer keeps its older mark (and its older time).
        for symbol, price in marks.prices.items():
            self._marks[(marks.product_type, symbol)] = (Mark(marks.product_type, symbol, price, marks.asked_at), asked)

    def _take_spot(self, spot: SpotPrices, asked: float) -> None:
        for coin, price in spot.prices.items():
            self._spot[coin] = (price, asked)

    def _log_staleness(self) -> None:
        """Log each source once when it becomes stale and once when it recovers."""
        now = self.clock.monotonic()
        for name, source in self._sources.items():
            stale = self.is_stale(name)
            if stale and not source.logged_stale:
                why = source.error or ("still waiting for an answer" if source.reading else "no answer yet")
                log.warning(
                    "market feed: no fresh %s prices for %.1f s (%s); falling back to account reads",
                    name, now - source.since, why,
                )  # fmt: skip
            elif source.logged_stale and not stale:
                log.info("market feed: %s prices fresh again", name)
            source.logged_stale = stale
