"""The data a report is made of, as the store gathers it (plain data: the store imports it, as it does the
alert model)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal


@dataclass(frozen=True, slots=True)
class AccountPeriod:
    """One account's data for a period (monitor.store.reports gathers it). None: not known (no reading)."""

    account: str
    as_of: datetime | None  # the last good reading at or before the period's end
    equity: Decimal | None  # USDT, at as_of
    # USDT, the last reading at or before the period's start (the last report), else the first reading in the
    # period (at first_read_at: the account was first read then)
    equity_before: Decimal | None
    unrealized_pnl: Decimal | None  # USDT, at as_of
    lowest_equity: Decimal | None  # USDT, in the period
    deepest_drawdown_pct: Decimal | None  # % below the running peak (the start's equity counts), in the period
    worst_distance_pct: Decimal | None  # % from liquidation of the closest position at as_of; None: none open
    lowest_distance_pct: Decimal | None  # the closest any position came in the period; None: none open
    alerts_fired: int = 0  # alerts that started firing in the period
    alerts_resolved: int = 0
    liquidations: int = 0  # positions that were liquidated in the period
    unreachable: timedelta = timedelta(0)  # from a failed read to the next good one, summed
    first_read_at: datetime | None = None  # set when equity_before is the first reading inside the period
