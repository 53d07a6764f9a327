"""What the store wrote, read back for the tests' assertions: each account's last detailed snapshot and the
equity high-water mark. The monitor itself never reads these (it keeps the live state in memory and the peaks
from `equity_series`), so they live here and not in the store."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from monitor.domain import Position
from monitor.store.history import HOUR, floor_hour
from monitor.store.lastread import last_reads, position_from_row
from monitor.store.repository import Store


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
    """An account's last successful snapshot, as stored."""

    account: str
    taken_at: datetime
    equity_usdt: Decimal
    unrealized_pnl_usdt: Decimal
    balances: tuple[BalanceLine, ...]
    positions: tuple[Position, ...]


def latest(store: Store, accounts: Iterable[str] | None = None) -> dict[str, LatestAccount]:
    """Each account's last stored snapshot with its balances and positions (at most `snapshot_interval`
    older than its last successful poll, whose equity is the last point of `equity_series`): the rows the
    monitor restores from (monitor.store.lastread), with every stored column of the balances."""
    wanted = None if accounts is None else set(accounts)
    return {
        name: LatestAccount(
            name,
            r.point.taken_at,
            r.point.equity_usdt,
            r.point.unrealized_pnl_usdt,
            tuple(_balance(b) for b in r.balances),
            tuple(position_from_row(p) for p in r.positions),
        )
        for name, r in last_reads(store.engine).items()
        if wanted is None or name in wanted
    }


def equity_peak(store: Store, account: str, since: datetime) -> Decimal | None:
    """The highest equity since a moment: raw points where they are kept, and the maxima of the whole hours
    after `since` where only rollups remain."""
    until = datetime.max.replace(tzinfo=since.tzinfo)
    raw = [s.high for s in store.equity_series(account, since, until)]
    first_whole_hour = floor_hour(since) + (HOUR if since != floor_hour(since) else timedelta(0))
    rolled = [s.high for s in store.equity_series(account, first_whole_hour, until, hourly=True)]
    highs = raw + rolled
    return max(highs) if highs else None


def _balance(row: Any) -> BalanceLine:
    return BalanceLine(
        row.product, row.coin, row.equity, row.available, row.locked, row.unrealized_pnl, row.risk_ratio, row.usdt_value
    )
