"""The store: batched snapshot writes, the queries the rules and the page need, rollup and pruning.

Methods are synchronous and meant to run in a worker thread (`asyncio.to_thread`), so the event loop never
waits on the database. Money aggregates are computed in Python (see ExactDecimal).
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator, Sequence
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from sqlalchemy import Connection, Table, bindparam, delete, func, insert, select, update
from sqlalchemy.exc import DBAPIError, OperationalError

from monitor.config.model import AccountConfig
from monitor.domain import AccountSnapshot, PollOutcome
from monitor.store import leases
from monitor.store import tables as t
from monitor.store.alerts import AlertStore
from monitor.store.engine import make_engine
from monitor.store.errors import guarded
from monitor.store.types import UTCDateTime
from monitor.store.views import EquitySample, MaintenanceReport

log = logging.getLogger(__name__)

ACCOUNT: Table = t.Account.__table__  # type: ignore[attr-defined]
POLL: Table = t.Poll.__table__  # type: ignore[attr-defined]
BALANCE: Table = t.BalanceSnapshot.__table__  # type: ignore[attr-defined]
POSITION: Table = t.PositionSnapshot.__table__  # type: ignore[attr-defined]
EQUITY: Table = t.EquityPoint.__table__  # type: ignore[attr-defined]
HOURLY: Table = t.EquityHourly.__table__  # type: ignore[attr-defined]
RAW_TABLES = (POLL, BALANCE, POSITION, EQUITY)
HOUR = timedelta(hours=1)
# Rollup recomputes this many hours before its last run, so points flushed late from the write buffer (after
# a database outage) still reach the hourly series.
ROLLUP_LOOKBACK = timedelta(hours=6)
DELETE_CHUNK = 5000


def floor_hour(moment: datetime) -> datetime:
    return moment.replace(minute=0, second=0, microsecond=0)


@guarded
class Store:
    def __init__(self, url: str, *, snapshot_interval: timedelta = timedelta(0)) -> None:
        self.engine = make_engine(url)
        # Balance and position rows are stored at least this often per account, and at every poll while the
        # account is at risk or its positions or coins change; the equity series keeps every poll.
        self.snapshot_interval = snapshot_interval
        self._ids: dict[str, int] = {}
        self._detailed: dict[int, tuple[datetime, Shape]] = {}  # per account: its last stored detail
        self.alerts = AlertStore(self)
        database = self.engine.url.database
        self._file = database if self.engine.dialect.name == "sqlite" and database not in (None, "", ":memory:") \
            else None  # fmt: skip
        self._file_identity: tuple[int, int] | None = None  # device and inode of the SQLite file when first seen
        self._file_lost = False

    def close(self) -> None:
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

    # -- accounts ----------------------------------------------------------------------------------------

    def register_accounts(self, accounts: Iterable[AccountConfig], now: datetime) -> None:
        """Create missing account rows and refresh what the accounts file says about each."""
        accounts = list(accounts)
        with self.engine.begin() as connection:
            ids = self._ensure_ids(connection, [a.name for a in accounts], now)
            connection.execute(
                update(ACCOUNT).where(ACCOUNT.c.id == bindparam("_id")),
                [{"_id": ids[a.name], "demo": a.demo, "tags": list(a.tags)} for a in accounts],
            )
        self._ids.update(ids)

    def _ensure_ids(self, connection: Connection, names: Iterable[str], now: datetime) -> dict[str, int]:
        """Ids for these account names, creating rows as needed. Cached only by the caller after commit."""
        wanted = set(names)
        ids = {name: self._ids[name] for name in wanted if name in self._ids}
        missing = wanted - ids.keys()
        if missing:
            rows = connection.execute(select(ACCOUNT.c.name, ACCOUNT.c.id).where(ACCOUNT.c.name.in_(missing)))
            ids.update({name: id_ for name, id_ in rows})
            new = sorted(missing - ids.keys())
            if new:
                connection.execute(
                    insert(ACCOUNT),
                    [
                        {"name": n, "demo": False, "tags": [], "permissions": [], "ips": [], "created_at": now}
                        for n in new
                    ],
                )
                rows = connection.execute(select(ACCOUNT.c.name, ACCOUNT.c.id).where(ACCOUNT.c.name.in_(new)))
                ids.update({name: id_ for name, id_ in rows})
        return ids

    # -- writes ------------------------------------------------------------------------------------------

    def write_polls(self, outcomes: Sequence[PollOutcome]) -> None:
        """Store a batch of poll outcomes in one transaction (all or nothing)."""
        if not outcomes:
            return
        self._check_file()
        outcomes = sorted(outcomes, key=lambda o: o.finished_at)
        with self.engine.begin() as connection:
            ids = self._ensure_ids(connection, {o.account for o in outcomes}, outcomes[0].finished_at)
            polls, balances, positions, equity = [], [], [], []
            detailed: dict[int, tuple[datetime, Shape]] = {}
            for o in outcomes:
                account_id = ids[o.account]
                polls.append(
                    {
                        "account_id": account_id,
                        "started_at": o.started_at,
                        "finished_at": o.finished_at,
                        "ok": o.ok,
                        "error_code": o.error_code,
                        "error_message": _clip(o.error_message, 1000),
                        "requests": o.requests,
                    }
                )
                if o.snapshot is None:
                    continue
                shape = snapshot_shape(o.snapshot)
                last = detailed.get(account_id) or self._detailed.get(account_id)
                detail = (
                    o.at_risk
                    or last is None
                    or last[1] != shape
                    or o.snapshot.taken_at - last[0] >= self.snapshot_interval
                )
                if detail:
                    detailed[account_id] = (o.snapshot.taken_at, shape)
                    balances += [{"account_id": account_id, **row} for row in balance_rows(o.snapshot)]
                    positions += [{"account_id": account_id, **row} for row in position_rows(o.snapshot)]
                equity.append(
                    {
                        "account_id": account_id,
                        "taken_at": o.snapshot.taken_at,
                        "equity_usdt": o.snapshot.equity_usdt,
                        "unrealized_pnl_usdt": o.snapshot.unrealized_pnl_usdt,
                        "worst_liquidation_distance_pct": o.snapshot.worst_liquidation_distance_pct,
                        "detail": detail,
                    }
                )
            for table, rows in ((POLL, polls), (BALANCE, balances), (POSITION, positions), (EQUITY, equity)):
                if rows:
                    _insert_many(connection, table, rows)
            self._update_accounts(connection, ids, outcomes)
        self._ids.update(ids)
        self._detailed.update(detailed)
        self._check_file()  # the file may have been there when the first connection opened it

    def _update_accounts(self, connection: Connection, ids: dict[str, int], outcomes: Sequence[PollOutcome]) -> None:
        state: dict[int, dict[str, Any]] = {}
        for o in outcomes:  # chronological: the last outcome of each account wins
            id_ = ids[o.account]
            row = state.setdefault(id_, {"_id": id_})
            row["last_poll_at"] = o.finished_at
            if o.snapshot is not None:
                row.update(last_success_at=o.finished_at, mode=o.snapshot.mode.value)
            else:
                row.update(
                    last_error_code=o.error_code,
                    last_error_message=_clip(o.error_message, 1000),
                    last_error_at=o.finished_at,
                )
            if o.key is not None:
                row.update(
                    uid=o.key.uid,
                    permissions=list(o.key.permissions),
                    ips=list(o.key.ips),
                    key_checked_at=o.finished_at,
                )
        # One update per shape: rows must share their keys.
        by_shape: dict[tuple[str, ...], list[dict[str, Any]]] = defaultdict(list)
        for row in state.values():
            by_shape[tuple(sorted(row))].append(row)
        for rows in by_shape.values():
            _update_many(connection, ACCOUNT, rows)

    # -- reads -------------------------------------------------------------------------------------------

    def equity_series(
        self, account: str, start: datetime, end: datetime, *, hourly: bool = False
    ) -> list[EquitySample]:
        """Equity between start and end: every raw point, or one sample per hour (rolled-up hours, then the
        hours not rolled up yet aggregated from raw points)."""
        with self.engine.connect() as connection:
            account_id = connection.execute(select(ACCOUNT.c.id).where(ACCOUNT.c.name == account)).scalar()
            if account_id is None:
                return []
            raw = [
                _point(r)
                for r in connection.execute(
                    select(EQUITY)
                    .where(EQUITY.c.account_id == account_id, EQUITY.c.taken_at >= start, EQUITY.c.taken_at <= end)
                    .order_by(EQUITY.c.taken_at)
                )
            ]
            if not hourly:
                return raw
            rolled = [
                EquitySample(
                    r.hour,
                    r.equity_last,
                    r.equity_min,
                    r.equity_max,
                    r.unrealized_pnl_last,
                    r.worst_liquidation_distance_pct,
                )
                for r in connection.execute(
                    select(HOURLY)
                    .where(HOURLY.c.account_id == account_id, HOURLY.c.hour >= floor_hour(start), HOURLY.c.hour <= end)
                    .order_by(HOURLY.c.hour)
                )
            ]
        done = {s.at for s in rolled}
        fresh = [s for s in aggregate_hours(raw) if s.at not in done]
        return sorted(rolled + fresh, key=lambda s: s.at)

    # -- maintenance ---------------------------------------------------------------------------------------

    def maintain(self, now: datetime, raw_retention: timedelta, hourly_retention: timedelta) -> MaintenanceReport:
        """Roll complete hours up, then prune raw rows past retention (never rows not rolled up yet) and
        hourly rows past theirs. Deletes run in small transactions so writers are never held up long."""
        hours = self.rollup(now)
        with self.engine.connect() as connection:
            rolled_until = connection.execute(select(func.max(HOURLY.c.hour))).scalar()
        raw_cutoff = now - raw_retention
        raw_cutoff = min(raw_cutoff, rolled_until + HOUR) if rolled_until else min(raw_cutoff, floor_hour(now) - HOUR)
        raw_deleted = sum(
            self._delete_before(table, table.c.taken_at if table is not POLL else table.c.started_at, raw_cutoff)
            for table in RAW_TABLES
        )
        hourly_deleted = self._delete_before(HOURLY, HOURLY.c.hour, now - hourly_retention)
        if raw_deleted or hourly_deleted:
            log.info("pruned %d raw and %d hourly rows", raw_deleted, hourly_deleted)
        return MaintenanceReport(hours, raw_deleted, hourly_deleted)

    def rollup(self, now: datetime) -> int:
        """Aggregate raw equity points of complete hours into equity_hourly; returns the rows written."""
        end = floor_hour(now)
        with self.engine.begin() as connection:
            last = connection.execute(select(func.max(HOURLY.c.hour))).scalar()
            oldest_raw = connection.execute(select(func.min(EQUITY.c.taken_at))).scalar()
            if oldest_raw is None:
                return 0
            # Never rewrite an hour whose raw points are already pruned (a short raw_retention).
            start = floor_hour(max(last - ROLLUP_LOOKBACK, oldest_raw) if last else oldest_raw)
            if start >= end:
                return 0
            points: dict[int, list[EquitySample]] = defaultdict(list)
            for r in connection.execute(
                select(EQUITY).where(EQUITY.c.taken_at >= start, EQUITY.c.taken_at < end).order_by(EQUITY.c.taken_at)
            ):
                points[r.account_id].append(_point(r))
            rows = [
                {
                    "account_id": account_id,
                    "hour": s.at,
                    "equity_last": s.equity,
                    "equity_min": s.low,
                    "equity_max": s.high,
                    "unrealized_pnl_last": s.unrealized_pnl,
                    "worst_liquidation_distance_pct": s.worst_liquidation_distance_pct,
                    "samples": n,
                }
                for account_id, samples in points.items()
                for s, n in aggregate_hours_counted(samples)
            ]
            connection.execute(delete(HOURLY).where(HOURLY.c.hour >= start, HOURLY.c.hour < end))
            if rows:
                connection.execute(insert(HOURLY), rows)
        return len(rows)

    def _delete_before(self, table: Table, column: Any, cutoff: datetime) -> int:
        total = 0
        while True:
            with self.engine.begin() as connection:
                chunk = select(table.c.id).where(column < cutoff).limit(DELETE_CHUNK).scalar_subquery()
                deleted = connection.execute(delete(table).where(table.c.id.in_(chunk))).rowcount
            total += deleted
            if deleted < DELETE_CHUNK:
                return total


def aggregate_hours_counted(samples: Sequence[EquitySample]) -> list[tuple[EquitySample, int]]:
    """Chronological samples grouped by hour: last equity, min, max, last PnL, worst liquidation distance."""
    groups: dict[datetime, list[EquitySample]] = defaultdict(list)
    for s in samples:
        groups[floor_hour(s.at)].append(s)
    result = []
    for hour, group in sorted(groups.items()):
        distances = [d for s in group if (d := s.worst_liquidation_distance_pct) is not None]
        last = group[-1]
        result.append(
            (
                EquitySample(
                    hour,
                    last.equity,
                    min(s.low for s in group),
                    max(s.high for s in group),
                    last.unrealized_pnl,
                    min(distances) if distances else None,
                ),
                len(group),
            )
        )
    return result


def aggregate_hours(samples: Sequence[EquitySample]) -> list[EquitySample]:
    return [s for s, _ in aggregate_hours_counted(samples)]


def balance_rows(snapshot: AccountSnapshot) -> list[dict[str, Any]]:
    at = snapshot.taken_at
    rows: list[dict[str, Any]] = []
    for a in snapshot.spot:
        rows.append(
            {
                "taken_at": at,
                "product": "spot",
                "coin": a.coin,
                "equity": a.total,
                "available": a.available,
                "locked": a.frozen + a.locked,
                "unrealized_pnl": None,
                "risk_ratio": None,
                "usdt_value": a.total if a.coin in ("USDT", "USDC") else None,
            }
        )
    for f in snapshot.futures:
        rows.append(
            {
                "taken_at": at,
                "product": f.product_type,
                "coin": f.margin_coin,
                "equity": f.equity,
                "available": f.available,
                "locked": f.locked,
                "unrealized_pnl": f.unrealized_pnl,
                "risk_ratio": f.cross_risk_ratio,
                "usdt_value": f.usdt_equity,
            }
        )
    u = snapshot.unified
    if u is not None:
        rows.append(
            {
                "taken_at": at,
                "product": "unified",
                "coin": "TOTAL",
                "equity": u.usdt_equity,
                "available": sum((a.available for a in u.assets if a.coin in ("USDT", "USDC")), Decimal(0)),
                "locked": sum((a.locked for a in u.assets), Decimal(0)),
                "unrealized_pnl": u.unrealized_pnl,
                "risk_ratio": u.margin_ratio,
                "usdt_value": u.usdt_equity,
            }
        )
        for asset in u.assets:
            rows.append(
                {
                    "taken_at": at,
                    "product": "unified",
                    "coin": asset.coin,
                    "equity": asset.equity,
                    "available": asset.available,
                    "locked": asset.locked,
                    "unrealized_pnl": None,
                    "risk_ratio": None,
                    "usdt_value": asset.usd_value,
                }
            )
    return rows


Shape = tuple[tuple[Any, ...], ...]


def snapshot_shape(snapshot: AccountSnapshot) -> Shape:
    """What must not change unrecorded: the positions held (size, leverage, modes), the coins held in each
    product, and spot amounts. Prices, PnL and the futures figures that follow them are left out: they move at
    every poll, and the equity series records them."""
    positions = sorted(
        (p.product_type, p.symbol, p.side.value, p.margin_mode.value, p.size, p.leverage) for p in snapshot.positions
    )
    coins = sorted((a.coin, a.available, a.locked, a.frozen) for a in snapshot.spot)
    products = sorted((f.product_type, f.margin_coin) for f in snapshot.futures)
    unified = sorted((a.coin, a.balance, a.debt) for a in snapshot.unified.assets) if snapshot.unified else []
    return tuple(positions), tuple(coins), tuple(products), tuple(unified)


def position_rows(snapshot: AccountSnapshot) -> list[dict[str, Any]]:
    return [
        {
            "taken_at": snapshot.taken_at,
            "product_type": p.product_type,
            "symbol": p.symbol,
            "side": p.side.value,
            "margin_mode": p.margin_mode.value,
            "position_mode": p.position_mode.value,
            "size": p.size,
            "entry_price": p.entry_price,
            "mark_price": p.mark_price,
            "liquidation_price": p.liquidation_price,
            "liquidation_distance_pct": p.liquidation_distance_pct,
            "margin": p.margin,
            "leverage": p.leverage,
            "unrealized_pnl": p.unrealized_pnl,
            "margin_ratio": p.margin_ratio,
        }
        for p in snapshot.positions
    ]


def _insert_many(connection: Connection, table: Table, rows: list[dict[str, Any]]) -> None:
    """Insert rows (all with the same keys) the fastest way the driver has: COPY on PostgreSQL, one prepared
    executemany on SQLite. Values still go through their columns' types (ExactDecimal, UTCDateTime), so they
    are checked and stored exactly as a Core insert would store them; only the per-row statement machinery is
    skipped, which was most of the time of a cycle's write."""
    if connection.dialect.name == "postgresql":
        names = list(rows[0])
        values = _driver_values(connection, table, names, rows)
        with _driver_errors(f"COPY {table.name}"):
            _copy(connection, table.name, names, values)
        return
    statement = insert(table).compile(dialect=connection.dialect, column_keys=list(rows[0]))
    names = list(statement.positiontup or ())  # as compiled: a column with a default must be in the rows
    connection.exec_driver_sql(str(statement), _driver_values(connection, table, names, rows))


