"""Rule evaluation: plain functions of what is known about the accounts and `now` (what the rules see and say:
monitor.rules.view).

An evaluation says, for each rule, what it observed (one Observation per subject, breaching or not) and which
rules it could not judge because the data is missing (`held`): those alerts keep their state, since missing
data must never resolve an alert.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from datetime import datetime, timedelta
from decimal import Decimal

from monitor.domain import AccountSnapshot, KeyInfo, Position
from monitor.errors import error_text
from monitor.numbers import amount, chance, counted, duration, money, price
from monitor.risk.odds import liquidation_probability
from monitor.risk.safety import describe, snapshot_safety
from monitor.rules.model import DATA_TYPES, Rule, RuleType, Severity
from monitor.rules.view import NONE, AccountView, Current, Evaluation, Observation, Peaks, alert_key

ESTIMATED = "estimated from the mark price; account read pending"  # said of positions judged on a mark


def num(value: Decimal | None, places: int | None = None) -> str:
    """A decimal for people: fixed point, no exponent, trailing zeros dropped (or `places` decimals)."""
    if value is None:
        return "-"
    if places is not None:
        return f"{value:,.{places}f}"
    text = format(value.normalize(), "f")
    return text if "." not in text else text.rstrip("0").rstrip(".")


def away(distance: Decimal, word: str = "away") -> str:
    """How far a position is from liquidation, for people: "2.25% away" (`word`), or "past liquidation" once
    the mark is at or past the price (never a negative distance)."""
    return "past liquidation" if distance <= 0 else f"{num(distance, 2)}% {word}"


def evaluate_account(
    rules: Iterable[Rule], view: AccountView, now: datetime, current: Current = NONE, peaks: Peaks = NONE
) -> Evaluation:
    """Every account-scoped rule that selects this account, on this account's data, its active alerts'
    severities (`current`) and its drawdown peaks (`peaks`)."""
    observations: list[Observation] = []
    held: set[str] = set()
    for rule in rules:
        if rule.portfolio or not rule.selects(view.name, view.tags):
            continue
        if rule.type in DATA_TYPES and (view.snapshot is None or not view.fresh):
            held.add(rule.name)
            continue
        if not view.polled or (rule.type is RuleType.KEY_PERMISSIONS and view.key is None):
            held.add(rule.name)
            continue
        observations += _observe(rule, view, now, current, peaks)
    return Evaluation(tuple(observations), frozenset(held))


def _observe(rule: Rule, view: AccountView, now: datetime, current: Current, peaks: Peaks) -> Iterable[Observation]:
    def judged(subject: str, value: Decimal | None, summary: str, details: dict[str, str]) -> Observation:
        if value is None:
            return Observation(rule, view.name, subject, None, None, summary, details, held=True)
        severity = rule.severity(value, current.get(alert_key(rule.name, view.name, subject)))
        return Observation(rule, view.name, subject, severity, value, summary, details)

    snapshot = view.snapshot
    if rule.type is RuleType.UNREACHABLE:
        yield _unreachable(rule, view, now, current)
    elif rule.type is RuleType.KEY_PERMISSIONS:
        assert view.key is not None
        yield _key_permissions(rule, view.name, view.key)
    elif snapshot is None:
        return
    elif rule.per_position:
        for p in snapshot.positions:
            yield _position(rule, view, snapshot, p, current)
    elif rule.type is RuleType.MARGIN_RATIO:
        if snapshot.unified is not None:
            ratio = snapshot.unified.margin_ratio
            if ratio is not None:
                yield judged("unified", ratio, f"unified margin ratio {num(ratio, 3)} (liquidation at 1)", {})
        for f in snapshot.futures:
            if f.cross_risk_ratio is not None:
                yield judged(
                    f"{f.product_type} {f.margin_coin}",
                    f.cross_risk_ratio,
                    f"{f.product_type} {f.margin_coin}: cross risk ratio {num(f.cross_risk_ratio, 3)} "
                    "(liquidation at 1)",
                    {},
                )
    elif rule.type is RuleType.ACCOUNT_PNL:
        pnl, equity = snapshot.unrealized_pnl_usdt, snapshot.equity_usdt
        share = pnl * 100 / equity if equity else None
        text = f" ({num(share, 1)}% of equity)" if share is not None else ""
        yield judged("", share if rule.percent else pnl, f"unrealized PnL {money(pnl)} USDT{text}", {})
    elif rule.type is RuleType.DRAWDOWN:
        peak = peaks.get(rule.name)
        value = drawdown_pct(snapshot.equity_usdt, peak)
        yield judged("", value, _drawdown_summary(rule, snapshot.equity_usdt, peak, value), {})


def _position(rule: Rule, view: AccountView, snapshot: AccountSnapshot, p: Position, current: Current) -> Observation:
    """A per-position rule on one position. Its words (summary and details) are written only where someone may
    read them: a position that breaches, whose alert is active, or that cannot be judged (they say why). A quiet
    one (most, most of the time, judged at every read and every mark) gets none: nothing would show them."""
    subject = position_subject(p)
    said = ""  # the odds rule's line, written with its value
    if rule.type is RuleType.LIQUIDATION_PROBABILITY:
        value, said = _odds(rule, view, p)
    else:
        value = position_value(rule, p)
    active = current.get(alert_key(rule.name, view.name, subject)) if value is not None else None
    severity = rule.severity(value, active) if value is not None else None
    if value is not None and severity is None and active is None:
        return Observation(rule, view.name, subject, None, value, "")
    details = position_details(p)
    if rule.type is RuleType.LIQUIDATION_DISTANCE:
        summary = (
            f"{p.symbol} {p.side}: {away(value, 'from liquidation')} (mark {price(p.mark_price)}, "
            f"liquidation {price(p.liquidation_price, p.mark_price)})"
            if value is not None
            else f"{p.symbol} {p.side}: no liquidation price"
        )
        suggestion = safety_line(rule, snapshot, p, value)
        if suggestion is not None:
            details["safety"] = suggestion
    elif rule.type is RuleType.LIQUIDATION_PROBABILITY:
        summary = said
    else:
        share = _margin_share(p.unrealized_pnl, p.margin)
        pct = f" ({num(share, 1)}% of margin)" if share is not None else ""
        summary = f"{p.symbol} {p.side}: unrealized PnL {amount(p.unrealized_pnl, p.margin_coin)} {p.margin_coin}{pct}"
    if view.estimated:
        summary += f"; {ESTIMATED}"
    if value is None:
        return Observation(rule, view.name, subject, None, None, summary, details, held=True)
    return Observation(rule, view.name, subject, severity, value, summary, details)


VALUED = frozenset({RuleType.LIQUIDATION_DISTANCE, RuleType.UNREALIZED_PNL})  # position_value's rules


def position_value(rule: Rule, p: Position) -> Decimal | None:
    """What a liquidation distance or unrealized PnL rule judges of a position (None: it cannot be judged). The
    odds rule's value needs the mark history: `_odds`."""
    return figure_value(rule, p, p.liquidation_distance_pct, p.unrealized_pnl)


