"""Alert state, transitions, the notification outbox and silences in the database.

Like the rest of the store these methods are synchronous, for a worker thread. An evaluation's changes are
written in one transaction: alerts, their transitions and the messages about them, so that a crash loses
none of them without the others.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from sqlalchemy import Connection, Table, and_, bindparam, func, insert, or_, select, update
from sqlalchemy.exc import SQLAlchemyError

from monitor.alerts.compose import Outgoing
from monitor.alerts.lifecycle import Alert, State, Transition
from monitor.alerts.silences import Silence
from monitor.errors import DataRefused, reason
from monitor.rules.model import Severity
from monitor.store import tables as t
from monitor.store.errors import guarded, is_data_error, translate

if TYPE_CHECKING:
    from monitor.store.repository import Store

ACCOUNT: Table = t.Account.__table__  # type: ignore[attr-defined]
ALERT: Table = t.Alert.__table__  # type: ignore[attr-defined]
TRANSITION: Table = t.AlertTransition.__table__  # type: ignore[attr-defined]
NOTIFICATION: Table = t.Notification.__table__  # type: ignore[attr-defined]
ITEM: Table = t.NotificationItem.__table__  # type: ignore[attr-defined]
SILENCE: Table = t.Silence.__table__  # type: ignore[attr-defined]
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


@guarded
class AlertStore:
    def __init__(self, store: Store) -> None:
        self.store = store
        self.engine = store.engine

    # -- alerts ------------------------------------------------------------------------------------------

    def load(self, now: datetime, accounts: set[str] | None = None) -> list[Alert]:
        """Pending and firing alerts, and those resolved lately: the state evaluation continues from (of every
        account, or of these)."""
        query = (
            select(ALERT, ACCOUNT.c.name.label("account_name"))
            .outerjoin(ACCOUNT, ACCOUNT.c.id == ALERT.c.account_id)
            .where(
                or_(
                    ALERT.c.state.in_([State.PENDING, State.FIRING]),
                    and_(ALERT.c.state != State.INACTIVE, ALERT.c.resolved_at >= now - RESOLVED_KEPT),
                )
            )
        )
        if accounts is not None:
            query = query.where(ACCOUNT.c.name.in_(sorted(accounts)))
        with self.engine.connect() as connection:
            return [_alert(row) for row in connection.execute(query)]

    def last_success(self) -> dict[str, datetime]:
        """When each account last gave good data (also before this process started)."""
        query = select(ACCOUNT.c.name, ACCOUNT.c.last_success_at).where(ACCOUNT.c.last_success_at.is_not(None))
        with self.engine.connect() as connection:
            return dict(connection.execute(query).all())

    def save(self, batch: AlertBatch) -> None:
        """Write a batch in one transaction, each message with its delivery state; sets each message's `id`.
        Raises BatchRejected when the database refuses the data itself (retrying would fail forever); other
        errors mean the database is away. The caller hands in messages nobody changes meanwhile."""
        if not batch:
            return
        try:
            with self.engine.begin() as connection:
                names = {a.account for a in batch.alerts.values() if a.account}
                names |= {m.account for m in batch.messages if m.account}
                accounts = self.store._ensure_ids(connection, names, batch.at)
                ids = self._upsert(connection, list(batch.alerts.values()), accounts)
                transition_ids: dict[int, int] = {}  # id() of a Transition -> its row
                for tr in batch.transitions:
                    transition_ids[id(tr)] = connection.execute(
                        insert(TRANSITION).returning(TRANSITION.c.id),
                        {"alert_id": ids[tr.key], "at": tr.at, "from_state": tr.from_state, "to_state": tr.to_state,
                         "severity": tr.severity, "value": tr.value, "reason": tr.reason[:400]},
                    ).scalar_one()  # fmt: skip
                written = [
                    (message, self._enqueue(connection, message.outgoing, accounts, ids, transition_ids,
                                            message.created_at, message.state()))
                    for message in batch.messages
                ]  # fmt: skip
        except SQLAlchemyError as exc:
            error = translate(exc)
            if is_data_error(exc):
                raise BatchRejected(reason(error)) from exc
            raise error from exc
        for message, id_ in written:  # only once committed
            message.id = id_

    def _upsert(self, connection: Connection, alerts: list[Alert], accounts: dict[str, int]) -> dict[str, int]:
        keys = [a.key for a in alerts]
        ids = dict(connection.execute(select(ALERT.c.key, ALERT.c.id).where(ALERT.c.key.in_(keys))).all())
        rows = [_alert_row(a, accounts) for a in alerts]
        old = [{**r, "_key": r["key"]} for r in rows if r["key"] in ids]
        new = [r for r in rows if r["key"] not in ids]
        if new:
            connection.execute(insert(ALERT), new)
            added = select(ALERT.c.key, ALERT.c.id).where(ALERT.c.key.in_([r["key"] for r in new]))
            ids.update(connection.execute(added).all())
        if old:
            values: dict[str, Any] = {k: bindparam(k) for k in old[0] if k not in ("_key", "key")}
            connection.execute(update(ALERT).where(ALERT.c.key == bindparam("_key")).values(values), old)
        return ids

    def _enqueue(
        self,
        connection: Connection,
        message: Outgoing,
        accounts: dict[str, int],
        ids: dict[str, int],
        transition_ids: dict[int, int],
        now: datetime,
        state: dict[str, Any] | None = None,
    ) -> int:
        notification_id = connection.execute(
            insert(NOTIFICATION).returning(NOTIFICATION.c.id),
            {**_notification_row(message, accounts.get(message.account or ""), now), **(state or {})},
        ).scalar_one()
        connection.execute(
            insert(ITEM),
            [
                {
                    "notification_id": notification_id,
                    "alert_id": ids[i.alert.key],
                    "transition_id": transition_ids.get(id(i.transition)) if i.transition else None,
                    "reason": i.reason,
                    "state": i.alert.state,
                    "severity": i.alert.severity,
                }
                for i in message.items
            ],
        )
        return int(notification_id)

    # -- outbox ------------------------------------------------------------------------------------------

    def claim(
        self, node: str, now: datetime, hold: timedelta, *, busy: Collection[str] = (), skip: Collection[int] = (),
        limit: int = 50,
    ) -> tuple[list[OutboxMessage], set[str]]:  # fmt: skip
        """The oldest due message of each channel not `busy` (at most one per channel: a crash repeats at most
        one message per channel), claimed for `hold` by this node with a conditional update, so two senders
        never deliver one row at once. A message waiting to be retried holds back the later messages of its
        channel about the same account (they arrive in order), not the other accounts'. Rows in `skip` are
        left alone (their delivery state is in memory, being written). Returns the claimed messages and every
        channel that had one due (claimed or not)."""
        free = or_(NOTIFICATION.c.claimed_until.is_(None), NOTIFICATION.c.claimed_until < now)
        due = and_(NOTIFICATION.c.status == "queued", NOTIFICATION.c.next_attempt_at <= now, free)
        heads = (
            select(func.min(NOTIFICATION.c.id).label("id"))
            .where(NOTIFICATION.c.status == "queued")
            .group_by(NOTIFICATION.c.channel, NOTIFICATION.c.account_id)
            .subquery()
        )
        claimed: list[int] = []
        channels: set[str] = set()
        taken = set(busy)
        with self.engine.begin() as connection:
            candidates = connection.execute(
                select(NOTIFICATION.c.id, NOTIFICATION.c.channel)
                .where(NOTIFICATION.c.id.in_(select(heads.c.id)), due)
                .order_by(NOTIFICATION.c.id)
            ).all()  # fmt: skip
            for id_, channel in candidates:
                if id_ in skip:
                    continue
                channels.add(channel)
                if channel in taken or len(claimed) >= limit:
                    continue
                result = connection.execute(
                    update(NOTIFICATION).where(NOTIFICATION.c.id == id_, due)
                    .values(claimed_by=node, claimed_until=now + hold)
                )  # fmt: skip
                if result.rowcount == 1:
                    claimed.append(id_)
                    taken.add(channel)
        return (self.outbox(ids=claimed) if claimed else []), channels

    def claimants(self, now: datetime) -> set[str]:
        """The nodes holding claims on queued messages now."""
        query = (
            select(NOTIFICATION.c.claimed_by)
            .distinct()
            .where(NOTIFICATION.c.status == "queued", NOTIFICATION.c.claimed_until >= now)
        )
        with self.engine.connect() as connection:
            return {str(c) for c in connection.execute(query).scalars() if c is not None}

    def release_claims(self, nodes: Collection[str]) -> int:
        """Give up the claims of these (dead) nodes: their messages are due again at once."""
        with self.engine.begin() as connection:
            result = connection.execute(
                update(NOTIFICATION)
                .where(NOTIFICATION.c.claimed_by.in_(sorted(nodes)), NOTIFICATION.c.status == "queued")
                .values(claimed_by=None, claimed_until=None)
            )
        return int(result.rowcount)

    def record(self, states: Sequence[tuple[int, dict[str, Any]]]) -> None:
        """Write the delivery state of messages delivered from memory (and drop this node's claim on them)."""
        with self.engine.begin() as connection:
            for id_, state in states:
                values = {**state, "claimed_by": None, "claimed_until": None}
                connection.execute(update(NOTIFICATION).where(NOTIFICATION.c.id == id_).values(values))

    def delivered(self, id_: int, now: datetime, fingerprints: Sequence[str]) -> None:
        with self.engine.begin() as connection:
            connection.execute(
                update(NOTIFICATION)
                .where(NOTIFICATION.c.id == id_)
                .values(
                    status="sent",
                    sent_at=now,
                    delivered=list(fingerprints),
                    claimed_by=None,
                    claimed_until=None,
                    attempts=NOTIFICATION.c.attempts + 1,
                    last_error=None,
                )
            )

    def failed(self, id_: int, error: str, retry_at: datetime, fingerprints: Sequence[str]) -> None:
        """A delivery failed for some URLs: remember which got it, and try the others again at `retry_at`."""
        with self.engine.begin() as connection:
            connection.execute(
                update(NOTIFICATION)
                .where(NOTIFICATION.c.id == id_)
                .values(
                    delivered=list(fingerprints),
                    last_error=error[:2000],
                    next_attempt_at=retry_at,
                    attempts=NOTIFICATION.c.attempts + 1,
                    claimed_by=None,
                    claimed_until=None,
                )
            )

    def outbox(
        self, *, ids: Sequence[int] | None = None, account: str | None = None, limit: int = 100, failing: bool = False
    ) -> list[OutboxMessage]:
        """Messages, newest first (or exactly `ids`); `failing`: only queued ones whose last attempt failed."""
        query = select(NOTIFICATION, ACCOUNT.c.name.label("account_name")).outerjoin(
            ACCOUNT, ACCOUNT.c.id == NOTIFICATION.c.account_id
        )
        if ids is not None:
            query = query.where(NOTIFICATION.c.id.in_(list(ids))).order_by(NOTIFICATION.c.id)
        else:
            query = query.order_by(NOTIFICATION.c.id.desc()).limit(limit)
            if account is not None:
                query = query.where(ACCOUNT.c.name == account)
            if failing:
                query = query.where(NOTIFICATION.c.status == "queued", NOTIFICATION.c.last_error.is_not(None))
        with self.engine.connect() as connection:
            return [_outbox(row) for row in connection.execute(query)]

    def outbox_counts(self) -> dict[str, int]:
        """Messages by status, and `failing`: queued ones whose last attempt failed."""
        with self.engine.connect() as connection:
            counts = dict(
                connection.execute(select(NOTIFICATION.c.status, func.count()).group_by(NOTIFICATION.c.status)).all()
            )
            counts["failing"] = connection.execute(
                select(func.count()).where(NOTIFICATION.c.status == "queued", NOTIFICATION.c.last_error.is_not(None))
            ).scalar_one()
        return {str(k): int(v) for k, v in counts.items()}

    # -- quiet hours -------------------------------------------------------------------------------------

    def held_due(self, now: datetime) -> list[HeldItem]:
        """Items of held messages whose quiet window has ended, with their alerts as they are now."""
        query = (
            select(
                ITEM.c.notification_id,
                ITEM.c.state.label("announced"),
                NOTIFICATION.c.channel,
                ALERT,
                ACCOUNT.c.name.label("account_name"),
            )
            .join(NOTIFICATION, NOTIFICATION.c.id == ITEM.c.notification_id)
            .join(ALERT, ALERT.c.id == ITEM.c.alert_id)
            .outerjoin(ACCOUNT, ACCOUNT.c.id == ALERT.c.account_id)
            .where(NOTIFICATION.c.status == "held", NOTIFICATION.c.held_until <= now)
        )
        with self.engine.connect() as connection:
            return [
                HeldItem(r.notification_id, r.channel, State(r.announced), _alert(r)) for r in connection.execute(query)
            ]

    def release_held(self, held: Sequence[int], summary: Outgoing | None, now: datetime) -> bool:
        """Replace held messages by one summary (or drop them when nothing is relevant any more). False when
        another process released them first."""
        with self.engine.begin() as connection:
            summary_id = None
            if summary is not None:
                ids = dict(
                    connection.execute(
                        select(ALERT.c.key, ALERT.c.id).where(ALERT.c.key.in_([i.alert.key for i in summary.items]))
                    ).all()
                )
                summary_id = self._enqueue(connection, summary, {}, ids, {}, now)
            result = connection.execute(
                update(NOTIFICATION)
                .where(NOTIFICATION.c.id.in_(list(held)), NOTIFICATION.c.status == "held")
                .values(status="merged" if summary_id else "dropped", merged_into=summary_id)
            )
            if result.rowcount != len(held):
                connection.rollback()
                return False
        return True

    # -- silences ----------------------------------------------------------------------------------------

    def add_silence(
        self, account: str, rule: str | None, symbol: str | None, starts: datetime, ends: datetime, reason: str
    ) -> int:
        with self.engine.begin() as connection:
            return int(
                connection.execute(
                    insert(SILENCE).returning(SILENCE.c.id),
                    {
                        "account": account,
                        "rule": rule,
                        "symbol": symbol,
                        "starts_at": starts,
                        "ends_at": ends,
                        "reason": reason[:1000],
                        "created_at": starts,
                    },
                ).scalar_one()
            )

    def silences(self, now: datetime, *, include_ended: bool = False) -> list[Silence]:
        query = select(SILENCE).order_by(SILENCE.c.id)
        if not include_ended:
            query = query.where(SILENCE.c.removed_at.is_(None), SILENCE.c.ends_at > now)
        with self.engine.connect() as connection:
            return [Silence(**row._mapping) for row in connection.execute(query)]

    def remove_silence(self, id_: int, now: datetime) -> bool:
        with self.engine.begin() as connection:
            result = connection.execute(
                update(SILENCE).where(SILENCE.c.id == id_, SILENCE.c.removed_at.is_(None)).values(removed_at=now)
            )
        return bool(result.rowcount)


def _alert_row(a: Alert, accounts: dict[str, int]) -> dict[str, Any]:
    return {
        "key": a.key,
        "rule": a.rule,
        "account_id": accounts.get(a.account) if a.account else None,
        "subject": a.subject[:200],
        "state": a.state,
        "severity": a.severity,
        "value": a.value,
        "message": a.summary[:2000],
        "details": a.details,
        "pending_since": a.pending_since,
        "firing_since": a.firing_since,
        "resolved_at": a.resolved_at,
        "last_notified_at": a.last_notified_at,
        "last_notified_severity": a.last_notified_severity,
        "last_notified_state": a.last_notified_state,
        "worst_severity": a.worst_severity,
        "silenced_since": a.silenced_since,
        "updated_at": a.updated_at,
    }


def _alert(row: Any) -> Alert:
    return Alert(
        key=row.key,
        rule=row.rule,
        account=row.account_name,
        subject=row.subject,
        state=State(row.state),
        updated_at=row.updated_at,
        severity=Severity(row.severity) if row.severity else None,
        value=Decimal(row.value) if row.value is not None else None,
        summary=row.message,
        details=dict(row.details or {}),
        pending_since=row.pending_since,
        firing_since=row.firing_since,
        resolved_at=row.resolved_at,
        last_notified_at=row.last_notified_at,
        last_notified_severity=Severity(row.last_notified_severity) if row.last_notified_severity else None,
        last_notified_state=State(row.last_notified_state) if row.last_notified_state else None,
        worst_severity=Severity(row.worst_severity) if row.worst_severity else None,
        silenced_since=row.silenced_since,
        id=row.id,
    )


def _notification_row(message: Outgoing, account_id: int | None, now: datetime) -> dict[str, Any]:
    return {
        "channel": message.channel,
        "account_id": account_id,
        "severity": message.severity,
        "title": message.message.title[:400],
        "body": message.message.body,
        "body_long": message.message.body_long,
        "status": "held" if message.held_until else "queued",
        "held_until": message.held_until,
        "delivered": [],
        "created_at": now,
        "next_attempt_at": message.held_until or now,
    }


def _outbox(row: Any) -> OutboxMessage:
    return OutboxMessage(
        id=row.id,
        channel=row.channel,
        account=row.account_name,
        severity=row.severity,
        title=row.title,
        body=row.body,
        body_long=row.body_long,
        status=row.status,
        attempts=row.attempts,
        delivered=tuple(row.delivered or ()),
        created_at=row.created_at,
        next_attempt_at=row.next_attempt_at,
        last_error=row.last_error,
        sent_at=row.sent_at,
        held_until=row.held_until,
    )
