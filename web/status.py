"""What the page, the API and the metrics show, read from the running service: the poller's live state (fast,
no database round trip), the alert engine's alerts, and the database for history and the outbox."""

from __future__ import annotations

import asyncio
import logging
from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from monitor.alerts.model import Alert, OutboxMessage, State, alert_order
from monitor.domain import AccountSnapshot
from monitor.exchange.bitget.codes import CODES
from monitor.poller.state import INVALID_SNAPSHOT, AccountState, account_status, margin_ratio, plausible
from monitor.store.views import EquitySample

if TYPE_CHECKING:
    from monitor.service import Service

log = logging.getLogger(__name__)
RANGES = {
    "24h": timedelta(hours=24),
    "7d": timedelta(days=7),
    "30d": timedelta(days=30),
    "90d": timedelta(days=90),
    "1y": timedelta(days=365),
}


@dataclass(frozen=True, slots=True)
class AccountRow:
    name: str
    tags: tuple[str, ...]
    status: str  # one of STATUSES
    error_code: str | None
    error_message: str | None
    fix: str | None
    equity: Decimal | None
    upnl: Decimal | None
    worst_distance: Decimal | None
    margin_ratio: Decimal | None
    last_good_at: datetime | None
    age: float | None  # seconds since the last good data
    at_risk: bool
    positions: int
    storage_error: str | None = None  # why the database refused this account's last result, until one is stored


@dataclass(frozen=True, slots=True)
class Totals:
    equity: Decimal
    upnl: Decimal
    accounts: int
    by_status: dict[str, int]


class StatusSource:
    def __init__(self, service: Service) -> None:
        self.service = service

    @property
    def clock(self) -> Any:
        return self.service.clock

    def states(self) -> list[AccountState]:
        poller = self.service.poller
        return poller.active() if poller is not None else []

    def rows(self) -> list[AccountRow]:
        now = self.clock.now()
        m = self.service.config.monitor
        refusals = self.service.writer.refusals
        return [row(s, now, s.stale(now, m.poll_interval, m.stale_grace), refusals.get(s.name)) for s in self.states()]

    def state(self, name: str) -> AccountState | None:
        """An account this process polls (with processes sharing accounts, each shows its own)."""
        poller = self.service.poller
        state = poller.accounts.get(name) if poller is not None else None
        return state if state is not None and (poller is None or poller.owned is None or name in poller.owned) \
            else None  # fmt: skip

    def account_row(self, name: str) -> AccountRow | None:
        state = self.state(name)
        if state is None:
            return None
        now = self.clock.now()
        m = self.service.config.monitor
        return row(state, now, state.stale(now, m.poll_interval, m.stale_grace), self.service.writer.refusals.get(name))

    def alerts(self, account: str | None = None, *, include_resolved: bool = False) -> list[Alert]:
        """Firing alerts first (critical, then warning), then pending, then recent liquidations and resolutions."""
        wanted = (State.FIRING, State.PENDING) + ((State.LIQUIDATED, State.RESOLVED) if include_resolved else ())
        found = [
            a
            for a in self.service.alerts.alerts.values()
            if a.state in wanted and (account is None or a.account == account)
        ]
        return sorted(found, key=alert_order)

    def silenced(self, alert: Alert) -> bool:
        from monitor.alerts.silences import silenced

        return silenced(alert, self.service.alerts.silences, self.clock.now())

    async def outbox(self, account: str | None = None, limit: int = 50, failing: bool = False) -> list[OutboxMessage]:
        store = self.service.store.alerts
        return await asyncio.to_thread(store.outbox, account=account, limit=limit, failing=failing)

    async def outbox_counts(self) -> dict[str, int]:
        return await asyncio.to_thread(self.service.store.alerts.outbox_counts)

    async def silences(self) -> list[Any]:
        return await asyncio.to_thread(self.service.store.alerts.silences, self.clock.now())

    async def equity(self, name: str, span: timedelta) -> list[EquitySample]:
        now = self.clock.now()
        hourly = span > timedelta(hours=48)
        return await asyncio.to_thread(self.service.store.equity_series, name, now - span, now, hourly=hourly)

    async def database_ok(self) -> bool:
        try:
            await asyncio.wait_for(asyncio.to_thread(self.service.store.ping), 5)
        except Exception:
            return False
        return True


def row(state: AccountState, now: datetime, stale: bool, storage_error: str | None = None) -> AccountRow:
    """The account's line; numbers that cannot be computed or shown (the poller refuses such answers, so this is
    a last line of defence) leave the numbers empty and mark the account failing, never the whole page."""
    s = state.snapshot
    try:
        numbers = _numbers(s) if s is not None else (None, None, None, None)
    except (ArithmeticError, ValueError, TypeError) as exc:
        log.error("%s: the last snapshot's numbers cannot be shown: %s", state.name, exc)
        s, numbers = None, (None, None, None, None)
        error: tuple[str | None, str | None] = (INVALID_SNAPSHOT, f"the last answer's numbers are unusable: {exc}")
    else:
        error = (state.error_code, state.error_message)
    status = account_status(state.status, state.snapshot is not None, stale, error[0])
    known = CODES.get(error[0] or "")
    equity, upnl, worst, ratio = numbers
    return AccountRow(
        name=state.name,
        tags=state.config.tags,
        status=status,
        error_code=error[0],
        error_message=error[1],
        fix=known.fix if known is not None and known.fix else None,
        equity=equity,
        upnl=upnl,
        worst_distance=worst,
        margin_ratio=ratio,
        last_good_at=state.last_good_at,
        age=(now - state.last_good_at).total_seconds() if state.last_good_at else None,
        at_risk=state.at_risk,
        positions=len(s.positions) if s else 0,
        storage_error=storage_error,
    )


def _numbers(s: AccountSnapshot) -> tuple[Decimal | None, ...]:
    """Equity, unrealized PnL, worst liquidation distance and margin ratio; raises on what cannot be shown."""
    names = ("equity in USDT", "unrealized PnL", "worst liquidation distance", "margin ratio")
    values = (s.equity_usdt, s.unrealized_pnl_usdt, s.worst_liquidation_distance_pct, margin_ratio(s))
    for name, value in zip(names, values, strict=True):
        if value is not None and not plausible(value):
            raise ValueError(f"{name} is {str(value)[:40]}")
    return values


def totals(rows: list[AccountRow]) -> Totals:
    by_status: dict[str, int] = defaultdict(int)
    for r in rows:
        by_status[r.status] += 1
    return Totals(
        equity=sum((r.equity for r in rows if r.equity is not None), Decimal(0)),
        upnl=sum((r.upnl for r in rows if r.upnl is not None), Decimal(0)),
        accounts=len(rows),
        by_status=dict(by_status),
    )


def tag_totals(rows: list[AccountRow]) -> dict[str, Totals]:
    tagged: dict[str, list[AccountRow]] = defaultdict(list)
    for r in rows:
        for tag in r.tags:
            tagged[tag].append(r)
    return {tag: totals(group) for tag, group in sorted(tagged.items())}