def _update_many(connection: Connection, table: Table, rows: list[dict[str, Any]]) -> None:
    """Update rows by id (rows share their keys; "_id" names the row): on PostgreSQL one UPDATE from arrays
    of the new values, elsewhere one executemany."""
    names = [name for name in rows[0] if name != "_id"]
    if connection.dialect.name != "postgresql":
        assigned: dict[str, Any] = {name: bindparam(name) for name in names}
        fits = {name: _fitting(length, None) for name in names if (length := _text_length(table, name))}
        if fits:  # SQLite would take any length; clipped alike on both, a value reads back the same
            rows = [{k: fits[k](v) if k in fits else v for k, v in row.items()} for row in rows]
        connection.execute(update(table).where(table.c.id == bindparam("_id")).values(assigned), rows)
        return
    from psycopg import sql

    dialect = connection.dialect
    values = _driver_values(connection, table, names, rows)
    columns = [[row["_id"] for row in rows], *([line[i] for line in values] for i in range(len(names)))]
    types = ["integer", *(table.c[name].type.dialect_impl(dialect).compile(dialect=dialect) for name in names)]
    statement = sql.SQL("UPDATE {} AS t SET {} FROM unnest({}) AS s ({}) WHERE t.id = s.id").format(
        sql.Identifier(table.name),
        sql.SQL(", ").join(sql.SQL("{0} = s.{0}").format(sql.Identifier(name)) for name in names),
        sql.SQL(", ").join(sql.SQL("%s::{}[]").format(sql.SQL(type_)) for type_ in types),
        sql.SQL(", ").join(map(sql.Identifier, ["id", *names])),
    )
    driver = connection.connection.driver_connection
    assert driver is not None
    with _driver_errors(f"UPDATE {table.name}"):
        driver.execute(statement, columns)


