"""Silences: an operator quiets matching alerts for a while. They are still tracked and shown."""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass
from datetime import datetime

from monitor.alerts.lifecycle import Alert


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


def silenced(alert: Alert, silences: list[Silence], now: datetime) -> bool:
    return any(s.active(now) and s.matches(alert) for s in silences)
