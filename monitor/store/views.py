"""What the store hands out: plain frozen dataclasses, never SQL rows."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from monitor.domain import Position


@dataclass(frozen=True, slots=True)
class BalanceLine:
    product: str  # spot | USDT-FUTURES | ... | unified
    coin: str
    equity: Decimal
    available: Decimal
    locked: Decimal
    unrealized_pnl: Decimal | None
    risk_ratio: Decimal | None
    usdt_value: Decimal | None


@dataclass(frozen=True, slots=True)
class LatestAccount:
    """An account's last successful snapshot."""

    account: str
    taken_at: datetime
    equity_usdt: Decimal
    unrealized_pnl_usdt: Decimal
    balances: tuple[BalanceLine, ...]
    positions: tuple[Position, ...]


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
