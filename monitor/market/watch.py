"""The process's one market feed, kept pointed at the positions the monitor holds, and the accounts' snapshots as
of its latest marks.

`MarketWatch` owns a `MarketFeed` with its own `MarkPrices` (priority=FEED: first in line inside the poller's
per-IP budget), watches exactly the futures product types of the open positions of the accounts read (updated
after each read: `polled`), re-prices snapshots from the feed's fresh marks (`live`), and pushes every mark of a
held symbol into a `MarkHistory` for the odds of liquidation. While the feed is stale, `live` hands the snapshot
back as read (the account read's own marks): the feed logs that once, `health` shows it.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
from collections import Counter
from collections.abc import Callable
from datetime import datetime
from decimal import Decimal

import aiohttp

from monitor.clock import Clock
from monitor.config.model import Config
from monitor.domain import STABLE, AccountSnapshot, FuturesAccount
from monitor.exchange.bitget.market import MarkPrices, Marks
from monitor.exchange.bitget.ratelimit import IpBudget
from monitor.exchange.bitget.window import FEED
from monitor.market.feed import SPOT, FeedHealth, MarketFeed
from monitor.market.live import LivePosition, live_positions
from monitor.market.mark import Mark
from monitor.risk.odds import MarkHistory

_Q = Decimal("0.00000001")  # Bitget reports amounts to 8 places
_ZERO = Decimal(0)
VERDICT_WAIT = 2  # mark intervals a verdict waits for the feed's next answer before asking itself
REQUEST_SHARE = 3  # a feed request may take this many mark intervals (capped by request_timeout)


def feed_timeout(config: Config) -> float:
    """A feed request's own timeout: a mark older than a few intervals is of no use, so do not wait the
    account reads' request_timeout for it."""
    return min(REQUEST_SHARE * config.market.mark_interval.total_seconds(),
               config.monitor.request_timeout.total_seconds())  # fmt: skip


