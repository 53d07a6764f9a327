"""What the store hands out: plain frozen dataclasses, never SQL rows."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal


@dataclass(frozen=True, slots=True)
class EquitySample:
    """One point of an equity series: a raw poll, or an hour (then low/high span the hour)."""

    at: datetime
    equity: Decimal
    low: Decimal
    high: Decimal
    unrealized_pnl: Decimal
    worst_liquidation_distance_pct: Decimal | None


@dataclass(frozen=True, slots=True)
class MaintenanceReport:
    hours_rolled_up: int
    raw_rows_deleted: int
    hourly_rows_deleted: int
