"""The page's one formatting rule, its risk-first status and its chart, on their own."""

from __future__ import annotations

import dataclasses
import re
from datetime import UTC, datetime, timedelta
from decimal import Decimal as D
from pathlib import Path
from zoneinfo import ZoneInfo

import jinja2
import pytest

from monitor.alerts.departures import LastSeen
from monitor.alerts.messages import Messages
from monitor.alerts.model import Alert, Item, Reason, State
from monitor.domain import AccountMode, AccountSnapshot, MarginMode, Position, PositionMode, Side
from monitor.poller.state import ACCOUNT_STATUSES, account_status
from monitor.risk.odds import MarkHistory
from monitor.rules.evaluate import evaluate_account, position_details
from monitor.rules.model import DEFAULT_RULES, Rule, RuleType, Severity
from monitor.rules.view import AccountView
from monitor.store.views import EquitySample
from web.chart import equity_svg, portfolio
from web.pages import amount, chance, environment, money, price, size, when
from web.risk import Levels, levels_for, likeliest_odds, odds_of
from web.status import risk_of

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (money(D("27679.00091652")), "27,679.00"),
        (money(D("-1234567.555")), "-1,234,567.56"),
        (price(D("56069.06270548"), D("60000.1")), "56,069.1"),  # at the mark price's places
        (price(D("63757.03473928"), D("60000")), "63,757"),
        (price(D("0.0001234500")), "0.00012345"),  # trimmed, never an exponent
        (size(D("0.08640000")), "0.0864"),
        (size(D("1E+3")), "1,000"),
        (amount(D("346.6400000"), "USDT"), "346.64"),
        (amount(D("0.00513869000"), "BTC"), "0.00513869"),
    ],
)
def test_numbers_follow_one_rule(text: str, expected: str) -> None:
    assert text == expected


def test_times_show_in_the_configured_zone_with_their_age() -> None:
    env = jinja2.Environment(autoescape=True)
    env.filters["when"] = when
    template = env.from_string("{{ moment | when }}")
    utc = template.render(moment=T0 - timedelta(seconds=30), now=T0, tz=ZoneInfo("UTC"))
    berlin = template.render(moment=T0 - timedelta(hours=3), now=T0, tz=ZoneInfo("Europe/Berlin"))
    assert utc == "2026-03-01 11:59:30 UTC (30 s ago)"
    assert berlin == "2026-03-01 10:00:00 CET (3 h ago)"


def firing(severity: Severity, state: State = State.FIRING, resolved: datetime | None = None) -> Alert:
    return Alert("k", "liq", "acct", "s", state, T0, severity, resolved_at=resolved)


@pytest.mark.parametrize(
    ("case", "alerts", "distance", "health", "expected"),
    [
        ("a critical alert outranks fresh data", [firing(Severity.CRITICAL)], D(5), "ok", "critical"),
        ("a warning outranks stale data", [firing(Severity.WARNING)], D(12), "stale", "warning"),
        ("past liquidation whatever the rules say", [], D("-33.13"), "ok", "liquidation"),
        ("liquidated within the hour", [firing(Severity.CRITICAL, State.LIQUIDATED, T0 - timedelta(minutes=5))],
         None, "ok", "liquidation"),
        ("liquidated long ago: data health", [firing(Severity.CRITICAL, State.LIQUIDATED, T0 - timedelta(hours=3))],
         None, "unreachable", "unreachable"),
        ("no risk: the data health", [], D(40), "stale", "stale"),
    ],
)  # fmt: skip
def test_the_account_status_puts_risk_first(
    case: str, alerts: list[Alert], distance: D | None, health: str, expected: str
) -> None:
    poller = {"ok": "ok", "stale": "ok", "unreachable": "unreachable"}[health]
    status = account_status(poller, True, health == "stale", None, risk_of(alerts, distance, T0))
    assert status == expected, case
    assert ACCOUNT_STATUSES.index("critical") < ACCOUNT_STATUSES.index("unreachable") < ACCOUNT_STATUSES.index("ok")


def test_colours_come_from_the_rules_that_watch_the_account() -> None:
    tight = Rule("tight", RuleType.LIQUIDATION_DISTANCE, D(30), D(20), accounts=("desk-*",))
    ratio = Rule("ratio", RuleType.MARGIN_RATIO, D("0.5"), D("0.8"))
    levels = levels_for((*DEFAULT_RULES, tight, ratio), "desk-1", ())
    assert levels.distance_tone(D(25)) == "warn" and levels.distance_tone(D(18)) == "danger"
    assert levels_for((*DEFAULT_RULES, tight), "other", ()).distance_tone(D(25)) == ""  # not its rule
    assert levels.ratio_tone(D("0.6")) == "warn" and levels.ratio_tone(D("0.9")) == "danger"
    assert Levels().ratio_tone(D(1)) == "danger" and Levels().distance_tone(D("-0.5")) == "danger"


