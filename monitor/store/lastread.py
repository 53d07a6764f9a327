"""Each account's last stored read, as a snapshot: after a restart, what the page shows and the rules see of an
account until this process reads it (an account that cannot be read at all keeps showing its positions and
equity, marked stale, instead of looking empty).

It is the latest poll whose detail (balance and position rows) was stored, at that poll's equity. What the rows
do not keep is left out or derived: a spot coin's frozen amount is within its `locked` one, a position's margin
coin follows its product type (the base coin for coin-margined futures)."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, replace
from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import Engine, and_, func, select

from monitor.domain import (
    AccountMode,
    AccountSnapshot,
    FuturesAccount,
    MarginMode,
    Position,
    PositionMode,
    Side,
    SpotAsset,
    UnifiedAccount,
    UnifiedAsset,
)
from monitor.store.errors import boundary
from monitor.store.history import ACCOUNT, BALANCE, EQUITY, POSITION

UNIFIED_TOTAL = "TOTAL"  # the unified account's own row among its coins (monitor.store.snapshots.balance_rows)


@dataclass(frozen=True, slots=True)
class StoredRead:
    """An account's last stored read as its rows: the equity point (with the account's id, name and mode), and
    the balance and position rows stored with it."""

    point: Any
    balances: list[Any]
    positions: list[Any]


def last_snapshots(engine: Engine) -> dict[str, AccountSnapshot]:
    """Per account name, its last stored read; raises monitor.errors.StorageError when the database cannot be
    read."""
    return {
        name: _snapshot(name, r.point.mode, r.point.taken_at, r.point.equity_usdt, r.balances, r.positions)
        for name, r in last_reads(engine).items()
    }


def last_reads(engine: Engine) -> dict[str, StoredRead]:
    """Per account name, the rows of its last stored read (last_snapshots' source; the tests read the stored
    columns from it); raises monitor.errors.StorageError when the database cannot be read."""
    latest = (
        select(EQUITY.c.account_id, func.max(EQUITY.c.taken_at).label("taken_at"))
        .where(EQUITY.c.detail.is_(True))
        .group_by(EQUITY.c.account_id)
        .subquery()
    )
    points = (
        select(
            ACCOUNT.c.id,
            ACCOUNT.c.name,
            ACCOUNT.c.mode,
            EQUITY.c.taken_at,
            EQUITY.c.equity_usdt,
            EQUITY.c.unrealized_pnl_usdt,
        )
        .join(latest, latest.c.account_id == ACCOUNT.c.id)
        .join(EQUITY, and_(EQUITY.c.account_id == ACCOUNT.c.id, EQUITY.c.taken_at == latest.c.taken_at))
    )
    balances: dict[int, list[Any]] = defaultdict(list)
    positions: dict[int, list[Any]] = defaultdict(list)
    with boundary(), engine.connect() as connection:
        found = {row.id: row for row in connection.execute(points)}
        for table, into in ((BALANCE, balances), (POSITION, positions)):
            query = select(table).join(
                latest, and_(latest.c.account_id == table.c.account_id, latest.c.taken_at == table.c.taken_at)
            )
            for row in connection.execute(query):
                into[row.account_id].append(row)
    return {row.name: StoredRead(row, balances[row.id], positions[row.id]) for row in found.values()}


def _snapshot(
    name: str, mode: str | None, taken_at: datetime, equity: Decimal, balances: list[Any], positions: list[Any]
) -> AccountSnapshot:
    spot = tuple(SpotAsset(b.coin, b.available, Decimal(0), b.locked) for b in balances if b.product == "spot")
    futures = tuple(
        FuturesAccount(
            b.product,
            b.coin,
            b.equity,
            b.usdt_value,
            b.available,
            b.locked,
            b.unrealized_pnl or Decimal(0),
            b.risk_ratio,
        )
        for b in balances
        if b.product not in ("spot", "unified")
    )
    total = next((b for b in balances if b.product == "unified" and b.coin == UNIFIED_TOTAL), None)
    unified = None
    if total is not None or mode == AccountMode.UNIFIED:
        assets = tuple(
            UnifiedAsset(b.coin, b.equity, b.usdt_value, b.equity, b.available, Decimal(0), b.locked)
            for b in balances
            if b.product == "unified" and b.coin != UNIFIED_TOTAL
        )
        pnl = total.unrealized_pnl if total is not None and total.unrealized_pnl is not None else Decimal(0)
        ratio = total.risk_ratio if total is not None else None
        unified = UnifiedAccount(equity, equity, pnl, ratio, None, None, None, assets)
    snapshot = AccountSnapshot(
        name, taken_at, AccountMode.UNIFIED if unified is not None else AccountMode.CLASSIC, spot=spot,
        futures=futures, unified=unified, positions=tuple(position_from_row(p) for p in positions),
        products=tuple(sorted({f.product_type for f in futures} | {p.product_type for p in positions})),
    )  # fmt: skip
    if unified is not None:
        return snapshot
    # The spot valuation is not stored: it is what the stored equity holds beyond the futures accounts.
    return replace(snapshot, spot_usdt=equity - replace(snapshot, spot_usdt=Decimal(0)).equity_usdt)


def position_from_row(p: Any) -> Position:
    """A stored position row as a position (its margin coin derived from the product type)."""
    coin = p.symbol.removesuffix("USD") if p.product_type.startswith("COIN") else p.product_type.split("-")[0]
    return Position(
        p.product_type, p.symbol, coin, Side(p.side), PositionMode(p.position_mode), MarginMode(p.margin_mode),
        p.size, p.entry_price, p.mark_price, p.liquidation_price, p.margin, p.leverage, p.unrealized_pnl,
        p.margin_ratio,
    )  # fmt: skip
