"""The alert path's rows: alerts and outbox messages to and from their tables (shared by the alert state and the
outbox)."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import Connection, Table, insert

from monitor.alerts.model import Alert, OutboxMessage, Outgoing, State
from monitor.rules.model import Severity
from monitor.store import tables as t

ACCOUNT: Table = t.Account.__table__  # type: ignore[attr-defined]
ALERT: Table = t.Alert.__table__  # type: ignore[attr-defined]
TRANSITION: Table = t.AlertTransition.__table__  # type: ignore[attr-defined]
NOTIFICATION: Table = t.Notification.__table__  # type: ignore[attr-defined]
ITEM: Table = t.NotificationItem.__table__  # type: ignore[attr-defined]
SILENCE: Table = t.Silence.__table__  # type: ignore[attr-defined]


def enqueue(
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
        {**notification_row(message, accounts.get(message.account or ""), now), **(state or {})},
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


def alert_row(a: Alert, accounts: dict[str, int]) -> dict[str, Any]:
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
        "acknowledged_at": a.acknowledged_at,
        "acknowledged_by": a.acknowledged_by[:200] if a.acknowledged_by else None,
        "acknowledged_severity": a.acknowledged_severity,
        "updated_at": a.updated_at,
    }


def alert_from_row(row: Any) -> Alert:
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
        acknowledged_at=row.acknowledged_at,
        acknowledged_by=row.acknowledged_by,
        acknowledged_severity=Severity(row.acknowledged_severity) if row.acknowledged_severity else None,
    )


def notification_row(message: Outgoing, account_id: int | None, now: datetime) -> dict[str, Any]:
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


def outbox_from_row(row: Any) -> OutboxMessage:
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
