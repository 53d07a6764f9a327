"""Silences: an operator quiets matching alerts for a while. They are still tracked and shown."""

from __future__ import annotations

from datetime import datetime

from monitor.alerts.model import (
    Alert,
    Silence,
)


def silenced(alert: Alert, silences: list[Silence], now: datetime) -> bool:
    return any(s.active(now) and s.matches(alert) for s in silences)