def test_the_chart_has_axes_marks_hover_values_and_the_drawdown() -> None:
    values = [D(100), D(120), D(90), D(110)]
    samples = [EquitySample(T0 + timedelta(hours=i), v, v, v, D(0), None) for i, v in enumerate(values)]
    svg = str(equity_svg(samples))
    assert svg.count('class="axis"') >= 6  # value and time labels
    assert "12:00" in svg and "120.00" in svg
    assert "max 120.00" in svg and "min 90.00" in svg and "now 110.00" in svg
    assert 'class="drawdown"' in svg and len(re.findall(r"<rect class=\"hover\"[^>]*><title>", svg)) == 4
    assert "2026-03-01 13:00 UTC: 120.00 USDT" in svg
    assert "Not enough history" in str(equity_svg(samples[:1]))


def test_the_portfolio_sums_accounts_carrying_each_ones_last_value_forward() -> None:
    a = [EquitySample(T0, D(10), D(10), D(10), D(0), None),
         EquitySample(T0 + timedelta(minutes=20), D(12), D(12), D(12), D(0), None)]  # fmt: skip
    b = [EquitySample(T0 + timedelta(minutes=5), D(100), D(100), D(100), D(0), None)]
    summed = portfolio([a, b], timedelta(minutes=15))
    assert [s.equity for s in summed] == [D(110), D(112)]
    # each sum at the last read it holds: never before the first read (a bucket's start can be)
    assert [s.at for s in summed] == [T0 + timedelta(minutes=5), T0 + timedelta(minutes=20)]
    late = [EquitySample(T0 + timedelta(minutes=3, seconds=40), D(1), D(1), D(1), D(0), None)]
    assert portfolio([late], timedelta(minutes=5))[0].at == T0 + timedelta(minutes=3, seconds=40)


def test_alert_summaries_write_prices_and_money_as_the_page_does() -> None:
    p = Position("USDT-FUTURES", "BTCUSDT", "USDT", Side.LONG, PositionMode.ONE_WAY, MarginMode.ISOLATED,
                 D("0.5"), D("61000"), D("60000.1"), D("56069.06270548"), D("3000"), D(10),
                 D("-12345.678"))  # fmt: skip
    snapshot = AccountSnapshot("desk", T0, AccountMode.CLASSIC, positions=(p,))
    view = AccountView("desk", (), snapshot, T0, True, T0, timedelta(seconds=30))
    rules = [Rule("liq", RuleType.LIQUIDATION_DISTANCE, D(10), D(5)),
             Rule("loss", RuleType.UNREALIZED_PNL, D(-1000), D(-5000))]  # fmt: skip
    summaries = {o.rule.name: o.summary for o in evaluate_account(rules, view, T0).observations}
    assert summaries["liq"] == "BTCUSDT long: 6.55% from liquidation (mark 60,000.1, liquidation 56,069.1)"
    assert summaries["loss"].startswith("BTCUSDT long: unrealized PnL -12,345.68 USDT")
    page = environment(Path("web/templates")).from_string(
        "{{ p.mark_price | price }} {{ p.liquidation_price | price(p.mark_price) }} {{ p.unrealized_pnl | money }}"
    )
    assert page.render(p=p) == "60,000.1 56,069.1 -12,345.68"  # the same text on the page


def test_an_alert_stores_exact_prices_and_its_message_writes_them_as_the_page_does() -> None:
    """Details are read back to judge a position that is gone (after a restart too): stored exact, formatted only
    in the message."""
    p = Position("USDT-FUTURES", "BTCUSDT", "USDT", Side.LONG, PositionMode.ONE_WAY, MarginMode.ISOLATED,
                 D("0.5"), D("61000"), D("60000.1"), D("56069.06270548"), D("3000"), D(10),
                 D("-12345.678"))  # fmt: skip
    details = position_details(p)
    assert (details["liquidation"], details["mark"], details["upnl"]) == ("56069.06270548", "60000.1", "-12345.678")
    last = LastSeen.from_details(details)
    assert last is not None and last.liquidation == D("56069.06270548")
    alert = Alert("liq|desk|USDT-FUTURES BTCUSDT long", "liq", "desk", "USDT-FUTURES BTCUSDT long", State.FIRING, T0,
                  Severity.CRITICAL, summary="BTCUSDT long", details=details, firing_since=T0)  # fmt: skip
    rendered = Messages(None, None).render("desk", (), [Item(alert, Reason.FIRING, "liquidation_distance")])
    assert "size 0.5, unrealized PnL -12,345.68 USDT" in rendered.body
    assert "Mark price:  60,000.1" in rendered.body_long and "Liquidation: 56,069.1 (" in rendered.body_long


@pytest.mark.parametrize(
    ("value", "like", "expected"),
    [
        (D("90.90909091"), D("100"), "90.909"),  # a round mark hides the tick: five significant digits at least
        (D("0.50123456"), D("0.5423"), "0.50123"),
        (D("-0.001"), None, "-0.001"),
        (D(0), D("100.5"), "0"),
    ],
)
def test_a_price_beside_a_round_mark_keeps_five_significant_digits(value: D, like: D | None, expected: str) -> None:
    assert price(value, like) == expected


