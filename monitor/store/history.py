"""History: the equity series (raw points and hourly rollups), rolling complete hours up, and retention."""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Engine, Table, delete, func, insert, select

from monitor.store import tables as t
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


def equity_series(
    engine: Engine, account: str, start: datetime, end: datetime, *, hourly: bool = False
) -> list[EquitySample]:
    """Equity between start and end: every raw point, or one sample per hour (rolled-up hours, then the
    hours not rolled up yet aggregated from raw points)."""
    with engine.connect() as connection:
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


def maintain(engine: Engine, now: datetime, raw_retention: timedelta, hourly_retention: timedelta) -> MaintenanceReport:
    """Roll complete hours up, then prune raw rows past retention (never rows not rolled up yet) and
    hourly rows past theirs. Deletes run in small transactions so writers are never held up long."""
    hours = rollup(engine, now)
    with engine.connect() as connection:
        rolled_until = connection.execute(select(func.max(HOURLY.c.hour))).scalar()
    raw_cutoff = now - raw_retention
    raw_cutoff = min(raw_cutoff, rolled_until + HOUR) if rolled_until else min(raw_cutoff, floor_hour(now) - HOUR)
    raw_deleted = sum(
        _delete_before(engine, table, table.c.taken_at if table is not POLL else table.c.started_at, raw_cutoff)
        for table in RAW_TABLES
    )
    hourly_deleted = _delete_before(engine, HOURLY, HOURLY.c.hour, now - hourly_retention)
    if raw_deleted or hourly_deleted:
        log.info("pruned %d raw and %d hourly rows", raw_deleted, hourly_deleted)
    return MaintenanceReport(hours, raw_deleted, hourly_deleted)


def rollup(engine: Engine, now: datetime) -> int:
    """Aggregate raw equity points of complete hours into equity_hourly; returns the rows written."""
    end = floor_hour(now)
    with engine.begin() as connection:
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


def _delete_before(engine: Engine, table: Table, column: Any, cutoff: datetime) -> int:
    total = 0
    while True:
        with engine.begin() as connection:
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


def _point(row: Any) -> EquitySample:
    """A raw equity point as a sample (its low and high are the point itself)."""
    return EquitySample(row.taken_at, row.equity_usdt, row.equity_usdt, row.equity_usdt, row.unrealized_pnl_usdt,
                        row.worst_liquidation_distance_pct)  # fmt: skip