@contextlib.contextmanager
def _driver_errors(statement: str) -> Iterator[None]:
    """psycopg used directly (COPY, arrays) raises its own errors: give them SQLAlchemy's classes, as every
    other statement has, so callers tell a database that went away from refused data the same way."""
    import psycopg

    try:
        yield
    except psycopg.Error as exc:
        raise DBAPIError.instance(statement, None, exc, psycopg.Error) from exc


def _driver_values(
    connection: Connection, table: Table, names: list[str], rows: list[dict[str, Any]]
) -> list[tuple[Any, ...]]:
    """The rows' values in `names` order, converted by their columns' types for this connection's driver."""
    dialect = connection.dialect
    processors = []
    for i, name in enumerate(names):
        column_type = table.c[name].type
        process: Callable[[Any], Any] | None = column_type.dialect_impl(dialect).bind_processor(dialect)
        length = _text_length(table, name)
        if length:  # exchange strings can be any length
            process = _fitting(length, process)
        if process is None:
            continue
        if isinstance(column_type, UTCDateTime):  # the rows of a write share a few times: convert each once
            process = _memoized(process)
        processors.append((i, process))
    values = []
    for row in rows:
        line: list[Any] = [row[name] for name in names]
        for i, process in processors:
            line[i] = process(line[i])
        values.append(tuple(line))
    return values


