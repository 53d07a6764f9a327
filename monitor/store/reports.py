"""What a report needs from the database: each account's data for a period (the once-only claim of a scheduled
report is in reportsent.py).

Periods read the raw equity series where the hourly rollups do not cover them yet (the edges of the period and
the hours since the last rollup) and the rollups elsewhere, so a weekly report still works once raw points are
pruned. Money aggregates are computed in Python (see ExactDecimal). Synchronous: run in a worker thread.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal

from sqlalchemy import Connection, Engine, and_, func, or_, select

from monitor.alerts.model import State
from monitor.reports.model import AccountPeriod
from monitor.store.alertrows import ALERT, TRANSITION
from monitor.store.errors import translated
from monitor.store.history import ACCOUNT, EQUITY, HOURLY, POLL, floor_hour

HOUR = timedelta(hours=1)


@dataclass(frozen=True, slots=True)
class PeriodData:
    accounts: list[AccountPeriod]  # one per account asked for, in the order asked
    portfolio: tuple[int, int]  # (fired, resolved) alerts of portfolio rules (no account) in the period


@dataclass(frozen=True, slots=True)
class _Sample:
    at: datetime
    low: Decimal
    high: Decimal
    distance: Decimal | None


@translated
def period_data(engine: Engine, accounts: Sequence[str], start: datetime, end: datetime) -> PeriodData:
    """Each account's data for [start, end] (aware UTC). An account the database has never seen, or with no
    reading, comes back with None figures (the report shows it as "no data")."""
    with engine.connect() as connection:
        rows = connection.execute(select(ACCOUNT.c.name, ACCOUNT.c.id).where(ACCOUNT.c.name.in_(list(accounts))))
        ids = {name: id_ for name, id_ in rows}
        known = list(ids.values())
        # Raw points first; where they are pruned already, the last rolled-up hour before the moment.
        now = _last_points(connection, known, end)
        now.update(_last_hourly(connection, [i for i in known if i not in now], end))
        before = _last_points(connection, known, start)
        before.update(_last_hourly(connection, [i for i in known if i not in before], start))
        # Accounts first read inside the period: their change counts from that first reading.
        first_read = _last_points(connection, [i for i in known if i not in before], end, after=start)
        samples = _samples(connection, known, start, end)
        unreachable = _unreachable(connection, known, start, end)
        alerts, portfolio = _alert_counts(connection, known, start, end)
    result = []
    for name in accounts:
        id_ = ids.get(name, -1)  # -1: never seen, so found in none of the maps
        last, series = now.get(id_), samples.get(id_, [])
        first = before.get(id_) or first_read.get(id_)
        fired, resolved, liquidated = alerts.get(id_, (0, 0, 0))
        distances = [s.distance for s in series if s.distance is not None]
        result.append(
            AccountPeriod(
                account=name,
                as_of=last[0] if last else None,
                equity=last[1] if last else None,
                equity_before=first[1] if first else None,
                first_read_at=first[0] if first and id_ in first_read else None,
                unrealized_pnl=last[2] if last else None,
                lowest_equity=min(s.low for s in series) if series else None,
                deepest_drawdown_pct=_deepest_drawdown(first[1] if first else None, series),
                worst_distance_pct=last[3] if last else None,
                lowest_distance_pct=min(distances) if distances else None,
                alerts_fired=fired,
                alerts_resolved=resolved,
                liquidations=liquidated,
                unreachable=unreachable.get(id_, timedelta(0)),
            )
        )
    return PeriodData(result, portfolio)


def _last_points(
    connection: Connection, ids: list[int], at: datetime, *, after: datetime | None = None
) -> dict[int, tuple[datetime, Decimal, Decimal, Decimal | None]]:
    """Each account's last raw equity point at or before `at`; with `after`, its first one after `after` instead
    (up to `at`)."""
    if not ids:
        return {}
    when = func.max(EQUITY.c.taken_at) if after is None else func.min(EQUITY.c.taken_at)
    window = EQUITY.c.taken_at <= at if after is None else (EQUITY.c.taken_at > after) & (EQUITY.c.taken_at <= at)
    last = (
        select(EQUITY.c.account_id, when.label("taken_at"))
        .where(EQUITY.c.account_id.in_(ids), window)
        .group_by(EQUITY.c.account_id)
        .subquery()
    )
    query = (
        select(EQUITY)
        .join(last, (EQUITY.c.account_id == last.c.account_id) & (EQUITY.c.taken_at == last.c.taken_at))
        .order_by(EQUITY.c.id)
    )
    return {
        r.account_id: (r.taken_at, r.equity_usdt, r.unrealized_pnl_usdt, r.worst_liquidation_distance_pct)
        for r in connection.execute(query)
    }


def _last_hourly(
    connection: Connection, ids: list[int], at: datetime
) -> dict[int, tuple[datetime, Decimal, Decimal, Decimal | None]]:
    """Each account's last complete rolled-up hour before `at`, as a point at the hour's end: its last equity
    and unrealized PnL, and the closest its positions came to liquidation in that hour."""
    if not ids:
        return {}
    last = (
        select(HOURLY.c.account_id, func.max(HOURLY.c.hour).label("hour"))
        .where(HOURLY.c.account_id.in_(ids), HOURLY.c.hour <= at - HOUR)
        .group_by(HOURLY.c.account_id)
        .subquery()
    )
    query = select(HOURLY).join(last, (HOURLY.c.account_id == last.c.account_id) & (HOURLY.c.hour == last.c.hour))
    return {
        r.account_id: (r.hour + HOUR, r.equity_last, r.unrealized_pnl_last, r.worst_liquidation_distance_pct)
        for r in connection.execute(query)
    }


def _samples(connection: Connection, ids: list[int], start: datetime, end: datetime) -> dict[int, list[_Sample]]:
    """The period's series per account, in time order: rolled-up hours wholly inside it, raw points elsewhere."""
    if not ids:
        return {}
    first_whole = floor_hour(start) + (HOUR if start != floor_hour(start) else timedelta(0))
    series: dict[int, list[_Sample]] = defaultdict(list)
    hourly = connection.execute(
        select(HOURLY)
        .where(HOURLY.c.account_id.in_(ids), HOURLY.c.hour >= first_whole, HOURLY.c.hour <= end - HOUR)
        .order_by(HOURLY.c.hour)
    ).all()
    # The rollup runs for every account at once: the hours after its last one are read raw.
    rolled_until = max((r.hour for r in hourly), default=first_whole - HOUR) + HOUR
    for r in hourly:
        series[r.account_id].append(_Sample(r.hour, r.equity_min, r.equity_max, r.worst_liquidation_distance_pct))
    raw = connection.execute(
        select(EQUITY.c.account_id, EQUITY.c.taken_at, EQUITY.c.equity_usdt, EQUITY.c.worst_liquidation_distance_pct)
        .where(
            EQUITY.c.account_id.in_(ids),
            EQUITY.c.taken_at >= start,
            EQUITY.c.taken_at <= end,
            or_(EQUITY.c.taken_at < first_whole, EQUITY.c.taken_at >= rolled_until),
        )
        .order_by(EQUITY.c.taken_at)
    )
    for account_id, at, equity, distance in raw:
        series[account_id].append(_Sample(at, equity, equity, distance))
    for samples in series.values():
        samples.sort(key=lambda s: s.at)
    return series


