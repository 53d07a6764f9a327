"""What the page, the API and the metrics show, and the read model they take it from (StatusReader): the poller's
live state (fast, no database round trip), the alert engine's alerts, and the database for history and the outbox."""

from __future__ import annotations

import logging
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Protocol

from monitor.alerts.model import Alert, OutboxMessage, Silence, State
from monitor.clock import Clock
from monitor.config.model import WebSettings
from monitor.domain import AccountSnapshot
from monitor.errors import error_text
from monitor.exchange.bitget.codes import fix_of
from monitor.market.feed import FeedHealth
from monitor.poller.state import INVALID_SNAPSHOT, Reading, account_status, margin_ratio, plausible
from monitor.store.views import EquitySample
from web.risk import Levels, Odds

log = logging.getLogger(__name__)
RANGES = {
    "24h": timedelta(hours=24),
    "7d": timedelta(days=7),
    "30d": timedelta(days=30),
    "90d": timedelta(days=90),
    "1y": timedelta(days=365),
}


LIQUIDATION_SHOWN = timedelta(hours=1)  # how long a liquidated position keeps its account at "liquidation"


def risk_of(alerts: list[Alert], worst_distance: Decimal | None, now: datetime) -> str | None:
    """The account's risk (one of monitor.poller.state.RISKS) from its firing alerts: a position at or past
    its liquidation price, or one liquidated within LIQUIDATION_SHOWN, is "liquidation" whatever the rules say."""
    if worst_distance is not None and worst_distance <= 0:
        return "liquidation"
    if any(a.state is State.LIQUIDATED and a.resolved_at is not None and now - a.resolved_at <= LIQUIDATION_SHOWN
           for a in alerts):  # fmt: skip
        return "liquidation"
    severities = {str(a.severity) for a in alerts if a.state is State.FIRING and a.severity is not None}
    for risk in ("critical", "warning"):
        if risk in severities:
            return risk
    return None


@dataclass(frozen=True, slots=True)
class AccountRow:
    name: str
    tags: tuple[str, ...]
    status: str  # one of ACCOUNT_STATUSES: its risk, or else its data health
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
    health: str = "ok"  # one of STATUSES: the data health, shown beside a risk status
    levels: Levels = field(default_factory=Levels)
    mark_age: float | None = None  # seconds since the oldest live mark its positions use; None: as read (`age`)
    odds: Odds | None = None  # of the worst position (the row's distance); None without positions
    feed_stale: bool = False  # the mark feed of its positions is stale: their marks are as read, `age` old
    restored: bool = False  # the data is the database's last read from before this process started, until read

    @property
    def error_text(self) -> str | None:
        """The error for people, each part once ("Bitget error 40018 on /api/...: Invalid IP")."""
        return error_text(self.name, self.error_code, self.error_message) if self.error_code else None


@dataclass(frozen=True, slots=True)
class Totals:
    equity: Decimal
    upnl: Decimal
    accounts: int
    by_status: dict[str, int]


@dataclass(frozen=True, slots=True)
class ConfigReload:
    """The accounts file's reloads, for the page's banner, /readyz and /metrics."""

    file: str
    loaded_at: datetime  # when the configuration in use was loaded (at start or by a reload)
    error: str | None = None  # why the latest reload was rejected (file, line, key), until one succeeds
    failed_since: datetime | None = None  # the first reload rejected since the configuration in use was loaded


@dataclass(frozen=True, slots=True)
class Health:
    """What /readyz and the page's banners say of the process."""

    database_ready: bool  # the schema is in place and writes go through
    poller_running: bool
    lease_mode: str  # single | starting | alone | sharing
    messages_in_memory: int  # evaluated messages not yet in the outbox table
    behind: bool  # the IP budget cannot read every account once per poll_interval
    sharing: tuple[int, int] | None  # (accounts this process polls, accounts in the file) when processes share
    feed: tuple[FeedHealth, ...] = ()  # the market feed's product types; empty without a feed (`once`)
    config: ConfigReload | None = None  # None where the file is not watched


@dataclass(frozen=True, slots=True)
class Counters:
    """The monotonic counts /metrics exposes, since start."""

    poll_errors: dict[str, int]  # failed polls by Bitget code (or error class)
    requests: int
    rate_limited: int
    refused_writes: dict[str, int]  # per account: poll results the database refused
    stalled_seconds: float
    memory_dropped: int  # unsent messages dropped from a full outbox in memory
    sent: int
    failures: int
    confirming_reads: int = 0  # account reads asked for at once to confirm what the mark feed suggests
    estimated_alerts: int = 0  # accounts judged on the live estimate for want of a confirming read in time


class StatusReader(Protocol):
    """Everything the page, the API and the metrics read: the read model the service builds for the web
    (monitor.readmodel). The web imports nothing else of the service."""

    @property
    def clock(self) -> Clock: ...

    def web_settings(self) -> WebSettings: ...

    def rows(self) -> list[AccountRow]: ...

    def account_row(self, name: str) -> AccountRow | None: ...

    def reading(self, name: str) -> Reading | None:
        """An account this process polls, as data (with processes sharing accounts, each shows its own)."""

    def position_safety(self, name: str) -> dict[str, str]: ...  # subject -> margin to safety (issue 17)

    def position_odds(self, name: str) -> dict[str, Odds]: ...  # subject -> the odds of liquidation (issue 17)

    def alerts(self, account: str | None = None, *, include_resolved: bool = False) -> list[Alert]:
        """Firing, pending, then (with include_resolved) recent liquidations and resolutions: alert_order."""

    def silenced(self, alert: Alert) -> bool: ...

    def health(self) -> Health: ...

    def counters(self) -> Counters: ...

    async def database_ok(self) -> bool: ...

    async def outbox(
        self, account: str | None = None, limit: int = 50, failing: bool = False
    ) -> list[OutboxMessage]: ...

    async def outbox_counts(self) -> dict[str, int]: ...

    async def silences(self) -> list[Silence]: ...

    async def equity(self, name: str, span: timedelta) -> list[EquitySample]: ...

    async def portfolio_equity(self, span: timedelta) -> list[EquitySample]:
        """The summed equity of the accounts this process polls."""

    async def add_silence(
        self, account: str, rule: str | None, symbol: str | None, length: timedelta, reason: str
    ) -> int: ...

    async def remove_silence(self, id_: int) -> bool: ...

    async def acknowledge(self, key: str, who: str) -> Alert | None:
        """Acknowledge a firing alert (written to the database); None when no such alert fires."""


def row(state: Reading, now: datetime, stale: bool, storage_error: str | None = None,
        alerts: list[Alert] | None = None, levels: Levels | None = None,
        mark_age: float | None = None) -> AccountRow:  # fmt: skip
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
    equity, upnl, worst, ratio = numbers
    health = account_status(state.status, state.snapshot is not None, stale, error[0])
    risk = risk_of(alerts or [], worst, now)
    status = account_status(state.status, state.snapshot is not None, stale, error[0], risk)
    return AccountRow(
        name=state.name,
        tags=state.tags,
        status=status,
        error_code=error[0],
        error_message=error[1],
        fix=fix_of(error[0]),
        equity=equity,
        upnl=upnl,
        worst_distance=worst,
        margin_ratio=ratio,
        last_good_at=state.last_good_at,
        age=(now - state.last_good_at).total_seconds() if state.last_good_at else None,
        at_risk=state.at_risk,
        positions=len(s.positions) if s else 0,
        storage_error=storage_error,
        health=health,
        levels=levels or Levels(),
        mark_age=mark_age,
        restored=state.restored,
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
