"""The database tables (SQLModel). Money is ExactDecimal, time is UTCDateTime; the migrations in alembic/
create exactly these (a test compares them)."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal

from sqlalchemy import JSON, Index, UniqueConstraint, true
from sqlmodel import Field, SQLModel

from monitor.store.types import ExactDecimal, UTCDateTime


def _money(nullable: bool = False) -> Decimal:
    return Field(default=None, sa_type=ExactDecimal, nullable=nullable)  # type: ignore[no-any-return]


def _time(nullable: bool = False, index: bool = False) -> datetime:
    return Field(default=None, sa_type=UTCDateTime, nullable=nullable, index=index)  # type: ignore[no-any-return]


class Account(SQLModel, table=True):
    """An account as the monitor has seen it."""

    id: int | None = Field(default=None, primary_key=True)
    name: str = Field(max_length=200, unique=True)
    uid: str | None = Field(default=None, max_length=64)
    mode: str | None = Field(default=None, max_length=16)  # classic | unified
    demo: bool = False
    tags: list[str] = Field(default_factory=list, sa_type=JSON)
    permissions: list[str] = Field(default_factory=list, sa_type=JSON)
    ips: list[str] = Field(default_factory=list, sa_type=JSON)
    key_checked_at: datetime | None = _time(nullable=True)
    last_poll_at: datetime | None = _time(nullable=True)
    last_success_at: datetime | None = _time(nullable=True)
    last_error_code: str | None = Field(default=None, max_length=32)
    last_error_message: str | None = Field(default=None, max_length=1000)
    last_error_at: datetime | None = _time(nullable=True)
    # No longer written (drawdown peaks come from the equity series); the columns stay until a migration drops them.
    equity_peak: Decimal | None = _money(nullable=True)
    equity_peak_at: datetime | None = _time(nullable=True)
    created_at: datetime = _time()


class Poll(SQLModel, table=True):
    """One read of one account."""

    __table_args__ = (Index("ix_poll_account_started", "account_id", "started_at"),)
    id: int | None = Field(default=None, primary_key=True)
    account_id: int = Field(foreign_key="account.id")
    started_at: datetime = _time(index=True)
    finished_at: datetime = _time()
    ok: bool
    error_code: str | None = Field(default=None, max_length=32)
    error_message: str | None = Field(default=None, max_length=1000)
    requests: int = 0


class BalanceSnapshot(SQLModel, table=True):
    """Per account, time and product/margin coin."""

    __tablename__ = "balance_snapshot"
    __table_args__ = (Index("ix_balance_account_taken", "account_id", "taken_at"),)
    id: int | None = Field(default=None, primary_key=True)
    account_id: int = Field(foreign_key="account.id")
    taken_at: datetime = _time(index=True)
    product: str = Field(max_length=32)  # spot | USDT-FUTURES | ... | unified
    coin: str = Field(max_length=32)
    equity: Decimal = _money()
    available: Decimal = _money()
    locked: Decimal = _money()
    unrealized_pnl: Decimal | None = _money(nullable=True)
    risk_ratio: Decimal | None = _money(nullable=True)  # cross risk ratio, or unified margin ratio
    usdt_value: Decimal | None = _money(nullable=True)


class PositionSnapshot(SQLModel, table=True):
    __tablename__ = "position_snapshot"
    __table_args__ = (Index("ix_position_account_taken", "account_id", "taken_at"),)
    id: int | None = Field(default=None, primary_key=True)
    account_id: int = Field(foreign_key="account.id")
    taken_at: datetime = _time(index=True)
    product_type: str = Field(max_length=32)
    symbol: str = Field(max_length=64)
    side: str = Field(max_length=8)
    margin_mode: str = Field(max_length=16)
    position_mode: str = Field(max_length=16)
    size: Decimal = _money()
    entry_price: Decimal = _money()
    mark_price: Decimal = _money()
    liquidation_price: Decimal | None = _money(nullable=True)
    liquidation_distance_pct: Decimal | None = _money(nullable=True)
    margin: Decimal = _money()
    leverage: Decimal | None = _money(nullable=True)
    unrealized_pnl: Decimal = _money()
    margin_ratio: Decimal | None = _money(nullable=True)


class EquityPoint(SQLModel, table=True):
    """The raw equity series: one point per successful poll. `detail` says whether that poll's balance and
    position rows were stored too (see Store.snapshot_interval)."""

    __tablename__ = "equity_point"
    __table_args__ = (Index("ix_equity_account_taken", "account_id", "taken_at"),)
    id: int | None = Field(default=None, primary_key=True)
    account_id: int = Field(foreign_key="account.id")
    taken_at: datetime = _time(index=True)
    equity_usdt: Decimal = _money()
    unrealized_pnl_usdt: Decimal = _money()
    worst_liquidation_distance_pct: Decimal | None = _money(nullable=True)
    detail: bool = Field(default=True, sa_column_kwargs={"server_default": true()})


class EquityHourly(SQLModel, table=True):
    """The rolled-up series: one row per account and hour, kept long after the raw points are pruned."""

    __tablename__ = "equity_hourly"
    __table_args__ = (UniqueConstraint("account_id", "hour", name="uq_equity_hourly_account_hour"),)
    id: int | None = Field(default=None, primary_key=True)
    account_id: int = Field(foreign_key="account.id")
    hour: datetime = _time(index=True)
    equity_last: Decimal = _money()
    equity_min: Decimal = _money()
    equity_max: Decimal = _money()
    unrealized_pnl_last: Decimal = _money()
    worst_liquidation_distance_pct: Decimal | None = _money(nullable=True)
    samples: int = 0


class Alert(SQLModel, table=True):
    """One alert instance: a rule, an account (none for portfolio rules) and a subject."""

    id: int | None = Field(default=None, primary_key=True)
    key: str = Field(max_length=400, unique=True)  # rule | account | subject
    rule: str = Field(max_length=200)
    account_id: int | None = Field(default=None, foreign_key="account.id", index=True)
    subject: str = Field(default="", max_length=200)  # product, symbol, side
    state: str = Field(max_length=16, index=True)  # inactive | pending | firing | resolved
    severity: str | None = Field(default=None, max_length=16)
    value: Decimal | None = _money(nullable=True)
    message: str = Field(default="", max_length=2000)  # one line for people
    details: dict[str, str] = Field(default_factory=dict, sa_type=JSON)  # symbol, side, mark, liquidation, ...
    pending_since: datetime | None = _time(nullable=True)
    firing_since: datetime | None = _time(nullable=True)
    resolved_at: datetime | None = _time(nullable=True)
    last_notified_at: datetime | None = _time(nullable=True)
    last_notified_severity: str | None = Field(default=None, max_length=16)
    last_notified_state: str | None = Field(default=None, max_length=16)
    worst_severity: str | None = Field(default=None, max_length=16)  # the worst of this firing episode
    silenced_since: datetime | None = _time(nullable=True)  # a message was held back by a silence
    acknowledged_at: datetime | None = _time(nullable=True)  # acknowledged from the page: no repeats
    acknowledged_by: str | None = Field(default=None, max_length=200)
    acknowledged_severity: str | None = Field(default=None, max_length=16)
    updated_at: datetime = _time()


class AlertTransition(SQLModel, table=True):
    __tablename__ = "alert_transition"
    id: int | None = Field(default=None, primary_key=True)
    alert_id: int = Field(foreign_key="alert.id", index=True)
    at: datetime = _time(index=True)
    from_state: str = Field(max_length=16)
    to_state: str = Field(max_length=16)
    severity: str | None = Field(default=None, max_length=16)
    value: Decimal | None = _money(nullable=True)
    reason: str = Field(default="", max_length=400)


class Notification(SQLModel, table=True):
    """The outbox: one row per message per channel, written before it is sent."""

    __table_args__ = (
        Index("ix_notification_pending", "sent_at", "next_attempt_at"),
        Index("ix_notification_status", "status", "next_attempt_at"),
    )
    id: int | None = Field(default=None, primary_key=True)
    channel: str = Field(max_length=200)
    account_id: int | None = Field(default=None, foreign_key="account.id", index=True)
    severity: str | None = Field(default=None, max_length=16)
    title: str = Field(max_length=400)
    body: str  # the short form, for chat
    body_long: str = ""  # the long form, for email
    status: str = Field(default="queued", max_length=16)  # queued | held | sent | merged | dropped
    held_until: datetime | None = _time(nullable=True)  # quiet hours: released as one summary then
    merged_into: int | None = None  # the summary that carried this held message
    delivered: list[str] = Field(default_factory=list, sa_type=JSON)  # fingerprints of the URLs that got it
    created_at: datetime = _time()
    attempts: int = 0
    next_attempt_at: datetime = _time()
    last_error: str | None = Field(default=None, max_length=2000)
    sent_at: datetime | None = _time(nullable=True)
    claimed_by: str | None = Field(default=None, max_length=200)
    claimed_until: datetime | None = _time(nullable=True)


class NotificationItem(SQLModel, table=True):
    """Which alerts a message speaks about (one message may carry several), and what it says of each."""

    __tablename__ = "notification_item"
    notification_id: int = Field(foreign_key="notification.id", primary_key=True)
    alert_id: int = Field(foreign_key="alert.id", primary_key=True, index=True)
    transition_id: int | None = Field(default=None, foreign_key="alert_transition.id", index=True)
    reason: str = Field(max_length=16)  # firing | escalated | eased | repeat | resolved
    state: str = Field(max_length=16)  # the state announced
    severity: str | None = Field(default=None, max_length=16)


class Silence(SQLModel, table=True):
    id: int | None = Field(default=None, primary_key=True)
    account: str = Field(max_length=200)  # glob on account names
    rule: str | None = Field(default=None, max_length=200)
    symbol: str | None = Field(default=None, max_length=64)
    starts_at: datetime = _time()
    ends_at: datetime = _time(index=True)
    reason: str = Field(default="", max_length=1000)
    created_at: datetime = _time()
    removed_at: datetime | None = _time(nullable=True)


class Node(SQLModel, table=True):
    """A running `run` process, seen through its heartbeats (for sharing accounts among processes)."""

    __tablename__ = "monitor_node"
    name: str = Field(max_length=200, primary_key=True)
    heartbeat_at: datetime = _time()
    started_at: datetime = _time()


class Lease(SQLModel, table=True):
    """Which process polls an account, until when. Claimed and renewed with conditional updates."""

    __tablename__ = "account_lease"
    account: str = Field(max_length=200, primary_key=True)
    owner: str | None = Field(default=None, max_length=200)
    expires_at: datetime = _time(index=True)


class ReportSent(SQLModel, table=True):
    """A scheduled report put into the outbox: at most one row per report and due time (the unique key is the
    claim, so among processes sharing a database exactly one sends it). Written in the transaction that queues
    the report's messages."""

    __tablename__ = "report_sent"
    __table_args__ = (UniqueConstraint("report", "due_at", name="uq_report_sent_report_due"),)
    id: int | None = Field(default=None, primary_key=True)
    report: str = Field(max_length=200)
    due_at: datetime = _time()  # the end of the period it covers
    period_start: datetime = _time()
    claimed_by: str = Field(max_length=200)  # the process that sent it
    claimed_at: datetime = _time()
