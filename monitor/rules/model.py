"""Rules as the accounts file declares them: types, levels with a direction, hysteresis, routing.

`build_rule` turns one validated `[[rules]]` table into a Rule; it raises RuleError naming the key at fault.
"""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass, field
from datetime import timedelta
from decimal import Decimal, InvalidOperation
from enum import StrEnum
from typing import Any


class Severity(StrEnum):
    WARNING = "warning"
    CRITICAL = "critical"

    @property
    def rank(self) -> int:
        return 2 if self is Severity.CRITICAL else 1


class RuleType(StrEnum):
    LIQUIDATION_DISTANCE = "liquidation_distance"  # per position, percent from mark to liquidation
    MARGIN_RATIO = "margin_ratio"  # per account: classic cross risk ratio, unified margin ratio
    UNREALIZED_PNL = "unrealized_pnl"  # per position: margin coin amount, or percent of margin
    ACCOUNT_PNL = "account_pnl"  # per account: unrealized total in USDT, or percent of equity
    DRAWDOWN = "drawdown"  # equity below its peak within a window, percent
    UNREACHABLE = "unreachable"  # poll intervals without good data; a permanent error is at once critical
    KEY_PERMISSIONS = "key_permissions"  # findings about the API key
    LIQUIDATION_PROBABILITY = "liquidation_probability"  # per position, percent chance of liquidation in `horizon`


# Lower values are worse for these; for the others higher values are worse.
_LOWER_IS_WORSE = {RuleType.LIQUIDATION_DISTANCE, RuleType.UNREALIZED_PNL, RuleType.ACCOUNT_PNL}
POSITION_TYPES = {RuleType.LIQUIDATION_DISTANCE, RuleType.UNREALIZED_PNL, RuleType.LIQUIDATION_PROBABILITY}
PERCENT_TYPES = {RuleType.LIQUIDATION_DISTANCE, RuleType.DRAWDOWN, RuleType.LIQUIDATION_PROBABILITY}
# Rules that read the account's data: while it is unreachable or stale their alerts hold their state.
DATA_TYPES = {
    RuleType.LIQUIDATION_DISTANCE,
    RuleType.MARGIN_RATIO,
    RuleType.UNREALIZED_PNL,
    RuleType.ACCOUNT_PNL,
    RuleType.DRAWDOWN,
    RuleType.LIQUIDATION_PROBABILITY,
}
KEY_FINDINGS = ("trade", "withdraw", "no_ip_binding")
# Keys only some types accept.
TYPE_KEYS: dict[str, frozenset[RuleType]] = {
    "window": frozenset({RuleType.DRAWDOWN}),
    "scope": frozenset({RuleType.DRAWDOWN}),
    "horizon": frozenset({RuleType.LIQUIDATION_PROBABILITY}),
    "clear": frozenset(RuleType) - {RuleType.KEY_PERMISSIONS},
}


