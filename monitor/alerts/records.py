"""Alerts, transitions and messages as plain JSON data and back: the records of the spool (spool.py). Times
are ISO 8601 with their offset, Decimals strings, enums their values."""

from __future__ import annotations

from dataclasses import fields
from datetime import datetime
from decimal import Decimal
from typing import Any

from monitor.alerts.model import Alert, Item, Outgoing, Queued, Reason, Rendered, State, Transition
from monitor.rules.model import Severity


def _time(value: datetime | None) -> str | None:
    return None if value is None else value.isoformat()


def _parse_time(value: str | None) -> datetime | None:
    return None if value is None else datetime.fromisoformat(value)


def alert_data(alert: Alert) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for f in fields(Alert):
        value = getattr(alert, f.name)
        if isinstance(value, datetime):
            value = value.isoformat()
        elif isinstance(value, Decimal):
            value = str(value)
        out[f.name] = value
    return out


def alert_from(data: dict[str, Any]) -> Alert:
    d = dict(data)
    for name in ("updated_at", "pending_since", "firing_since", "resolved_at", "last_notified_at", "silenced_since"):
        d[name] = _parse_time(d.get(name))
    for name in ("severity", "last_notified_severity", "worst_severity"):
        d[name] = None if d.get(name) is None else Severity(d[name])
    d["state"] = State(d["state"])
    d["last_notified_state"] = None if d.get("last_notified_state") is None else State(d["last_notified_state"])
    d["value"] = None if d.get("value") is None else Decimal(d["value"])
    return Alert(**d)


def transition_data(tr: Transition) -> dict[str, Any]:
    value = None if tr.value is None else str(tr.value)
    return {"key": tr.key, "at": tr.at.isoformat(), "from": tr.from_state.value, "to": tr.to_state.value,
            "severity": tr.severity, "value": value, "reason": tr.reason}  # fmt: skip


def transition_from(d: dict[str, Any]) -> Transition:
    at = _parse_time(d["at"])
    assert at is not None
    return Transition(d["key"], at, State(d["from"]), State(d["to"]),
                      None if d["severity"] is None else Severity(d["severity"]),
                      None if d["value"] is None else Decimal(d["value"]), d["reason"])  # fmt: skip


def state_data(m: Queued) -> dict[str, Any]:
    return {"attempts": m.attempts, "delivered": list(m.delivered), "next": _time(m.next_attempt_at),
            "error": m.last_error, "sent": _time(m.sent_at)}  # fmt: skip


def message_data(m: Queued) -> dict[str, Any]:
    o = m.outgoing
    items = [{"alert": alert_data(i.alert), "reason": i.reason.value, "rule_type": i.rule_type,
              "transition": i.transition and transition_data(i.transition)} for i in o.items]  # fmt: skip
    return {"channel": o.channel, "account": o.account, "severity": o.severity, "title": o.message.title,
            "body": o.message.body, "body_long": o.message.body_long, "items": items,
            "held_until": _time(o.held_until), "created_at": _time(m.created_at), "state": state_data(m)}  # fmt: skip


def message_from(d: dict[str, Any]) -> Queued:
    items = tuple(
        Item(
            alert_from(i["alert"]),
            Reason(i["reason"]),
            i["rule_type"],
            None if i["transition"] is None else transition_from(i["transition"]),
        )
        for i in d["items"]
    )
    outgoing = Outgoing(d["channel"], d["account"], d["severity"], Rendered(d["title"], d["body"], d["body_long"]),
                        items, _parse_time(d["held_until"]))  # fmt: skip
    created = _parse_time(d["created_at"])
    assert created is not None
    m = Queued(outgoing, created)
    apply_state(m, d["state"])
    return m


def apply_state(m: Queued, s: dict[str, Any]) -> None:
    m.attempts = int(s["attempts"])
    m.delivered = tuple(s["delivered"])
    m.next_attempt_at = _parse_time(s["next"])
    m.last_error = s["error"]
    m.sent_at = _parse_time(s["sent"])
