"""The alert decisions on their own (monitor.alerts.decide): tables of (alerts, view, rules, silences, now) in,
changes and named reasons out. No database, no engine, no clock."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal as D

import pytest

from monitor.alerts.decide import Quiet, judge_account, judge_portfolio, notify
from monitor.alerts.model import Alert, Reason, Silence, State
from monitor.domain import AccountMode, AccountSnapshot, MarginMode, Position, PositionMode, Side
from monitor.rules.model import Rule, RuleType, Severity
from monitor.rules.view import AccountView, alert_key

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
W, C = Severity.WARNING, Severity.CRITICAL
LIQ = Rule("liq", RuleType.LIQUIDATION_DISTANCE, D(15), D(7), D(2), repeat={W: timedelta(minutes=30)})
DOWN = Rule("down", RuleType.UNREACHABLE, D(3), D(10))
EQUITY = Rule("dd", RuleType.DRAWDOWN, D(10), D(20), window=timedelta(hours=24), portfolio=True)
RULES = {r.name: r for r in (LIQ, DOWN)}
BTC = "USDT-FUTURES BTCUSDT long"
KEY = alert_key("liq", "acct", BTC)


def position(mark: str, liquidation: str = "90") -> Position:
    return Position("USDT-FUTURES", "BTCUSDT", "USDT", Side.LONG, PositionMode.ONE_WAY, MarginMode.ISOLATED, D(1),
                    D(mark), D(mark), D(liquidation), D(100), D(10), D(-10))  # fmt: skip


def view(*positions: Position, fresh: bool = True, name: str = "acct", equity: str = "0") -> AccountView:
    snapshot = AccountSnapshot(name, T0, AccountMode.CLASSIC, positions=positions, spot_usdt=D(equity))
    return AccountView(name, ("desk",), snapshot, T0, fresh, T0 - timedelta(hours=1), timedelta(seconds=30))


def alert(state: State, severity: Severity | None = W, *, told: State | None = None, **changes: object) -> Alert:
    base = Alert(KEY, "liq", "acct", BTC, state, T0 - timedelta(minutes=5), severity, D(10), "liq",
                 firing_since=T0 - timedelta(minutes=5) if state is State.FIRING else None,
                 last_notified_state=told, last_notified_severity=severity if told else None,
                 last_notified_at=T0 - timedelta(minutes=5) if told else None)  # fmt: skip
    return Alert(**{**{f: getattr(base, f) for f in base.__slots__}, **changes})  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("case", "alerts", "seen", "changed", "to_state", "closing", "held"),
    [
        ("a position close to liquidation fires at once", {}, view(position("95")), {KEY}, State.FIRING, set(), set()),
        ("far from liquidation: nothing", {}, view(position("200")), set(), None, set(), set()),
        ("a firing alert whose value moved stays, moved not changed", {KEY: alert(State.FIRING, told=State.FIRING)},
         view(position("98")), set(), None, set(), set()),
        ("its position gone: closing, judged with the mark", {KEY: alert(State.FIRING)}, view(), set(), None, {KEY},
         {KEY}),
        ("no fresh data: held as it is", {KEY: alert(State.FIRING)}, view(fresh=False), set(), None, set(), {KEY}),
        ("escalates to critical", {KEY: alert(State.FIRING)}, view(position("93")), {KEY}, State.FIRING, set(),
         set()),
    ],
)  # fmt: skip
def test_judging_an_account(
    case: str, alerts: dict[str, Alert], seen: AccountView, changed: set[str], to_state: State | None,
    closing: set[str], held: set[str],
) -> None:  # fmt: skip
    decision = judge_account(seen, RULES, alerts, alerts.keys(), T0)
    assert set(decision.changes) == changed, case
    assert all(new.state is to_state for new, _ in decision.changes.values()), case
    assert set(decision.closing) == closing and decision.held == held, case
    assert decision.keys == (set(alerts) | changed) - held, case


def test_an_alert_whose_verdict_is_being_read_is_held_not_closed_again() -> None:
    alerts = {KEY: alert(State.FIRING)}
    decision = judge_account(view(), RULES, alerts, alerts.keys(), T0, awaiting={KEY})
    assert decision.closing == {} and decision.held == {KEY} and decision.changes == {}


def test_the_portfolio_drawdown_is_judged_on_the_peak_it_is_given() -> None:
    views = [view(name="a", equity="40"), view(name="b", equity="40")]
    key = alert_key("dd", None, "")
    decision = judge_portfolio(views, {"dd": EQUITY}, {}, T0, {"dd": D(100)})
    new, transition = decision.changes[key]
    assert new.severity is C and new.value == D(20) and transition is not None  # 80 is 20 % below 100
    assert judge_portfolio(views, {"dd": EQUITY}, {}, T0, {}).changes == {}  # no peak yet: held


QUIET_HOUR = Silence(1, "acct", None, None, T0 - timedelta(minutes=1), T0 + timedelta(hours=1), "maintenance", T0)
UNREACHABLE = Alert(alert_key("down", "acct", ""), "down", "acct", "", State.FIRING, T0, C, D(12), "down")


@pytest.mark.parametrize(
    ("case", "looked", "silences", "reason", "told"),
    [
        ("newly firing: announced", alert(State.FIRING), [], Reason.FIRING, True),
        ("firing and told, no repeat due", alert(State.FIRING, told=State.FIRING), [], Quiet.NOTHING_NEW, False),
        ("firing and told half an hour ago: repeated",
         alert(State.FIRING, told=State.FIRING, last_notified_at=T0 - timedelta(minutes=30)), [], Reason.REPEAT, True),
        ("silenced: quiet, marked as held back", alert(State.FIRING), [QUIET_HOUR], Quiet.SILENCED, True),
        ("resolved after being announced firing", alert(State.RESOLVED, None, told=State.FIRING), [], Reason.RESOLVED,
         True),
        ("resolved, never announced", alert(State.RESOLVED, None), [], Quiet.NOTHING_NEW, False),
        ("liquidated: always announced", alert(State.LIQUIDATED, C, told=State.FIRING), [], Reason.LIQUIDATED, True),
        ("acknowledged at its severity: the repeat is not sent",
         alert(State.FIRING, told=State.FIRING, last_notified_at=T0 - timedelta(minutes=30),
               acknowledged_at=T0 - timedelta(minutes=1), acknowledged_by="me", acknowledged_severity=W), [],
         Quiet.ACKNOWLEDGED, False),
        ("acknowledged as a warning, now critical: the escalation is announced",
         alert(State.FIRING, C, told=State.FIRING, last_notified_severity=W,
               acknowledged_at=T0 - timedelta(minutes=1), acknowledged_by="me", acknowledged_severity=W), [],
         Reason.ESCALATED, True),
        ("acknowledged in an earlier episode: this one repeats",
         alert(State.FIRING, told=State.FIRING, last_notified_at=T0 - timedelta(minutes=30),
               acknowledged_at=T0 - timedelta(hours=2), acknowledged_by="me", acknowledged_severity=W), [],
         Reason.REPEAT, True),
    ],
)  # fmt: skip
def test_who_hears_what_and_why(
    case: str, looked: Alert, silences: list[Silence], reason: Reason | Quiet, told: bool
) -> None:
    notice = notify({KEY: (looked, None)}, [KEY], {}, RULES, silences, T0)
    assert notice.reasons == {KEY: reason}, case
    assert (KEY in notice.marked) is told, case
    assert [i.reason for i in notice.items] == ([reason] if isinstance(reason, Reason) else []), case
    if reason is Quiet.SILENCED:
        assert notice.marked[KEY].silenced_since == T0


def test_an_unreachable_account_inhibits_its_data_alerts_but_is_announced_itself() -> None:
    changes = {KEY: (alert(State.FIRING), None), UNREACHABLE.key: (UNREACHABLE, None)}
    notice = notify(changes, changes.keys(), {}, RULES, [], T0)
    assert notice.reasons == {KEY: Quiet.INHIBITED, UNREACHABLE.key: Reason.FIRING}
    assert [i.alert.key for i in notice.items] == [UNREACHABLE.key]