def test_money_never_says_minus_zero() -> None:
    assert money(D("-0.001")) == "0.00" and money(-0.004) == "0.00" and money(D("-0.005")) == "0.00"


@pytest.mark.parametrize(
    ("probability", "expected"),
    [(None, "–"), (0.0, "0%"), (0.00004, "<0.1%"), (0.0342, "3.4%"), (0.9996, ">99.9%"), (1.0, "100%")],
)
def test_a_chance_of_liquidation_reads_at_a_glance(probability: float | None, expected: str) -> None:
    assert chance(probability) == expected


def test_the_odds_are_coloured_by_the_rules_of_their_horizon() -> None:
    day = Rule("odds", RuleType.LIQUIDATION_PROBABILITY, D(5), D(20))
    hour = Rule("odds-1h", RuleType.LIQUIDATION_PROBABILITY, D(1), D(2), horizon=timedelta(hours=1))
    stricter = Rule("odds-desk", RuleType.LIQUIDATION_PROBABILITY, D(3), None, accounts=("desk-*",))
    levels = levels_for((*DEFAULT_RULES, day, hour, stricter), "desk-1", ())
    assert [levels.odds_tone(timedelta(hours=24), p) for p in (0.02, 0.04, 0.19, 0.2, None)] == [
        "", "warn", "warn", "danger", ""
    ]  # fmt: skip
    assert [levels.odds_tone(timedelta(hours=1), p) for p in (0.009, 0.015, 0.02)] == ["", "warn", "danger"]
    other = levels_for((*DEFAULT_RULES, day), "other", ())
    assert other.odds_tone(timedelta(hours=24), 0.04) == "" and other.odds_tone(timedelta(hours=1), 0.5) == ""


def test_the_minimum_label_stays_off_the_time_axis_when_the_minimum_is_the_floor() -> None:
    values = [D("36469.67"), D("35000"), D("33028.54"), D("33028.54")]  # the demo's drift: the floor is 33,000
    samples = [EquitySample(T0 + timedelta(minutes=i), v, v, v, D(0), None) for i, v in enumerate(values)]
    svg = str(equity_svg(samples))
    base = float(re.findall(r'<line class="axisline"[^>]* y2="([\d.]+)"', svg)[0])
    label = float(re.search(r'<text class="marklabel min"[^>]* y="([\d.]+)"', svg).group(1))  # type: ignore[union-attr]
    assert label < base


def test_a_flat_chart_marks_only_the_current_value() -> None:
    samples = [EquitySample(T0 + timedelta(minutes=i), D(365107), D(365107), D(365107), D(0), None) for i in range(5)]
    svg = str(equity_svg(samples))
    assert "now 365,107.00" in svg and 'class="marklabel min"' not in svg and 'class="marklabel max"' not in svg


def test_a_time_label_at_the_right_edge_ends_there_instead_of_running_off_the_chart() -> None:
    # The window ends on a tick (15:25:00): centred on the plot's edge, half its text fell outside the SVG.
    samples = [
        EquitySample(T0 + timedelta(minutes=i), D(100 + i), D(100 + i), D(100 + i), D(0), None) for i in range(6)
    ]
    svg = str(equity_svg(samples))
    labels = re.findall(r'<text class="axis" x="([\d.]+)" y="[\d.]+" text-anchor="(\w+)">\d\d:\d\d', svg)
    last_x, last_anchor = max(labels, key=lambda label: float(label[0]))
    assert float(last_x) > 680 and last_anchor == "end"
    assert all(anchor == "middle" for x, anchor in labels if float(x) < 600)


def test_an_accounts_odds_are_those_of_its_likeliest_position_not_its_nearest() -> None:
    history = MarkHistory()
    for i in range(120):  # 20 minutes of marks: BTC barely moves, SOL swings 2 % a sample
        at = T0 + timedelta(seconds=10 * i)
        history.add("USDT-FUTURES", "BTCUSDT", at, D(60000) + i % 2)
        history.add("USDT-FUTURES", "SOLUSDT", at, D(150) * (D("1.02") if i % 2 else D(1)))
    base = Position("USDT-FUTURES", "BTCUSDT", "USDT", Side.LONG, PositionMode.ONE_WAY, MarginMode.ISOLATED,
                    D(1), D(60000), D(60000), D(57000), D(3000), D(10), D(0))  # fmt: skip
    near_calm = base  # 5 % away, on a symbol that hardly moves
    # 20 % away, on a symbol that swings
    far_wild = dataclasses.replace(
        base, symbol="SOLUSDT", entry_price=D(150), mark_price=D(150), liquidation_price=D(120)
    )
    snapshot = AccountSnapshot("desk", T0, AccountMode.CLASSIC, positions=(near_calm, far_wild))
    now = T0 + timedelta(minutes=20)
    odds = likeliest_odds(snapshot, history, now)
    assert odds is not None and odds == odds_of(far_wild, history, now)
    assert odds.within_24h is not None and odds.within_24h > (odds_of(near_calm, history, now).within_24h or 0)
