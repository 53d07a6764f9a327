"""What the rules see of the accounts the poller reads: the poller's readings (data), completed with what the
alert engine knows from the database (each account's last good data from before this process started) and
when this process began watching each account."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Collection, Mapping
from dataclasses import replace
from datetime import datetime

from monitor.config.model import MonitorSettings
from monitor.domain import AccountSnapshot
from monitor.errors import StorageError, reason
from monitor.exchange.bitget.codes import fix_of
from monitor.poller.state import Reading, Status
from monitor.risk.odds import MarkHistory
from monitor.rules.view import AccountView
from monitor.store.lastread import last_snapshots
from monitor.store.marks import recent_marks
from monitor.store.repository import Store

log = logging.getLogger(__name__)


class AccountViews:
    def __init__(
        self,
        settings: Callable[[], MonitorSettings],
        last_success: Mapping[str, datetime],
        marks: MarkHistory | None = None,
    ) -> None:
        self._settings = settings  # the current [monitor] settings (a reload replaces them)
        # Each symbol's recent marks, for the odds of liquidation. The service owns it (a mark feed may push into
        # it too); every read's position marks are samples as well, so the odds work without a feed.
        self.marks = marks
        self._last_success = last_success  # the engine's, loaded from the database
        self._first_seen: dict[str, datetime] = {}
        self._sampled: dict[str, AccountSnapshot] = {}  # per account: the read whose marks the history holds
        # Each account's last stored read (monitor.store.lastread), for an account this process has not read yet.
        self._stored: dict[str, AccountSnapshot] = {}
        self._blind_since: dict[str, datetime] = {}  # per account without fresh data: its last good data before
        self._recovered: dict[str, tuple[datetime, datetime]] = {}  # (blind since, the read that ended it)
        # The snapshot to judge and whether it is an estimate from the mark price (monitor.live.LiveJudge); none:
        # the account as read.
        self.adjust: Callable[[Reading], tuple[AccountSnapshot | None, bool]] | None = None

    async def seed_marks(self, store: Store, now: datetime) -> int:
        """Seed the mark history from the position marks stored within its window (after a restart); returns
        the symbols seeded. The rows are read in a worker thread and merged here, in the event loop, where the
        reads add their marks too. A database that cannot be read is logged: the history builds up from reads."""
        if self.marks is None:
            return 0
        try:
            stored = await asyncio.to_thread(recent_marks, store.engine, now - self.marks.window)
        except StorageError as exc:
            log.warning("mark history not seeded from the database: %s", reason(exc))
            return 0
        for (product_type, symbol), samples in stored.items():
            self.marks.add_many(product_type, symbol, [(at, m) for at, m in samples if m.is_finite() and m > 0])
        return len(stored)

    async def seed_last_reads(self, store: Store) -> int:
        """Load each account's last stored read (after a restart); returns the accounts found. A database that
        cannot be read is logged: the accounts show as empty until they are read."""
        try:
            stored = await asyncio.to_thread(last_snapshots, store.engine)
        except StorageError as exc:
            log.warning("last reads not loaded from the database: %s", reason(exc))
            return 0
        self._stored = stored
        return len(stored)

    def completed(self, reading: Reading) -> Reading:
        """The reading, or for an account this process has no good data of yet, the last good data the database
        knew (its time and its stored read): what the rules see and the page shows of it, stale until read."""
        last_good_at = self._last_success.get(reading.name)
        stored = self._stored.get(reading.name)
        if reading.last_good_at is not None or (last_good_at is None and stored is None):
            return reading
        if stored is not None and (last_good_at is None or stored.taken_at > last_good_at):
            last_good_at = stored.taken_at
        return replace(reading, snapshot=reading.snapshot or stored, last_good_at=last_good_at, restored=True)

    def keep(self, names: Collection[str]) -> None:
        """A reload: forget what is known of the accounts no longer configured (an account added again later is
        watched anew)."""
        for known in (self._first_seen, self._sampled, self._stored, self._blind_since, self._recovered):
            for name in [n for n in known if n not in names]:
                del known[name]

    def watched_since(self, name: str, now: datetime) -> datetime:
        """When this process began watching the account (the first time it was judged)."""
        return self._first_seen.setdefault(name, now)

    def of(self, reading: Reading, now: datetime) -> AccountView:
        """The account as the rules see it. The reading's cadence is how often accounts are really read (longer
        than poll_interval while polling is behind): data that old is as fresh as it gets, and `unreachable`
        counts those intervals, so a stretched cycle neither holds every alert nor makes every account look
        unreachable."""
        m = self._settings()
        reading = self.completed(reading)
        interval = reading.cadence or m.poll_interval
        volatility = None
        if self.marks is not None:
            marks = self.marks
            if reading.snapshot is not None and self._sampled.get(reading.name) is not reading.snapshot:
                self._sampled[reading.name] = reading.snapshot  # each read's marks once, not at every view
                for p in reading.snapshot.positions:  # a sample already held (the same read again) is dropped
                    if p.mark_price.is_finite() and p.mark_price > 0:  # absurd marks are no samples
                        marks.add(p.product_type, p.symbol, reading.snapshot.taken_at, p.mark_price)

            def volatility(product_type: str, symbol: str) -> float | None:
                return marks.volatility(product_type, symbol, now)

        snapshot, estimated = self.adjust(reading) if self.adjust is not None else (reading.snapshot, False)
        last_good_at = reading.last_good_at
        watched_since = self.watched_since(reading.name, now)
        fresh = not reading.stale(now, interval, m.stale_grace)
        return AccountView(
            name=reading.name, tags=reading.tags, snapshot=snapshot, estimated=estimated, last_good_at=last_good_at,
            fresh=fresh, watched_since=watched_since, fix=fix_of(reading.error_code),
            blind_since=self._blindness(reading.name, fresh, last_good_at or watched_since),
            poll_interval=interval, polled=reading.polls > 0, permanent_error=reading.status == Status.UNREACHABLE,
            error_code=reading.error_code, error_message=reading.error_message, key=reading.key,
            stalled=reading.stalled, volatility=volatility,
        )  # fmt: skip

    def _blindness(self, name: str, fresh: bool, last_good_at: datetime) -> datetime | None:
        """With the first fresh data after a time without (for as long as no newer read comes, whoever asks):
        when that time began; None otherwise."""
        if not fresh:
            self._recovered.pop(name, None)
            self._blind_since.setdefault(name, last_good_at)
            return None
        since = self._blind_since.pop(name, None)
        if since is not None:
            self._recovered[name] = (since, last_good_at)
        recovered = self._recovered.get(name)
        return recovered[0] if recovered is not None and recovered[1] == last_good_at else None