class RuleError(ValueError):
    def __init__(self, key: str, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.key = key
        self.hint = hint


@dataclass(frozen=True)
class Rule:
    name: str
    type: RuleType
    warning: Any = None  # Decimal, or a tuple of findings for key_permissions
    critical: Any = None
    clear: Decimal = Decimal(0)
    for_: timedelta = timedelta(0)
    repeat: dict[Severity, timedelta] = field(default_factory=dict)
    accounts: tuple[str, ...] = ("*",)
    tags: tuple[str, ...] = ()
    channels: tuple[str, ...] = ()  # empty: every channel
    send_resolved: bool = True
    percent: bool = False  # pnl rules: levels are percent of margin (position) or of equity (account)
    window: timedelta = timedelta(hours=24)  # drawdown
    portfolio: bool = False  # drawdown over the selected accounts' total equity
    horizon: timedelta = timedelta(hours=24)  # liquidation_probability: the odds of liquidation within this

    @property
    def lower_is_worse(self) -> bool:
        return self.type in _LOWER_IS_WORSE

    @property
    def per_position(self) -> bool:
        return self.type in POSITION_TYPES

    def selects(self, account: str, tags: tuple[str, ...]) -> bool:
        """Whether this rule watches an account: its name matches a glob of `accounts` and, when `tags` is
        set, it carries one of them."""
        if not any(fnmatch.fnmatchcase(account, pattern) for pattern in self.accounts):
            return False
        return not self.tags or any(t in self.tags for t in tags)

    def levels(self) -> list[tuple[Severity, Decimal]]:
        """(severity, threshold), worst first."""
        levels = ((Severity.CRITICAL, self.critical), (Severity.WARNING, self.warning))
        return [(s, v) for s, v in levels if v is not None]

    def breaches(self, value: Decimal, level: Decimal) -> bool:
        return value <= level if self.lower_is_worse else value >= level

    def cleared(self, value: Decimal, level: Decimal) -> bool:
        """Past the level by the hysteresis margin: only then does an alert at this level let go."""
        return value > level + self.clear if self.lower_is_worse else value < level - self.clear

    def severity(self, value: Decimal, current: Severity | None) -> Severity | None:
        """The severity a value deserves, given the alert's current one (hysteresis holds a level until the
        value has moved `clear` past it)."""
        for severity, level in self.levels():
            if self.breaches(value, level):
                return severity
            if current is not None and current.rank >= severity.rank and not self.cleared(value, level):
                return severity
        return None

    def repeat_after(self, severity: Severity) -> timedelta | None:
        return self.repeat.get(severity)


def _decimal(key: str, raw: Any) -> tuple[Decimal, bool]:
    """A level: a number or a numeric string, optionally ending in % (returned as the second item)."""
    if isinstance(raw, bool) or not isinstance(raw, int | float | str):
        raise RuleError(key, f'expected a number or a string like "15%", got {raw!r}')
    text = str(raw).strip().replace("_", "")
    percent = text.endswith("%")
    try:
        value = Decimal(text.rstrip("%").strip())
    except InvalidOperation:
        raise RuleError(key, f'expected a number or a string like "15%", got {raw!r}') from None
    if not value.is_finite():
        raise RuleError(key, f"expected a finite number, got {raw!r}")
    return value, percent


def _plain(value: Decimal) -> str:
    """A decimal as people write it: 15, 0.15, 7.5 (no exponent, no trailing zeros)."""
    text = f"{value.normalize():f}"
    return "0" if text == "-0" else text


def _unit_mistake(key: str, raw: Any, value: Decimal) -> RuleError:
    """A bare fraction where a percentage is read: 0.15 is 0.15 %, though it was most likely meant as 15 %."""
    meant = _plain(value * 100)
    return RuleError(
        key,
        f"{raw!r} is ambiguous: {key} is in percent, so this reads as {_plain(value)} %; as a fraction it would "
        f"mean {meant} %",
        hint=f'write "{meant}%" for {meant} %, or "{_plain(value)}%" if you mean {_plain(value)} %',
    )


def percent_level(key: str, raw: Any) -> Decimal:
    """A level or margin in percent (liquidation distance, drawdown). A bare number below 1 is refused: a
    fraction (0.15) written where percent (15) is read is the likeliest unit mistake, and it would make the rule
    silently useless. "0.15%" says what it means."""
    value, percent = _decimal(key, raw)
    if not percent and 0 < abs(value) < 1:
        raise _unit_mistake(key, raw, value)
    return value


def _level(rule_type: RuleType, key: str, raw: Any) -> tuple[Decimal, bool]:
    value, percent = _decimal(key, raw)
    if rule_type in PERCENT_TYPES:
        if value < 0 or value >= 100:
            raise RuleError(key, f'expected a percentage between 0% and 100%, like "15%", got {raw!r}')
        return percent_level(key, raw), True
    if rule_type is RuleType.MARGIN_RATIO:
        if percent and 0 < value < 1:  # "0.6%" is a ratio of 0.006: surely 0.6 (or "60%") was meant
            raise RuleError(
                key,
                f"{raw!r} is a margin ratio of {_plain(value / 100)} (Bitget liquidates at 1, that is 100%)",
                hint=f'write {_plain(value)} or "{_plain(value * 100)}%" for a ratio of {_plain(value)}',
            )
        value = value / 100 if percent else value  # "60%" and 0.6 mean the same
        if not 0 < value <= 10:
            raise RuleError(key, f'expected a ratio like 0.6 or "60%" (Bitget liquidates at 1.0), got {raw!r}')
        return value, False
    if rule_type is RuleType.UNREACHABLE:
        if percent or value <= 0 or value != value.to_integral_value():
            raise RuleError(key, f"expected a whole number of poll intervals without good data, got {raw!r}")
        return value, False
    if value >= 0:  # pnl rules: a loss
        raise RuleError(key, f'expected a loss (a negative amount like -500, or a percentage like "-20%"), got {raw!r}')
    return value, percent


def _findings(key: str, raw: Any) -> tuple[str, ...]:
    items = [raw] if isinstance(raw, str) else raw
    if not isinstance(items, list) or not all(isinstance(i, str) for i in items):
        raise RuleError(key, f"expected a list of findings from {', '.join(KEY_FINDINGS)}, got {raw!r}")
    for item in items:
        if item not in KEY_FINDINGS:
            raise RuleError(key, f"unknown finding {item!r}; choose from {', '.join(KEY_FINDINGS)}")
    return tuple(items)


def build_rule(v: dict[str, Any], present: set[str]) -> Rule:
    """A Rule from a `[[rules]]` table whose common keys are already parsed (`v`); `present` are the keys the
    table actually has. Levels depend on the type, so they are checked here."""
    try:
        rule_type = RuleType(v["type"])
    except ValueError:
        raise RuleError("type", f"unknown rule type {v['type']!r}; choose from {', '.join(RuleType)}") from None
    for key, types in TYPE_KEYS.items():
        if key in present and rule_type not in types:
            raise RuleError(key, f"a {rule_type} rule has no {key!r}")
    if v["warning"] is None and v["critical"] is None:
        raise RuleError("warning", "a rule needs a warning level, a critical level or both")
    warning: Any
    critical: Any
    if rule_type is RuleType.KEY_PERMISSIONS:
        warning = _findings("warning", v["warning"]) if v["warning"] is not None else None
        critical = _findings("critical", v["critical"]) if v["critical"] is not None else None
        percent = False
        clear = Decimal(0)
    else:
        parsed = {k: _level(rule_type, k, v[k]) for k in ("warning", "critical") if v[k] is not None}
        units = {p for _, p in parsed.values()}
        if len(units) > 1:
            raise RuleError("critical", "warning and critical must both be amounts or both be percentages")
        percent = units.pop()
        warning, critical = (parsed[k][0] if k in parsed else None for k in ("warning", "critical"))
        if warning is not None and critical is not None:
            lower = rule_type in _LOWER_IS_WORSE
            if (critical > warning) if lower else (critical < warning):
                word = "at or below" if lower else "at or above"
                raise RuleError("critical", f"the critical level must be {word} the warning level ({warning})")
        clear = Decimal(0)
        if v["clear"] is not None:
            percent_type = rule_type in PERCENT_TYPES
            clear = percent_level("clear", v["clear"]) if percent_type else _decimal("clear", v["clear"])[0]
        if rule_type is RuleType.MARGIN_RATIO and isinstance(v["clear"], str) and v["clear"].strip().endswith("%"):
            clear /= 100
        if clear < 0:
            raise RuleError("clear", f"expected a margin of 0 or more, got {v['clear']!r}")
    repeat = {Severity.WARNING: v["repeat"], Severity.CRITICAL: v["repeat"]}
    for severity in Severity:
        if v[f"repeat_{severity}"] is not None:
            repeat[severity] = v[f"repeat_{severity}"]
    scope = v["scope"] or "account"
    if scope not in ("account", "portfolio"):
        raise RuleError("scope", f'expected "account" or "portfolio", got {scope!r}')
    return Rule(
        name=v["name"],
        type=rule_type,
        warning=warning,
        critical=critical,
        clear=clear,
        for_=v["for"] or timedelta(0),
        repeat={s: r for s, r in repeat.items() if r is not None},
        accounts=v["accounts"],
        tags=v["tags"],
        channels=v["channels"],
        send_resolved=v["send_resolved"],
        percent=percent,
        window=v["window"] or timedelta(hours=24),
        portfolio=scope == "portfolio",
        horizon=_horizon(v.get("horizon")),
    )


def _horizon(value: timedelta | None) -> timedelta:
    if value is None:
        return timedelta(hours=24)
    if value <= timedelta(0):
        raise RuleError("horizon", f'expected a positive duration like "24h", got {value}')
    return value


def _default(name: str, rule_type: RuleType, warning: Any, critical: Any, clear: Any, repeat: timedelta) -> Rule:
    return Rule(name, rule_type, warning, critical, Decimal(clear), repeat={s: repeat for s in Severity})


# What applies when the file has no [[rules]] (documented in the README).
DEFAULT_RULES: tuple[Rule, ...] = (
    _default("liquidation", RuleType.LIQUIDATION_DISTANCE, Decimal(15), Decimal(7), "2", timedelta(minutes=30)),
    _default("margin_ratio", RuleType.MARGIN_RATIO, Decimal("0.6"), Decimal("0.8"), "0.05", timedelta(minutes=30)),
    _default("unreachable", RuleType.UNREACHABLE, None, Decimal(3), "0", timedelta(hours=2)),
)
