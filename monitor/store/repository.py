"""The store: the database behind one object, its methods synchronous and meant for a worker thread
(`asyncio.to_thread`), so the event loop never waits on the database. Each concern has its module: accounts (ids,
registry), snapshots (the write path and its detail policy) over bulk (the driver-specific fast paths), history
(series, rollup, retention), alerts/outbox/silences (the alert path's state) and leases. Every public method
raises monitor.errors.StorageError, never SQLAlchemy's errors (monitor.store.errors).
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Iterable, Sequence
from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.exc import OperationalError

from monitor.config.model import AccountConfig
from monitor.domain import PollOutcome
from monitor.store import history, leases
from monitor.store.accounts import Accounts
from monitor.store.alerts import AlertStore
from monitor.store.engine import make_engine
from monitor.store.errors import guarded
from monitor.store.history import ACCOUNT, BALANCE, EQUITY, HOUR, HOURLY, POLL, POSITION, floor_hour
from monitor.store.snapshots import Snapshots
from monitor.store.views import EquitySample, MaintenanceReport

log = logging.getLogger(__name__)
CLOSE_WAIT = 5.0  # seconds close() waits for calls still running in worker threads

__all__ = ["ACCOUNT", "BALANCE", "EQUITY", "HOUR", "HOURLY", "POLL", "POSITION", "Store", "floor_hour"]


@guarded
class Store:
    def __init__(self, url: str, *, snapshot_interval: timedelta = timedelta(0)) -> None:
        self.engine = make_engine(url)
        self.accounts = Accounts()
        # Balance and position rows are stored at least this often per account, and at every poll while the
        # account is at risk or its positions or coins change; the equity series keeps every poll.
        self.snapshots = Snapshots(snapshot_interval)
        self.alerts = AlertStore(self.engine, self.accounts)
        database = self.engine.url.database
        self._file = database if self.engine.dialect.name == "sqlite" and database not in (None, "", ":memory:") \
            else None  # fmt: skip
        self._file_identity: tuple[int, int] | None = None  # device and inode of the SQLite file when first seen
        self._file_lost = False

    @property
    def snapshot_interval(self) -> timedelta:
        return self.snapshots.snapshot_interval

    @snapshot_interval.setter
    def snapshot_interval(self, value: timedelta) -> None:
        self.snapshots.snapshot_interval = value

    def close(self, wait: float = CLOSE_WAIT) -> None:
        """Close the pool's connections. A call still running in a worker thread (its task was cancelled at
        shutdown, the thread was not) holds a connection that a dispose would orphan: it would be returned to
        the old pool and never closed. So wait up to `wait` seconds for those to come back first."""
        checked_out = getattr(self.engine.pool, "checkedout", None)
        deadline = time.monotonic() + wait
        while checked_out is not None and checked_out() > 0 and time.monotonic() < deadline:
            time.sleep(0.02)
        self.engine.dispose()

    def ping(self) -> None:
        """Raises when the database cannot be reached (or its SQLite file is gone)."""
        self._check_file()
        with self.engine.connect() as connection:
            connection.execute(select(1))
        self._check_file()

    def _check_file(self) -> None:
        """A SQLite file deleted (or replaced) under a running monitor keeps taking writes through the open
        connections, into a file nobody will ever read again: refuse them instead, loudly, so the writer buffers
        and /readyz fails until someone restarts the monitor."""
        if self._file is None:
            return
        try:
            stat = os.stat(self._file)
        except FileNotFoundError:
            identity = None
        else:
            identity = (stat.st_dev, stat.st_ino)
        if self._file_identity is None:  # not created yet (SQLite creates it at the first connection)
            self._file_identity = identity
            return
        if identity == self._file_identity:
            return
        problem = f"the SQLite database file {self._file} was {'deleted' if identity is None else 'replaced'}"
        if not self._file_lost:
            log.error("%s while the monitor runs: nothing more is written to it; restart the monitor (it creates "
                      "a new database, or opens the file now there)", problem)  # fmt: skip
            self._file_lost = True
        raise OperationalError("SQLite file check", None, FileNotFoundError(problem))

    @property
    def shared(self) -> bool:
        """Whether several processes can poll through this database (SQLite means one process)."""
        return self.engine.dialect.name != "sqlite"

    def claim(self, node: str, accounts: Iterable[str], now: datetime, ttl: timedelta) -> set[str]:
        return leases.claim(self.engine, node, accounts, now, ttl)

    def release(self, node: str, now: datetime) -> None:
        leases.release(self.engine, node, now)

    def register_accounts(self, accounts: Iterable[AccountConfig], now: datetime) -> None:
        """Create missing account rows and refresh what the accounts file says about each."""
        self.accounts.register(self.engine, accounts, now)

    def write_polls(self, outcomes: Sequence[PollOutcome]) -> None:
        """Store a batch of poll outcomes in one transaction (all or nothing)."""
        if not outcomes:
            return
        self._check_file()
        outcomes = sorted(outcomes, key=lambda o: o.finished_at)
        with self.engine.begin() as connection:
            ids = self.accounts.ids(connection, {o.account for o in outcomes}, outcomes[0].finished_at)
            written = self.snapshots.write(connection, ids, outcomes)
        self.accounts.remember(ids)
        self.snapshots.committed(written)
        self._check_file()  # the file may have been there when the first connection opened it

    def equity_series(
        self, account: str, start: datetime, end: datetime, *, hourly: bool = False
    ) -> list[EquitySample]:
        """Equity between start and end: every raw point, or one sample per hour (rolled-up hours, then the
        hours not rolled up yet aggregated from raw points)."""
        return history.equity_series(self.engine, account, start, end, hourly=hourly)

    def maintain(self, now: datetime, raw_retention: timedelta, hourly_retention: timedelta) -> MaintenanceReport:
        """Roll complete hours up, then prune raw rows past retention (never rows not rolled up yet) and
        hourly rows past theirs. Deletes run in small transactions so writers are never held up long."""
        return history.maintain(self.engine, now, raw_retention, hourly_retention)

    def rollup(self, now: datetime) -> int:
        """Aggregate raw equity points of complete hours into equity_hourly; returns the rows written."""
        return history.rollup(self.engine, now)