def _text_length(table: Table, name: str) -> int | None:
    """The length limit of a text column (String, or SQLModel's AutoString, a decorator over it), else None."""
    length = getattr(table.c[name].type, "length", None)
    return length if isinstance(length, int) and length > 0 else None


def _fitting(length: int, process: Callable[[Any], Any] | None) -> Callable[[Any], Any]:
    """Text as its column can take it: clipped to the column's length and without NUL characters (PostgreSQL
    refuses both, failing the whole write)."""

    def fit(value: Any) -> Any:
        if isinstance(value, str):
            if "\x00" in value:
                value = value.replace("\x00", "")
            if len(value) > length:
                value = _clip(value, length)
        return value if process is None else process(value)

    return fit


def _memoized(process: Callable[[Any], Any]) -> Callable[[Any], Any]:
    """For values whose equals convert alike (times: equal instants are stored alike; not Decimals, whose
    equals may differ in exponent)."""
    memo: dict[Any, Any] = {}

    def once(value: Any) -> Any:
        try:
            return memo[value]
        except KeyError:
            result = memo[value] = process(value)
            return result

    return once


def _copy(connection: Connection, table: str, names: list[str], values: list[tuple[Any, ...]]) -> None:
    """COPY rows into a PostgreSQL table through the connection's psycopg driver (inside its transaction)."""
    from psycopg import sql

    driver = connection.connection.driver_connection
    assert driver is not None
    statement = sql.SQL("COPY {} ({}) FROM STDIN").format(
        sql.Identifier(table), sql.SQL(", ").join(map(sql.Identifier, names))
    )
    with driver.cursor() as cursor, cursor.copy(statement) as copy:
        for line in values:
            copy.write_row(line)


def _point(row: Any) -> EquitySample:
    """A raw equity point as a sample (its low and high are the point itself)."""
    return EquitySample(row.taken_at, row.equity_usdt, row.equity_usdt, row.equity_usdt, row.unrealized_pnl_usdt,
                        row.worst_liquidation_distance_pct)  # fmt: skip


def _clip(text_: str | None, limit: int) -> str | None:
    return text_ if text_ is None or len(text_) <= limit else text_[: limit - 1] + "…"