def figure_value(rule: Rule, p: Position, distance: Decimal | None, pnl: Decimal) -> Decimal | None:
    """`position_value` of `p` with these figures (its live ones: monitor.market.live.live_figures)."""
    if rule.type is RuleType.LIQUIDATION_DISTANCE:
        return distance
    if rule.type is RuleType.UNREALIZED_PNL:
        return _margin_share(pnl, p.margin) if rule.percent else pnl
    raise ValueError(f"{rule.type} is not valued by position_value")


def _margin_share(pnl: Decimal, margin: Decimal) -> Decimal | None:
    return pnl * 100 / margin if margin else None


def evaluate_portfolio(
    rule: Rule, views: Iterable[AccountView], peak: Decimal | None, current: Current = NONE
) -> Observation | None:
    """A portfolio drawdown over the accounts the rule selects; None when one of them has no fresh data
    (the alert holds its state rather than judging a partial total)."""
    total = portfolio_equity(rule, views)
    if total is None:
        return None
    value = drawdown_pct(total, peak)
    summary = "portfolio " + _drawdown_summary(rule, total, peak, value)
    if value is None:
        return Observation(rule, None, "", None, None, summary, held=True)
    severity = rule.severity(value, current.get(alert_key(rule.name, None, "")))
    return Observation(rule, None, "", severity, value, summary)


