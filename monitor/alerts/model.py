"""The alert model: the types the alert path is made of, and nothing that acts on them.

Alerts and their transitions (monitor.alerts.lifecycle steps them), why people are told (Reason), what a message
holds (Item, Rendered, Outgoing), silences, the changes of one or more evaluations (AlertBatch) with their
messages on the way into the outbox (Queued), and outbox rows as the store hands them out. The store persists
these types and imports them from here; this module imports no part of the monitor but the rules' severity.
"""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal
from enum import StrEnum
from typing import Any

from monitor.errors import DataRefused
from monitor.rules.model import Severity


class State(StrEnum):
    INACTIVE = "inactive"
    PENDING = "pending"
    FIRING = "firing"
    RESOLVED = "resolved"
    LIQUIDATED = "liquidated"  # its position was liquidated: over, but never "resolved"


ACTIVE = (State.PENDING, State.FIRING)
ENDED = (State.RESOLVED, State.LIQUIDATED)
CLOSED = "position closed"
_ORDER = {State.FIRING: 0, State.PENDING: 1, State.LIQUIDATED: 2, State.RESOLVED: 3, State.INACTIVE: 4}


@dataclass(frozen=True, slots=True)
class Alert:
    key: str  # rule | account | subject
    rule: str
    account: str | None
    subject: str
    state: State
    updated_at: datetime
    severity: Severity | None = None
    value: Decimal | None = None
    summary: str = ""
    details: dict[str, str] = field(default_factory=dict)
    pending_since: datetime | None = None
    firing_since: datetime | None = None
    resolved_at: datetime | None = None
    last_notified_at: datetime | None = None
    last_notified_severity: Severity | None = None
    last_notified_state: State | None = None
    worst_severity: Severity | None = None  # the worst of the current firing episode (routes its resolution)
    silenced_since: datetime | None = None  # a message was due but a silence held it back
    id: int | None = None  # the database row, once written
    acknowledged_at: datetime | None = None  # someone said "seen" (from the page): repeats stop while it holds
    acknowledged_by: str | None = None
    acknowledged_severity: Severity | None = None  # the severity acknowledged: another one voids it

    @property
    def acknowledged(self) -> bool:
        """An acknowledgement holds while the alert fires at the severity acknowledged, in the same episode: a
        change of severity or a resolution ends it."""
        return (
            self.acknowledged_at is not None
            and self.state is State.FIRING
            and self.severity == self.acknowledged_severity
            and (self.firing_since is None or self.acknowledged_at >= self.firing_since)
        )


@dataclass(frozen=True, slots=True)
class Transition:
    key: str
    at: datetime
    from_state: State
    to_state: State
    severity: Severity | None
    value: Decimal | None
    reason: str


def alert_order(alert: Alert) -> tuple[int, int, str]:
    """The one order alerts are listed in (page, API, `once`, the firing list): firing, pending, liquidated,
    resolved; within each, critical before warning before none; then by key."""
    return _ORDER[alert.state], -(alert.severity.rank if alert.severity is not None else 0), alert.key


class Reason(StrEnum):
    FIRING = "firing"
    ESCALATED = "escalated"
    EASED = "eased"
    REPEAT = "repeat"
    RESOLVED = "resolved"
    LIQUIDATED = "liquidated"


@dataclass(frozen=True, slots=True)
class Item:
    """One alert in one message, and why it is there."""

    alert: Alert
    reason: Reason
    rule_type: str
    transition: Transition | None = None  # the change this item announces, when it announces one

    @property
    def rank(self) -> tuple[int, str]:
        """Liquidations first, then critical, then warnings, then resolved ones."""
        if self.reason is Reason.RESOLVED:
            return 0, self.alert.key
        if self.reason is Reason.LIQUIDATED:
            return -3, self.alert.key
        return -(2 if self.alert.severity == "critical" else 1), self.alert.key


@dataclass(frozen=True, slots=True)
class Rendered:
    title: str
    body: str
    body_long: str


@dataclass(frozen=True, slots=True)
class Outgoing:
    """One message to one channel, as it goes into the outbox."""

    channel: str
    account: str | None
    severity: str | None  # the worst in the message, or "resolved"
    message: Rendered
    items: tuple[Item, ...]
    held_until: datetime | None = None  # quiet hours: delivered (if still relevant) in a summary then