class MarketWatch:
    def __init__(
        self, config: Config, session: aiohttp.ClientSession, budget: IpBudget, clock: Clock, history: MarkHistory
    ) -> None:
        m = config.market
        self.prices = MarkPrices(session, config.monitor.bitget_url, budget, clock, timeout=feed_timeout(config),
                                 priority=FEED)  # fmt: skip
        self.feed = MarketFeed(self.prices, clock, mark_interval=m.mark_interval.total_seconds(),
                               spot_interval=m.spot_interval.total_seconds())  # fmt: skip
        self.clock = clock
        self.history = history  # the service's: the odds of liquidation read it (account reads add to it too)
        self._held: dict[str, frozenset[tuple[str, str]]] = {}  # account -> (product type, symbol) of its positions
        self._holders: dict[str, dict[str, None]] = {}  # product type -> the accounts holding it (in order)
        self._symbols: Counter[tuple[str, str]] = Counter()  # how many accounts hold each
        self._types: Counter[str] = Counter()
        self.feed.subscribe(self._record)

    def apply(self, config: Config) -> None:
        """Take a reloaded bitget_url and timeouts (the intervals apply from the next start)."""
        self.prices.configure(config.monitor.bitget_url, feed_timeout(config))

    def subscribe(self, callback: Callable[[str], None]) -> Callable[[], None]:
        return self.feed.subscribe(callback)

    async def run(self) -> None:
        await self.feed.run()

    # -- what to watch -------------------------------------------------------------------------------------

    def polled(self, name: str, snapshot: AccountSnapshot | None) -> None:
        """After each read of an account: watch the product types of its open positions (and stop watching
        those no account holds any more)."""
        held = frozenset((p.product_type, p.symbol) for p in snapshot.positions) if snapshot is not None else None
        self._hold(name, held or frozenset())

    def forget(self, name: str) -> None:
        self._hold(name, frozenset())

    def _hold(self, name: str, held: frozenset[tuple[str, str]]) -> None:
        old = self._held.get(name, frozenset())
        if held == old:
            return
        if held:
            self._held[name] = held
        else:
            self._held.pop(name, None)
        types = {pt for pt, _ in held}
        for pt in {pt for pt, _ in old} - types:
            self._holders[pt].pop(name, None)
        for pt in types:
            self._holders.setdefault(pt, {})[name] = None
        self._symbols.subtract(old)
        self._symbols.update(held)
        self._symbols = +self._symbols  # drop what nobody holds
        before = set(self._types)
        self._types = Counter(pt for pt, _ in self._symbols)
        if set(self._types) != before:
            self.feed.watch(self._types)

    def holders(self, product_type: str) -> list[str]:
        """The accounts holding positions of this product type."""
        return list(self._holders.get(product_type, ()))

    # -- what it read --------------------------------------------------------------------------------------

    def mark(self, product_type: str, symbol: str) -> Mark | None:
        return self.feed.mark(product_type, symbol)

    def positions(self, snapshot: AccountSnapshot) -> tuple[LivePosition, ...]:
        return live_positions(snapshot, self.feed.mark)

    async def read(self, product_type: str, since: datetime | None = None) -> Marks:
        """The marks of a product type asked no earlier than `since` (the end of the account read that found a
        position gone: a mark from before it could predate the liquidation), for judging that position
        (`alerts.departures.MarkSource`). While the feed watches the product type and is fresh, its next answer
        serves (at most about a mark interval away) instead of a tickers request of its own; otherwise, or when
        it does not come within VERDICT_WAIT intervals, a read of its own, first in line."""
        since = since or self.clock.now()
        product_type = product_type.upper()
        if product_type in self.feed.watched and not self.feed.is_stale(product_type):
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(VERDICT_WAIT * self.feed.mark_interval):
                    while (latest := self.prices.latest(product_type)) is None or latest.asked_at < since:
                        await self.feed.updated(self.feed.version)
                    return latest
        return await self.prices.read(product_type, since)

    def spot_price(self, coin: str) -> Decimal | None:
        """USDT per coin from the latest fresh spot tickers; None when there is none (the poller then asks
        Bitget's own valuation)."""
        return self.feed.spot_price(coin)

    def live(self, snapshot: AccountSnapshot) -> AccountSnapshot:
        """The snapshot with its positions at the latest fresh marks (as read where there is none), each classic
        futures account's unrealized PnL and equity moved by its positions' PnL change since the read (equity is
        wallet plus unrealized PnL: the wallet does not move with the mark), and the equity of coin-margined
        futures accounts in USDT at the latest fresh spot price of their coin."""
        positions = tuple(p.position for p in self.positions(snapshot)) if snapshot.positions else ()
        moved: dict[tuple[str, str], Decimal] = {}
        for read, now in zip(snapshot.positions, positions, strict=True):
            if now is not read:
                key = (read.product_type, read.margin_coin)
                moved[key] = moved.get(key, _ZERO) + now.unrealized_pnl - read.unrealized_pnl
        futures = tuple(self._in_usdt(_moved(f, moved.get((f.product_type, f.margin_coin), _ZERO)))
                        for f in snapshot.futures)  # fmt: skip
        if futures != snapshot.futures:
            snapshot = dataclasses.replace(snapshot, futures=futures)
        return dataclasses.replace(snapshot, positions=positions) if positions else snapshot

    def _in_usdt(self, account: FuturesAccount) -> FuturesAccount:
        if account.margin_coin in STABLE or (price := self.feed.spot_price(account.margin_coin)) is None:
            return account
        return dataclasses.replace(account, usdt_equity=(account.equity * price).quantize(_Q))

    def mark_age(self, snapshot: AccountSnapshot | None, now: datetime) -> float | None:
        """Seconds since the oldest fresh mark of the snapshot's positions was asked for; None without one."""
        if snapshot is None:
            return None
        marks = [self.feed.mark(p.product_type, p.symbol) for p in snapshot.positions]
        ages = [(now - m.at).total_seconds() for m in marks if m is not None]
        return max(ages) if ages else None

    def health(self) -> tuple[FeedHealth, ...]:
        return self.feed.health()

    def _record(self, product_type: str) -> None:
        if product_type == SPOT:
            return
        for pt, symbol in self._symbols:
            if pt == product_type and (mark := self.feed.mark(pt, symbol)) is not None:
                self.history.add(pt, symbol, mark.at, mark.price)


def _moved(account: FuturesAccount, pnl: Decimal) -> FuturesAccount:
    """`account` with its positions' unrealized PnL moved by `pnl` (its margin coin), its USDT rate kept."""
    if not pnl:
        return account
    equity = account.equity + pnl
    usdt = account.usdt_equity
    if usdt is not None and account.equity:
        usdt = (usdt * equity / account.equity).quantize(_Q)
    return dataclasses.replace(account, equity=equity, unrealized_pnl=account.unrealized_pnl + pnl, usdt_equity=usdt)