def portfolio_equity(rule: Rule, views: Iterable[AccountView]) -> Decimal | None:
    selected = [v for v in views if rule.selects(v.name, v.tags)]
    if not selected or any(v.snapshot is None or not v.fresh for v in selected):
        return None
    return sum((v.snapshot.equity_usdt for v in selected if v.snapshot is not None), Decimal(0))


def drawdown_pct(equity: Decimal, peak: Decimal | None) -> Decimal | None:
    if peak is None or peak <= 0:
        return None
    return max(Decimal(0), (peak - equity) * 100 / peak)


def _drawdown_summary(rule: Rule, equity: Decimal, peak: Decimal | None, value: Decimal | None) -> str:
    window = _span(rule.window)
    if value is None:
        return f"equity {money(equity)} USDT (no {window} peak yet)"
    return f"equity {money(equity)} USDT, {num(value, 2)}% below its {window} peak of {money(peak)}"


def unreachable_intervals(view: AccountView, now: datetime) -> Decimal:
    """Whole poll intervals without good data (time the monitor could not poll at all left out)."""
    since = view.last_good_at or view.watched_since
    return Decimal(int(max(timedelta(0), now - since - view.stalled) / view.poll_interval))


def _unreachable(rule: Rule, view: AccountView, now: datetime, current: Current) -> Observation:
    since = view.last_good_at or view.watched_since
    intervals = unreachable_intervals(view, now)
    active = current.get(alert_key(rule.name, view.name, ""))
    # A key Bitget refuses for good is as bad as it gets, at once: retrying does not fix it.
    severity = rule.levels()[0][0] if view.permanent_error else rule.severity(intervals, active)
    if severity is None and active is None and view.blind_since is None:  # read as usual: no words (_position)
        return Observation(rule, view.name, "", None, intervals, "")
    error = f" (last error: {last_error(view)})" if view.error_code else ""
    if view.permanent_error:
        summary = f"cannot be read: {last_error(view)}"
    else:
        seen = f"since {since:%Y-%m-%d %H:%M} UTC" if view.last_good_at else "since the monitor started"
        summary = f"no good data for {intervals} poll intervals ({seen}){error}"
    if severity is None and view.blind_since is not None and view.last_good_at is not None:
        blind = view.last_good_at - view.blind_since
        summary = (f"read again at {view.last_good_at:%H:%M} UTC after {duration(blind)} without good data "
                   f"(since {view.blind_since:%Y-%m-%d %H:%M} UTC)")  # fmt: skip
    elif severity is not None:
        summary += _exposure(view) + (f"; fix: {view.fix}" if view.fix and view.error_code else "")
    return Observation(rule, view.name, "", severity, intervals, summary, {"error_code": view.error_code or ""})


def _exposure(view: AccountView) -> str:
    """What goes unwatched while the account cannot be read, from its last good data ("" without positions)."""
    snapshot = view.snapshot
    count = len(snapshot.positions) if snapshot is not None else 0
    if snapshot is None or not count:
        return ""
    return (f"; {counted(count, 'open position')} now unwatched (as last read at "
            f"{snapshot.taken_at:%H:%M} UTC, equity {money(snapshot.equity_usdt)} USDT)")  # fmt: skip


def last_error(view: AccountView) -> str:
    """The account's last error, each part once (monitor.errors.error_text)."""
    return error_text(view.name, view.error_code, view.error_message)