@dataclass(frozen=True, slots=True)
class Silence:
    id: int
    account: str  # glob on account names ("portfolio" names portfolio alerts)
    rule: str | None
    symbol: str | None
    starts_at: datetime
    ends_at: datetime
    reason: str
    created_at: datetime
    removed_at: datetime | None = None

    def active(self, now: datetime) -> bool:
        return self.removed_at is None and self.starts_at <= now < self.ends_at

    def matches(self, alert: Alert) -> bool:
        if not fnmatch.fnmatchcase(alert.account or "portfolio", self.account):
            return False
        if self.rule is not None and not fnmatch.fnmatchcase(alert.rule, self.rule):
            return False
        return self.symbol is None or alert.details.get("symbol", "").upper() == self.symbol.upper()


RESOLVED_KEPT = timedelta(days=1)  # resolved alerts loaded on start (recent ones, for the page)


class BatchRejected(DataRefused):
    """The database refused a batch's data (a value too long, a constraint): retrying cannot help."""


@dataclass(eq=False)
class Queued:
    """A message on its way into the outbox table, with its delivery state. While the database refuses
    writes the sender delivers it from memory, and that state (sent, which URLs got it, attempts) is written
    with it when the database is back, so nothing is sent twice."""

    outgoing: Outgoing
    created_at: datetime
    attempts: int = 0
    delivered: tuple[str, ...] = ()
    next_attempt_at: datetime | None = None  # None: at once (or when quiet hours end)
    last_error: str | None = None
    sent_at: datetime | None = None
    claim: tuple[str, datetime] | None = None  # written as claimed by this node until then (see MemoryOutbox)
    id: int | None = None  # its row, once written

    @property
    def channel(self) -> str:
        return self.outgoing.channel

    @property
    def account(self) -> str | None:
        return self.outgoing.account

    @property
    def severity(self) -> str | None:
        return self.outgoing.severity

    @property
    def title(self) -> str:
        return self.outgoing.message.title

    @property
    def body(self) -> str:
        return self.outgoing.message.body

    @property
    def body_long(self) -> str:
        return self.outgoing.message.body_long

    @property
    def status(self) -> str:
        return "sent" if self.sent_at else "held" if self.outgoing.held_until else "queued"

    @property
    def due_at(self) -> datetime:
        return self.next_attempt_at or self.outgoing.held_until or self.created_at

    def state(self) -> dict[str, Any]:
        """Its delivery state as outbox columns."""
        claimed_by, claimed_until = self.claim or (None, None)
        return {"status": self.status, "delivered": list(self.delivered), "attempts": self.attempts,
                "next_attempt_at": self.due_at, "last_error": self.last_error, "sent_at": self.sent_at,
                "claimed_by": claimed_by, "claimed_until": claimed_until}  # fmt: skip


@dataclass
class AlertBatch:
    """What one or more evaluations changed, written together."""

    at: datetime  # when (the last of) its evaluations ran
    alerts: dict[str, Alert] = field(default_factory=dict)  # by key; the newest version of each
    transitions: list[Transition] = field(default_factory=list)
    messages: list[Queued] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(self.alerts or self.transitions or self.messages)

    def by_account(self) -> list[AlertBatch]:
        """The batch split per account (portfolio alerts together), to find the part the database refuses."""
        parts: dict[str | None, AlertBatch] = {}
        for key, alert in self.alerts.items():
            parts.setdefault(alert.account, AlertBatch(self.at)).alerts[key] = alert
        for transition in self.transitions:
            parts[self.alerts[transition.key].account].transitions.append(transition)
        for message in self.messages:
            parts.setdefault(message.account, AlertBatch(self.at)).messages.append(message)
        return list(parts.values())

    def extend(self, other: AlertBatch) -> None:
        self.at = max(self.at, other.at)
        self.alerts.update(other.alerts)
        self.transitions += other.transitions
        self.messages += other.messages


@dataclass(frozen=True, slots=True)
class OutboxMessage:
    id: int
    channel: str
    account: str | None
    severity: str | None
    title: str
    body: str
    body_long: str
    status: str
    attempts: int
    delivered: tuple[str, ...]
    created_at: datetime
    next_attempt_at: datetime
    last_error: str | None
    sent_at: datetime | None
    held_until: datetime | None


@dataclass(frozen=True, slots=True)
class HeldItem:
    notification_id: int
    channel: str
    announced: State  # what the held message said of the alert
    alert: Alert  # as it is now
