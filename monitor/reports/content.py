"""What a report says: per account and in total, from the period's data. Pure: no I/O, no clock.

"Worst" orders the accounts a reader should look at first: an account without data in the period (nothing is
known, which is worse than anything known), then by the lowest liquidation distance in the period (closest to
liquidation first; no position at all counts as infinitely far), then by the deepest drawdown, then by name.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from monitor.reports.model import AccountPeriod


@dataclass(frozen=True, slots=True)
class Change:
    absolute: Decimal
    pct: Decimal | None  # None when the earlier equity was zero
    since: datetime | None = None  # None: since the period's start; else since the first reading in the period


@dataclass(frozen=True, slots=True)
class AccountReport:
    data: AccountPeriod
    change: Change | None  # equity since the last report (or the first reading after it); None: never read

    @property
    def account(self) -> str:
        return self.data.account

    @property
    def no_data(self) -> bool:
        return self.data.equity is None


@dataclass(frozen=True, slots=True)
class Report:
    name: str
    start: datetime
    end: datetime
    accounts: tuple[AccountReport, ...]  # worst first
    equity: Decimal  # the accounts with data, summed
    equity_before: Decimal  # the same accounts at the start (those known then)
    change: Change | None
    unrealized_pnl: Decimal
    lowest_distance_pct: Decimal | None
    alerts_fired: int
    alerts_resolved: int
    liquidations: int
    unreachable_accounts: int  # accounts unreachable for some of the period
    portfolio_alerts_fired: int = 0  # portfolio rules' alerts (no account), counted in alerts_fired
    mixed_starts: int = 0  # accounts in the total's change counted from a first reading in the period, when not all


def build_report(
    name: str, start: datetime, end: datetime, data: list[AccountPeriod], *, portfolio: tuple[int, int] = (0, 0)
) -> Report:
    """The report model; `portfolio` is (fired, resolved) of the alerts of portfolio rules."""
    accounts = sorted(
        (AccountReport(d, _change(d.equity_before, d.equity, d.first_read_at)) for d in data), key=worst_first
    )
    known = [a.data for a in accounts if a.data.equity is not None]
    both = [d for d in known if d.equity_before is not None]
    firsts = [d.first_read_at for d in both if d.first_read_at is not None]
    equity = sum((d.equity for d in known if d.equity is not None), Decimal(0))
    before = sum((d.equity_before for d in both if d.equity_before is not None), Decimal(0))
    now_of_both = sum((d.equity for d in both if d.equity is not None), Decimal(0))
    distances = [d.lowest_distance_pct for d in data if d.lowest_distance_pct is not None]
    return Report(
        name=name,
        start=start,
        end=end,
        accounts=tuple(accounts),
        equity=equity,
        equity_before=before,
        # The change counts only accounts known at both ends (an account added meanwhile is not a gain); those
        # first read inside the period count from that first reading.
        change=_change(before, now_of_both, min(firsts) if firsts and len(firsts) == len(both) else None)
        if both
        else None,
        mixed_starts=len(firsts) if len(firsts) < len(both) else 0,
        unrealized_pnl=sum((d.unrealized_pnl for d in known if d.unrealized_pnl is not None), Decimal(0)),
        lowest_distance_pct=min(distances) if distances else None,
        alerts_fired=sum(d.alerts_fired for d in data) + portfolio[0],
        alerts_resolved=sum(d.alerts_resolved for d in data) + portfolio[1],
        liquidations=sum(d.liquidations for d in data),
        unreachable_accounts=sum(1 for d in data if d.unreachable > timedelta(0)),
        portfolio_alerts_fired=portfolio[0],
    )


def worst_first(a: AccountReport) -> tuple[Any, ...]:
    d = a.data
    far = Decimal("Infinity")
    return (
        not a.no_data,
        d.lowest_distance_pct if d.lowest_distance_pct is not None else far,
        -(d.deepest_drawdown_pct or Decimal(0)),
        d.account,
    )


def _change(before: Decimal | None, now: Decimal | None, since: datetime | None) -> Change | None:
    if before is None or now is None:
        return None
    diff = now - before
    return Change(diff, diff / before * 100 if before else None, since)


# -- formatting, for the templates -------------------------------------------------------------------------


def report_json(report: Report) -> dict[str, Any]:
    """For programs: decimals as strings (exact), times in ISO 8601 UTC, durations in seconds."""

    def dec(value: Decimal | None) -> str | None:
        return None if value is None else format(value, "f")

    def change(c: Change | None) -> dict[str, str | None] | None:
        if c is None:
            return None
        return {"absolute": dec(c.absolute), "pct": dec(c.pct), "since": c.since.isoformat() if c.since else None}

    return {
        "name": report.name,
        "start": report.start.isoformat(),
        "end": report.end.isoformat(),
        "total": {
            "equity_usdt": dec(report.equity),
            "change": change(report.change),
            "unrealized_pnl_usdt": dec(report.unrealized_pnl),
            "lowest_liquidation_distance_pct": dec(report.lowest_distance_pct),
            "alerts_fired": report.alerts_fired,
            "alerts_resolved": report.alerts_resolved,
            "liquidations": report.liquidations,
            "unreachable_accounts": report.unreachable_accounts,
        },
        "accounts": [
            {
                "name": a.account,
                "as_of": a.data.as_of.isoformat() if a.data.as_of else None,
                "equity_usdt": dec(a.data.equity),
                "change": change(a.change),
                "unrealized_pnl_usdt": dec(a.data.unrealized_pnl),
                "lowest_equity_usdt": dec(a.data.lowest_equity),
                "deepest_drawdown_pct": dec(a.data.deepest_drawdown_pct),
                "liquidation_distance_pct": dec(a.data.worst_distance_pct),
                "lowest_liquidation_distance_pct": dec(a.data.lowest_distance_pct),
                "alerts_fired": a.data.alerts_fired,
                "alerts_resolved": a.data.alerts_resolved,
                "liquidations": a.data.liquidations,
                "unreachable_seconds": int(a.data.unreachable.total_seconds()),
            }
            for a in report.accounts
        ],
    }