def _key_permissions(rule: Rule, account: str, key: KeyInfo) -> Observation:
    findings = [
        name
        for name, present in (
            ("trade", key.can_trade),
            ("withdraw", key.can_withdraw),
            ("no_ip_binding", not key.ip_bound),
        )
        if present
    ]
    severity = None
    for level, wanted in ((Severity.CRITICAL, rule.critical), (Severity.WARNING, rule.warning)):
        if wanted and any(f in wanted for f in findings):
            severity = level
            break
    words = {"trade": "can trade", "withdraw": "can withdraw", "no_ip_binding": "is not bound to an IP address"}
    summary = "API key " + (", ".join(words[f] for f in findings) if findings else "is read-only and IP-bound")
    return Observation(rule, account, "", severity, None, summary, {"findings": ",".join(findings)})


def _odds(rule: Rule, view: AccountView, p: Position) -> tuple[Decimal | None, str]:
    """The chance in percent that the position is liquidated within the rule's horizon (monitor.risk.odds: first
    passage of a driftless random walk in the log mark), and a line for people; None when it cannot be judged."""
    horizon = _span(rule.horizon)
    if p.liquidation_price is None:
        return None, f"{p.symbol} {p.side}: no liquidation price"
    volatility = view.volatility(p.product_type, p.symbol) if view.volatility is not None else None
    try:
        odds = liquidation_probability(p, volatility, rule.horizon)
    except (ArithmeticError, ValueError):  # absurd figures from Bitget (NaN, infinite): not judged, held
        odds = None
    if odds is None or not math.isfinite(odds):
        return None, f"{p.symbol} {p.side}: too little mark history to judge the odds of liquidation"
    value = Decimal(f"{odds * 100:.4f}")
    per_day = f", volatility {volatility * 86400**0.5 * 100:.1f}% a day" if volatility is not None else ""
    distance = p.liquidation_distance_pct
    far = away(distance) if distance is not None else "at liquidation"
    return value, (
        f"{p.symbol} {p.side}: {chance(odds)} chance of liquidation within {horizon} "
        f"({far}, liquidation {price(p.liquidation_price, p.mark_price)}{per_day})"
    )


def safety_line(rule: Rule, snapshot: AccountSnapshot, p: Position, distance: Decimal | None) -> str | None:
    """For a position inside the rule's least severe level: what gets it back to that level plus `clear` ("add
    about 1,240 USDT margin, or reduce by 0.12 BTC, to get back to 17 %"); None outside it."""
    levels = rule.levels()
    if distance is None or not distance.is_finite() or not levels:  # absurd figures: no suggestion
        return None
    least = levels[-1][1]
    if not rule.breaches(distance, least):
        return None
    target = least + rule.clear
    if not target > 0:
        return None
    try:
        return describe(snapshot_safety(snapshot, p, target), p.symbol)
    except (ArithmeticError, ValueError):  # absurd figures from Bitget (NaN, infinite): no suggestion
        return None


def position_subject(p: Position) -> str:
    return f"{p.product_type} {p.symbol} {p.side}"


def position_details(p: Position) -> dict[str, str]:
    """A position as an alert stores it: exact decimals (they are read back to judge a position that is gone,
    after a restart too); messages format them when they are written (monitor.alerts.messages)."""
    distance = p.liquidation_distance_pct
    return {
        "product": p.product_type,
        "symbol": p.symbol,
        "side": str(p.side),
        "size": format(p.size, "f"),
        "mark": format(p.mark_price, "f"),
        "liquidation": format(p.liquidation_price, "f") if p.liquidation_price is not None else "",
        "distance": num(distance, 2) if distance is not None else "-",
        "upnl": format(p.unrealized_pnl, "f"),
        "coin": p.margin_coin,
        "margin_mode": str(p.margin_mode),
        "position_mode": str(p.position_mode),
    }


def _span(window: timedelta) -> str:
    hours = window.total_seconds() / 3600
    return f"{hours / 24:g}d" if hours >= 48 and hours % 24 == 0 else f"{hours:g}h"