def _deepest_drawdown(before: Decimal | None, series: list[_Sample]) -> Decimal | None:
    """The largest fall below the running peak, in % of the peak; the equity at the start counts as a peak. An
    hour's low is compared with the peak before that hour (its own high may have come after its low)."""
    if not series:
        return None
    peak = before
    deepest = Decimal(0)
    for s in series:
        if peak is not None and peak > 0 and s.low < peak:
            deepest = max(deepest, (peak - s.low) / peak * 100)
        peak = s.high if peak is None else max(peak, s.high)
    return deepest


def _unreachable(connection: Connection, ids: list[int], start: datetime, end: datetime) -> dict[int, timedelta]:
    """Per account, the time from each failed read to the next good one (or the period's end), summed."""
    if not ids:
        return {}
    window = and_(POLL.c.account_id.in_(ids), POLL.c.started_at >= start, POLL.c.started_at <= end)
    failed = connection.execute(select(POLL.c.account_id, POLL.c.started_at).where(window, POLL.c.ok.is_(False)))
    events: dict[int, list[tuple[datetime, bool]]] = defaultdict(list)
    for account_id, at in failed:
        events[account_id].append((at, False))
    if not events:
        return {}
    good = connection.execute(
        select(POLL.c.account_id, POLL.c.started_at).where(
            window, POLL.c.ok.is_(True), POLL.c.account_id.in_(list(events))
        )
    )
    for account_id, at in good:
        events[account_id].append((at, True))
    result: dict[int, timedelta] = {}
    for account_id, polls in events.items():
        total, down_since = timedelta(0), None
        for at, ok in sorted(polls):
            if not ok and down_since is None:
                down_since = at
            elif ok and down_since is not None:
                total += at - down_since
                down_since = None
        if down_since is not None:
            total += end - down_since
        result[account_id] = total
    return result


