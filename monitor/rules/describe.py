"""A rule's effective levels in words, as `check` prints them: what the file means, read back to its author.

A level written in the wrong unit looks plausible in the file and absurd in a sentence ("warning under 0.15 %
from liquidation"), so every rule type is described, defaults included.
"""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal
from typing import Any

from monitor.rules.model import Rule, RuleType, Severity

_FINDINGS = {"trade": "can trade", "withdraw": "can withdraw", "no_ip_binding": "is not bound to an IP address"}


def number(value: Decimal) -> str:
    """15, 0.6, 7.5, 2,000: no exponent, no trailing zeros, thousands grouped."""
    text = f"{value.normalize():,f}"
    return "0" if text == "-0" else text


def span(value: timedelta) -> str:
    seconds = value.total_seconds()
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60), ("s", 1)):
        if seconds >= size and seconds % size == 0 and (unit != "d" or seconds > 86400):  # 24 h, not 1 d
            return f"{int(seconds // size)} {unit}"
    return f"{seconds:g} s"


def _levels(rule: Rule, first: str, then: str) -> str:
    """'warning <first>, critical <then>' (or the one level there is, in the first form). `first` and `then`
    are format strings of the level `{v}`."""
    parts: list[str] = []
    for severity, level in sorted(rule.levels(), key=lambda sl: sl[0].rank):
        parts.append(f"{severity} " + (then if parts else first).format(v=_shown(rule, level)))
    return ", ".join(parts)


def _shown(rule: Rule, level: Any) -> str:
    if rule.type in (RuleType.UNREALIZED_PNL, RuleType.ACCOUNT_PNL):
        return number(-level)  # a loss: stored negative, said as an amount lost
    return number(level)


def levels_in_words(rule: Rule) -> str:
    """What fires the rule, at each severity, in one line."""
    t = rule.type
    if t is RuleType.LIQUIDATION_DISTANCE:
        text = _levels(rule, "under {v} % from liquidation", "under {v} %")
    elif t is RuleType.MARGIN_RATIO:
        text = _levels(rule, "at a margin ratio of {v} or more", "at {v}") + " (Bitget liquidates at 1)"
    elif t is RuleType.UNREALIZED_PNL:
        if rule.percent:
            text = _levels(rule, "at a position loss of {v} % of its margin or more", "at {v} %")
        else:
            text = _levels(rule, "at a position loss of {v} or more in its margin coin", "at {v}")
    elif t is RuleType.ACCOUNT_PNL:
        if rule.percent:
            text = _levels(rule, "at an unrealized loss of {v} % of equity or more", "at {v} %")
        else:
            text = _levels(rule, "at an unrealized loss of {v} USDT or more", "at {v} USDT")
    elif t is RuleType.DRAWDOWN:
        whose = "the selected accounts' total equity" if rule.portfolio else "equity"
        text = _levels(rule, f"{{v}} % or more below the {span(rule.window)} peak of {whose}", "{v} %")
    elif t is RuleType.LIQUIDATION_PROBABILITY:
        text = _levels(rule, f"at a {{v}} % chance or more of liquidation within {span(rule.horizon)}", "at {v} %")
    elif t is RuleType.UNREACHABLE:
        text = _levels(rule, "after {v} poll intervals without good data", "after {v}")
        text += "; a permanent Bitget error (key, IP, permission) is critical at once"
    else:  # key_permissions
        parts = []
        for severity in (Severity.WARNING, Severity.CRITICAL):
            findings = rule.warning if severity is Severity.WARNING else rule.critical
            if findings:
                said = " or ".join(_FINDINGS[f] for f in findings)
                parts.append(f"{severity} when the key {said}")
        return "; ".join(parts)
    if rule.clear:
        percent_types = (RuleType.LIQUIDATION_DISTANCE, RuleType.DRAWDOWN, RuleType.LIQUIDATION_PROBABILITY)
        unit = " %" if t in percent_types or rule.percent else ""
        text += f"; lets go {number(rule.clear)}{unit} past its level"
    if rule.for_:
        text += f"; fires once it holds for {span(rule.for_)}"
    return text


def describe(rule: Rule) -> str:
    return f"{rule.name}: {levels_in_words(rule)}"
