"""What the page says of an account's risk: the levels of its own rules (what colours its numbers) and the odds
of liquidation of its positions (monitor.risk.odds, the figure the liquidation_probability rule judges)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal

from monitor.domain import AccountSnapshot, Position
from monitor.risk.odds import MarkHistory, position_odds
from monitor.rules.model import Rule, RuleType


@dataclass(frozen=True, slots=True)
class Levels:
    """The levels of the rules that watch one account, the most cautious of each (what colours its numbers)."""

    distance_warning: Decimal | None = None  # liquidation distance, percent: at or below it is a warning
    distance_critical: Decimal | None = None
    ratio_warning: Decimal | None = None  # margin ratio: at or above it is a warning (1 is liquidation)
    ratio_critical: Decimal | None = None
    # liquidation_probability rules: (horizon in seconds, warning, critical) in percent, the lowest per horizon
    odds: tuple[tuple[float, Decimal | None, Decimal | None], ...] = ()

    def distance_tone(self, value: Decimal | None) -> str:
        """danger, warn or "" for a liquidation distance (at or past liquidation is always danger)."""
        if value is None:
            return ""
        if value <= 0 or (self.distance_critical is not None and value <= self.distance_critical):
            return "danger"
        return "warn" if self.distance_warning is not None and value <= self.distance_warning else ""

    def ratio_tone(self, value: Decimal | None) -> str:
        if value is None:
            return ""
        if value >= 1 or (self.ratio_critical is not None and value >= self.ratio_critical):
            return "danger"
        return "warn" if self.ratio_warning is not None and value >= self.ratio_warning else ""

    def odds_tone(self, horizon: timedelta, probability: float | None) -> str:
        """danger, warn or "" for a chance of liquidation, from the rules judging that horizon (none: "")."""
        if probability is None:
            return ""
        percent = Decimal(f"{probability * 100:.4f}")  # as the rule judges it
        for seconds, warning, critical in self.odds:
            if seconds == horizon.total_seconds():
                if critical is not None and percent >= critical:
                    return "danger"
                return "warn" if warning is not None and percent >= warning else ""
        return ""


def levels_for(rules: tuple[Rule, ...] | list[Rule], name: str, tags: tuple[str, ...]) -> Levels:
    """The account's own levels: of the rules that select it, the widest warning and critical level."""

    def pick(kind: RuleType, attribute: str, highest: bool) -> Decimal | None:
        found = [getattr(r, attribute) for r in rules if r.type is kind and r.selects(name, tags)]
        numbers = [v for v in found if isinstance(v, Decimal)]
        if not numbers:
            return None
        return max(numbers) if highest else min(numbers)

    odds: dict[float, tuple[Decimal | None, Decimal | None]] = {}
    for r in rules:
        if r.type is RuleType.LIQUIDATION_PROBABILITY and r.selects(name, tags):
            warning, critical = odds.get(r.horizon.total_seconds(), (None, None))
            odds[r.horizon.total_seconds()] = (_lowest(warning, r.warning), _lowest(critical, r.critical))
    distance, ratio = RuleType.LIQUIDATION_DISTANCE, RuleType.MARGIN_RATIO
    return Levels(pick(distance, "warning", True), pick(distance, "critical", True),
                  pick(ratio, "warning", False), pick(ratio, "critical", False),
                  tuple((seconds, w, c) for seconds, (w, c) in sorted(odds.items())))  # fmt: skip


def _lowest(a: Decimal | None, b: object) -> Decimal | None:
    numbers = [v for v in (a, b) if isinstance(v, Decimal)]
    return min(numbers) if numbers else None


HOUR, DAY = timedelta(hours=1), timedelta(hours=24)
NOT_ENOUGH_HISTORY = "not enough mark history"


@dataclass(frozen=True, slots=True)
class Odds:
    """The chance (0 to 1) that a position is liquidated within one hour and within a day, or why it is not known.
    The same figure the liquidation_probability rule judges (monitor.risk.odds), from the same mark history."""

    within_1h: float | None
    within_24h: float | None
    unknown: str | None = None  # NOT_ENOUGH_HISTORY, "no liquidation price", ...


def odds_of(p: Position, history: MarkHistory, now: datetime) -> Odds:
    """`p`'s odds of liquidation from its symbol's marks in `history` (the service's, which the rules read)."""
    if p.liquidation_price is None:
        return Odds(None, None, "no liquidation price")
    try:
        found = position_odds(p, history, now, (HOUR, DAY))
    except (ArithmeticError, ValueError):  # absurd figures from Bitget: nothing to say
        return Odds(None, None, "the position's figures are unusable")
    hour, day = found[HOUR], found[DAY]
    if hour is None or day is None:
        return Odds(None, None, NOT_ENOUGH_HISTORY)
    if not (math.isfinite(hour) and math.isfinite(day)):
        return Odds(None, None, "the position's figures are unusable")
    return Odds(hour, day)


def likeliest_odds(snapshot: AccountSnapshot | None, history: MarkHistory, now: datetime) -> Odds | None:
    """The account's odds of liquidation: those of its position likeliest to be liquidated within a day (not
    necessarily the nearest: a volatile symbol further away can be likelier). None without a position with a
    liquidation price; the reason the odds are unknown when no position's are known."""
    found = (
        [odds_of(p, history, now) for p in snapshot.positions if p.liquidation_price is not None] if snapshot else []
    )
    known = [o for o in found if o.unknown is None]
    if known:
        return max(known, key=lambda o: (o.within_24h or 0.0, o.within_1h or 0.0))
    return found[0] if found else None
