"""The write path of poll results: one row per poll, the equity series at every poll, and balance and position
rows (the detail) at least every `snapshot_interval` per account, and at every poll while the account is at risk
or its positions or coins change (monitor.store.snapshots.snapshot_shape says what counts as a change).

The account row (mode, key, last error, last poll and success) is rewritten only when something in it changes
other than the time of the last poll and success, and at least every ACCOUNT_REFRESH: those two times are in the
poll rows (monitor.store.alerts.AlertStore.last_success reads both)."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any, NamedTuple

from sqlalchemy import Connection, Table

from monitor.domain import AccountSnapshot, PollOutcome
from monitor.store import tables as t
from monitor.store.bulk import clip, insert_many, update_many

ACCOUNT: Table = t.Account.__table__  # type: ignore[attr-defined]
POLL: Table = t.Poll.__table__  # type: ignore[attr-defined]
BALANCE: Table = t.BalanceSnapshot.__table__  # type: ignore[attr-defined]
POSITION: Table = t.PositionSnapshot.__table__  # type: ignore[attr-defined]
EQUITY: Table = t.EquityPoint.__table__  # type: ignore[attr-defined]
ACCOUNT_REFRESH = timedelta(minutes=10)  # the account row's last_poll_at and last_success_at lag by at most this
EVERY_POLL = ("last_poll_at", "last_success_at")  # what changes at every poll (and is not worth a write alone)


class Snapshots:
    def __init__(self, snapshot_interval: timedelta) -> None:
        self.snapshot_interval = snapshot_interval
        self._detailed: dict[int, tuple[datetime, Shape]] = {}  # per account: its last stored detail
        self._known: dict[int, dict[str, Any]] = {}  # per account: its row as this process knows it
        self._rows: dict[int, dict[str, Any]] = {}  # per account: its row as this process last wrote it

    def write(self, connection: Connection, ids: dict[str, int], outcomes: Sequence[PollOutcome]) -> Written:
        """Write chronological outcomes inside the caller's transaction; returns what was written, for
        `committed` once the transaction is."""
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
                    "error_message": clip(o.error_message, 1000),
                    "requests": o.requests,
                }
            )
            if o.snapshot is None:
                continue
            shape = snapshot_shape(o.snapshot)
            last = detailed.get(account_id) or self._detailed.get(account_id)
            detail = (
                o.at_risk or last is None or last[1] != shape or o.snapshot.taken_at - last[0] >= self.snapshot_interval
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
                insert_many(connection, table, rows)
        return Written(detailed, *self._update_accounts(connection, ids, outcomes))

    def committed(self, written: Written) -> None:
        """The write's transaction committed: its detail and account rows count as stored."""
        self._detailed.update(written.detailed)
        self._known.update(written.known)
        self._rows.update(written.rows)

    def _update_accounts(
        self, connection: Connection, ids: dict[str, int], outcomes: Sequence[PollOutcome]
    ) -> tuple[dict[int, dict[str, Any]], dict[int, dict[str, Any]]]:
        """Update the rows of accounts whose row changes; returns the rows as known and those written."""
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
                    last_error_message=clip(o.error_message, 1000),
                    last_error_at=o.finished_at,
                )
            if o.key is not None:
                row.update(
                    uid=o.key.uid,
                    permissions=list(o.key.permissions),
                    ips=list(o.key.ips),
                    key_checked_at=o.finished_at,
                )
        known, changed = {}, {}
        for id_, row in state.items():
            # A row written carries all this process knows (a failure's: the last success before it).
            row = known[id_] = self._known.get(id_, {}) | row
            last = self._rows.get(id_)
            if last is not None:
                fresh = row["last_poll_at"] - last["last_poll_at"] < ACCOUNT_REFRESH
                if fresh and all(row[k] == last.get(k) for k in row if k not in EVERY_POLL):
                    continue
            changed[id_] = row
        # One update per shape: rows must share their keys.
        by_shape: dict[tuple[str, ...], list[dict[str, Any]]] = defaultdict(list)
        for row in changed.values():
            by_shape[tuple(sorted(row))].append(row)
        for rows in by_shape.values():
            update_many(connection, ACCOUNT, rows)
        return known, changed


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


class Written(NamedTuple):
    detailed: dict[int, tuple[datetime, Shape]]  # per account: the detail written (time, shape)
    known: dict[int, dict[str, Any]]  # per account: its row as now known
    rows: dict[int, dict[str, Any]]  # per account: its row as written


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
