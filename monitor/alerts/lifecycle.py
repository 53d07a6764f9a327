"""The alert lifecycle, as pure functions of (alert, observation, rule, now).

inactive -> pending (the condition holds, waiting `for`) -> firing -> resolved. A firing alert that changes
severity stays firing (a transition is recorded and people are told at once). A position that was liquidated
ends in a state of its own, `liquidated`, from whatever state its alert was in (monitor.alerts.departures judges
it): critical, and announced even if it never fired. Whether to notify is a separate decision, `notify_reason`,
made from the alert's state and what was last sent about it.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime
from decimal import Decimal

from monitor.alerts.model import (
    ENDED,
    Alert,
    Reason,
    State,
    Transition,
)
from monitor.rules.model import Rule, Severity
from monitor.rules.view import Observation


def step(alert: Alert | None, obs: Observation, now: datetime) -> tuple[Alert | None, Transition | None]:
    """Apply one observation of the alert's subject."""
    rule, severity = obs.rule, obs.severity
    current = (
        replace(
            alert,
            value=obs.value,
            summary=obs.summary or alert.summary,
            details=obs.details or alert.details,
            updated_at=now,
        )  # a quiet observation has no words: the alert keeps its last
        if alert is not None
        else None
    )
    if current is None or current.state in (State.INACTIVE, *ENDED):
        if severity is None:
            return alert, None
        firing = rule.for_.total_seconds() <= 0
        new = Alert(
            key=obs.key,
            rule=rule.name,
            account=obs.account,
            subject=obs.subject,
            updated_at=now,
            state=State.FIRING if firing else State.PENDING,
            severity=severity,
            value=obs.value,
            summary=obs.summary,
            details=obs.details,
            pending_since=now,
            firing_since=now if firing else None,
            id=alert.id if alert is not None else None,
        )
        from_state = alert.state if alert is not None else State.INACTIVE
        return new, _transition(new, from_state, now, "condition met")
    if current.state is State.PENDING:
        if severity is None:
            new = replace(current, state=State.INACTIVE, severity=None)
            return new, _transition(new, State.PENDING, now, "condition cleared before it fired")
        assert current.pending_since is not None
        if now - current.pending_since >= rule.for_:
            new = replace(current, state=State.FIRING, severity=severity, firing_since=now, worst_severity=severity)
            return new, _transition(new, State.PENDING, now, f"condition held for {rule.for_}")
        return replace(current, severity=severity), None
    # firing
    if severity is None:
        new = replace(current, state=State.RESOLVED, resolved_at=now)
        return new, _transition(new, State.FIRING, now, "condition cleared")
    if severity != current.severity:
        worse = current.severity is None or severity.rank > current.severity.rank
        worst = (
            current.worst_severity
            if current.worst_severity and current.worst_severity.rank >= severity.rank
            else severity
        )
        new = replace(current, severity=severity, worst_severity=worst)
        return new, _transition(new, State.FIRING, now, f"{'escalated' if worse else 'eased'} to {severity}")
    return current, None


def vanish(alert: Alert, now: datetime, reason: str) -> tuple[Alert, Transition | None]:
    """The alert's subject is gone from fresh data (a position closed, a rule removed): resolve it, or drop
    it if it was only pending. (A position that was liquidated goes to `liquidated` instead.)"""
    if alert.state is State.PENDING:
        new = replace(alert, state=State.INACTIVE, updated_at=now)
        return new, _transition(new, State.PENDING, now, reason)
    if alert.state is not State.FIRING:
        return alert, None
    new = replace(alert, state=State.RESOLVED, resolved_at=now, updated_at=now, summary=f"{alert.summary}: {reason}")
    return new, _transition(new, State.FIRING, now, reason)


def absorbed(alert: Alert, now: datetime, reason: str) -> tuple[Alert, Transition | None]:
    """Another rule's alert about a position that was liquidated: it ends (resolved, or dropped if pending) with
    `reason`, and counts as told, since the liquidation's one message line speaks for the position."""
    new, transition = vanish(alert, now, reason)
    if new.state is State.RESOLVED:
        new = replace(new, last_notified_state=State.RESOLVED)
    return new, transition


def liquidated(
    alert: Alert, now: datetime, *, summary: str, reason: str, value: Decimal, details: dict[str, str]
) -> tuple[Alert, Transition]:
    """The alert's position was liquidated: critical, and over. `alert` may be a new, inactive one (a position
    that disappeared without ever alerting)."""
    new = replace(
        alert, state=State.LIQUIDATED, severity=Severity.CRITICAL, worst_severity=Severity.CRITICAL, value=value,
        summary=summary, details=details, resolved_at=now, updated_at=now,
    )  # fmt: skip
    return new, _transition(new, alert.state, now, reason)


def _transition(alert: Alert, from_state: State, now: datetime, reason: str) -> Transition:
    return Transition(alert.key, now, from_state, alert.state, alert.severity, alert.value, reason)


def notify_reason(alert: Alert, rule: Rule, now: datetime) -> Reason | None:
    """Whether people must hear about this alert now, and why (None: nothing to say). Silenced alerts never
    get here (the engine notes `silenced_since` when a message was held back); once the silence ends, a
    still-firing alert that was held back is announced again."""
    if alert.state is State.FIRING and alert.severity is not None:
        if alert.last_notified_state is not State.FIRING or alert.silenced_since is not None:
            return Reason.FIRING
        if alert.last_notified_severity != alert.severity:
            last = alert.last_notified_severity
            return Reason.ESCALATED if last is None or alert.severity.rank > last.rank else Reason.EASED
        repeat = rule.repeat_after(alert.severity)
        if repeat is not None and alert.last_notified_at is not None and now - alert.last_notified_at >= repeat:
            return Reason.REPEAT
        return None
    if alert.state is State.LIQUIDATED and alert.last_notified_state is not State.LIQUIDATED:
        return Reason.LIQUIDATED  # whatever the alert was before, and whatever `send_resolved` says
    if alert.state is State.RESOLVED and alert.last_notified_state is State.FIRING:
        return Reason.RESOLVED if rule.send_resolved else None
    return None


def notified(alert: Alert, now: datetime) -> Alert:
    """The alert after a message about it was queued."""
    return replace(
        alert,
        last_notified_at=now,
        last_notified_severity=alert.severity,
        last_notified_state=alert.state,
        silenced_since=None,
    )
