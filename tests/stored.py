"""What the store wrote, read back for the tests' assertions: each account's last detailed snapshot and the
equity high-water mark. The monitor itself never reads these (it keeps the live state in memory and the peaks
from `equity_series`), so they live here and not in the store."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from sqlalchemy import Table, func, select

from monitor.domain import MarginMode, Position, PositionMode, Side
from monitor.store import tables as t
from monitor.store.history import HOUR, floor_hour
from monitor.store.repository import Store

ACCOUNT: Table = t.Account.__table__  # type: ignore[attr-defined]
EQUITY: Table = t.EquityPoint.__table__  # type: ignore[attr-defined]
BALANCE: Table = t.BalanceSnapshot.__table__  # type: ignore[attr-defined]
POSITION: Table = t.PositionSnapshot.__table__  # type: ignore[attr-defined]


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
    older than its last successful poll, whose equity is the last point of `equity_series`)."""
    last = (
        select(EQUITY.c.account_id, func.max(EQUITY.c.taken_at).label("taken_at"))
        .where(EQUITY.c.detail)
        .group_by(EQUITY.c.account_id)
        .subquery()
    )
    query = (
        select(ACCOUNT.c.id, ACCOUNT.c.name, EQUITY.c.taken_at, EQUITY.c.equity_usdt, EQUITY.c.unrealized_pnl_usdt)
        .join(last, last.c.account_id == ACCOUNT.c.id)
        .join(EQUITY, (EQUITY.c.account_id == last.c.account_id) & (EQUITY.c.taken_at == last.c.taken_at))
    )
    if accounts is not None:
        query = query.where(ACCOUNT.c.name.in_(list(accounts)))
    with store.engine.connect() as connection:
        heads = {row.id: row for row in connection.execute(query)}
        if not heads:
            return {}
        balances: dict[int, list[BalanceLine]] = defaultdict(list)
        for row in connection.execute(_at_latest(BALANCE, last, heads)):
            balances[row.account_id].append(_balance(row))
        positions: dict[int, list[Position]] = defaultdict(list)
        for row in connection.execute(_at_latest(POSITION, last, heads)):
            positions[row.account_id].append(_position(row))
    return {
        h.name: LatestAccount(
            h.name, h.taken_at, h.equity_usdt, h.unrealized_pnl_usdt, tuple(balances[id_]), tuple(positions[id_])
        )
        for id_, h in heads.items()
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


def _at_latest(table: Table, last: Any, accounts: Iterable[int]) -> Any:
    """The rows of a snapshot table taken at each account's latest successful poll."""
    at = (last.c.account_id == table.c.account_id) & (last.c.taken_at == table.c.taken_at)
    return select(table).join(last, at).where(table.c.account_id.in_(list(accounts)))


def _balance(row: Any) -> BalanceLine:
    return BalanceLine(
        row.product, row.coin, row.equity, row.available, row.locked, row.unrealized_pnl, row.risk_ratio, row.usdt_value
    )


def _position(row: Any) -> Position:
    return Position(
        product_type=row.product_type,
        symbol=row.symbol,
        margin_coin="",
        side=Side(row.side),
        position_mode=PositionMode(row.position_mode),
        margin_mode=MarginMode(row.margin_mode),
        size=row.size,
        entry_price=row.entry_price,
        mark_price=row.mark_price,
        liquidation_price=row.liquidation_price,
        margin=row.margin,
        leverage=row.leverage,
        unrealized_pnl=row.unrealized_pnl,
        margin_ratio=row.margin_ratio,
    )
