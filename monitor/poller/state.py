"""What the poller knows about one account between polls."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from decimal import Decimal

from monitor.config.model import AccountConfig
from monitor.domain import AccountSnapshot, KeyInfo, PollOutcome
from monitor.exchange.bitget.client import BitgetClient
from monitor.rules.model import Rule, RuleType


class Status:
    OK = "ok"
    FAILING = "failing"  # transient errors: retried at the normal cadence
    UNREACHABLE = "unreachable"  # a permanent error: retried slowly until the configuration changes
    PENDING = "pending"  # not read yet


@dataclass(frozen=True)
class RiskLevels:
    """When an account counts as at risk and is re-read at risk_poll_interval: inside the widest warning
    level (plus its hysteresis) of any liquidation-distance or margin-ratio rule."""

    liquidation_pct: Decimal = Decimal(15)
    margin_ratio: Decimal = Decimal("0.6")

    @classmethod
    def from_rules(cls, rules: Iterable[Rule]) -> RiskLevels:
        distances, ratios = [], []
        for rule in rules:
            levels = [level for _, level in rule.levels()]
            if rule.type is RuleType.LIQUIDATION_DISTANCE and levels:
                distances.append(max(levels) + rule.clear)
            elif rule.type is RuleType.MARGIN_RATIO and levels:
                ratios.append(min(levels) - rule.clear)
        default = cls()
        return cls(max(distances, default=default.liquidation_pct), min(ratios, default=default.margin_ratio))

    def at_risk(self, snapshot: AccountSnapshot) -> bool:
        distance = snapshot.worst_liquidation_distance_pct
        if distance is not None and distance <= self.liquidation_pct:
            return True
        ratios = [f.cross_risk_ratio for f in snapshot.futures if f.cross_risk_ratio is not None]
        if snapshot.unified is not None and snapshot.unified.margin_ratio is not None:
            ratios.append(snapshot.unified.margin_ratio)
        return any(r >= self.margin_ratio for r in ratios)


@dataclass
class AccountState:
    config: AccountConfig
    client: BitgetClient
    status: str = Status.PENDING
    snapshot: AccountSnapshot | None = None  # the last good one
    key: KeyInfo | None = None
    last_good_at: datetime | None = None
    last_outcome: PollOutcome | None = None
    error_code: str | None = None
    error_message: str | None = None
    failures: int = 0  # consecutive
    at_risk: bool = False
    key_checked_at: datetime | None = None
    polls: int = 0
    full_read_at: float | None = None  # monotonic time of the last full (not risk-only) read
    history: list[float] = field(default_factory=list)  # recent gaps between poll starts, seconds

    @property
    def name(self) -> str:
        return self.config.name

    def stale(self, now: datetime, interval: timedelta, grace: timedelta) -> bool:
        return self.last_good_at is None or now - self.last_good_at > interval + grace

    def merge_partial(self, partial: AccountSnapshot) -> AccountSnapshot:
        """A risk poll reads futures only: keep the spot part of the last full snapshot, so equity and the
        stored series stay whole."""
        if self.snapshot is None or partial.unified is not None:
            return partial
        return replace(partial, spot=self.snapshot.spot, spot_usdt=self.snapshot.spot_usdt,
                       products=self.snapshot.products)  # fmt: skip