def _alert_counts(
    connection: Connection, ids: list[int], start: datetime, end: datetime
) -> tuple[dict[int, tuple[int, int, int]], tuple[int, int]]:
    """Per account (fired, resolved, liquidated) in [start, end), and (fired, resolved) of portfolio alerts.
    A firing alert changing severity is not counted again; liquidations count positions (a subject liquidated at
    one moment), however many alerts of it ended so (as they did before one alert carried it). The other alerts
    of a liquidated position end as resolved at the same moment (monitor.alerts.lifecycle.absorbed): they are the
    liquidation, not a resolution, so they are not counted as resolved."""
    window = (TRANSITION.c.at >= start, TRANSITION.c.at < end,
              or_(ALERT.c.account_id.in_(ids), ALERT.c.account_id.is_(None)))  # fmt: skip
    other, its_alert = TRANSITION.alias("liquidation"), ALERT.alias("liquidated_alert")
    with_a_liquidation = (
        select(other.c.id)
        .join(its_alert, its_alert.c.id == other.c.alert_id)
        .where(
            other.c.to_state == State.LIQUIDATED,
            other.c.at == TRANSITION.c.at,
            its_alert.c.account_id == ALERT.c.account_id,
            its_alert.c.subject == ALERT.c.subject,
        )
        .exists()
    )
    query = (
        select(ALERT.c.account_id, TRANSITION.c.from_state, TRANSITION.c.to_state, func.count())
        .join(ALERT, ALERT.c.id == TRANSITION.c.alert_id)
        .where(*window, TRANSITION.c.to_state != State.LIQUIDATED)
        .where(or_(TRANSITION.c.to_state != State.RESOLVED, ~with_a_liquidation))
        .group_by(ALERT.c.account_id, TRANSITION.c.from_state, TRANSITION.c.to_state)
    )
    counts: dict[int | None, list[int]] = defaultdict(lambda: [0, 0, 0])
    for account_id, from_state, to_state, n in connection.execute(query):
        if to_state == State.FIRING and from_state != State.FIRING:
            counts[account_id][0] += n
        elif to_state == State.RESOLVED:
            counts[account_id][1] += n
    positions = (
        select(ALERT.c.account_id, ALERT.c.subject, TRANSITION.c.at)
        .distinct()
        .join(ALERT, ALERT.c.id == TRANSITION.c.alert_id)
        .where(*window, TRANSITION.c.to_state == State.LIQUIDATED)
    )
    for account_id, _, _ in connection.execute(positions):
        counts[account_id][2] += 1
    portfolio = counts.pop(None, [0, 0, 0])
    return {k: (v[0], v[1], v[2]) for k, v in counts.items() if k is not None}, (portfolio[0], portfolio[1])
