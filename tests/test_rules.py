"""Rules and the alert lifecycle as pure functions: levels, hysteresis, evaluation, steps, notify decisions,
quiet hours. Plus the rule section of the accounts file."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, time, timedelta
from decimal import Decimal
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from monitor.alerts.compose import quiet_until
from monitor.alerts.lifecycle import notified, notify_reason, step, vanish
from monitor.alerts.model import Reason, Silence, State
from monitor.alerts.peaks import RollingPeak
from monitor.alerts.silences import silenced
from monitor.config import load_config
from monitor.config.model import ChannelConfig, MonitorSettings
from monitor.domain import AccountMode, AccountSnapshot, KeyInfo, MarginMode, Position, PositionMode, Side
from monitor.errors import ConfigError
from monitor.exchange.bitget.codes import fix_of
from monitor.poller.state import Reading, RiskLevels, Status
from monitor.rules.evaluate import _odds, evaluate_account, safety_line
from monitor.rules.model import DEFAULT_RULES, Rule, RuleType, Severity
from monitor.rules.view import AccountView, alert_key
from monitor.secret import Secret
from monitor.views import AccountViews

D = Decimal
T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
LIQ = Rule(
    "liq",
    RuleType.LIQUIDATION_DISTANCE,
    D(15),
    D(7),
    D(2),
    repeat={Severity.WARNING: timedelta(minutes=30), Severity.CRITICAL: timedelta(minutes=5)},
)
MARGIN = Rule("margin", RuleType.MARGIN_RATIO, D("0.6"), D("0.8"), D("0.05"))
W, C = Severity.WARNING, Severity.CRITICAL


@pytest.mark.parametrize(
    ("rule", "value", "current", "expected"),
    [
        (LIQ, D(20), None, None),
        (LIQ, D(15), None, W),  # at the level counts
        (LIQ, D(10), None, W),
        (LIQ, D(7), None, C),
        (LIQ, D(16), W, W),  # inside the hysteresis band: holds
        (LIQ, D("17.01"), W, None),  # past level + clear: lets go
        (LIQ, D(8), C, C),  # critical holds until 7 + 2
        (LIQ, D("9.5"), C, W),  # eases to warning, not to nothing
        (LIQ, D(30), C, None),
        (MARGIN, D("0.59"), None, None),
        (MARGIN, D("0.6"), None, W),
        (MARGIN, D("0.56"), W, W),
        (MARGIN, D("0.549"), W, None),
        (MARGIN, D("0.8"), W, C),
        (MARGIN, D("0.76"), C, C),
        (MARGIN, D("0.74"), C, W),
    ],
)
def test_severity_follows_levels_with_hysteresis(
    rule: Rule, value: Decimal, current: Severity | None, expected: Severity | None
) -> None:
    assert rule.severity(value, current) == expected


def position(
    mark: str,
    liquidation: str | None,
    *,
    side: Side = Side.LONG,
    symbol: str = "BTCUSDT",
    pnl: str = "-10",
    margin: str = "100",
) -> Position:
    return Position(
        "USDT-FUTURES",
        symbol,
        "USDT",
        side,
        PositionMode.ONE_WAY,
        MarginMode.ISOLATED,
        D(1),
        D(mark),
        D(mark),
        D(liquidation) if liquidation else None,
        D(margin),
        D(10),
        D(pnl),
    )


def view(
    *positions: Position,
    fresh: bool = True,
    polled: bool = True,
    key: KeyInfo | None = None,
    permanent: bool = False,
    last_good: datetime | None = T0,
    name: str = "acct",
) -> AccountView:
    snapshot = AccountSnapshot(name, T0, AccountMode.CLASSIC, positions=positions)
    return AccountView(
        name,
        ("fund-a",),
        snapshot,
        last_good,
        fresh,
        T0 - timedelta(hours=1),
        timedelta(seconds=30),
        polled,
        permanent,
        "40012" if permanent else None,
        "bad passphrase" if permanent else None,
        key,
    )


def judge(rules: list[Rule], v: AccountView, now: datetime = T0) -> dict[str, tuple[Severity | None, str]]:
    evaluation = evaluate_account(rules, v, now)
    return {o.key: (o.severity, o.summary) for o in evaluation.observations} | {
        f"held:{name}": (None, "") for name in evaluation.held
    }


def test_every_position_is_observed_and_a_missing_liquidation_price_never_alerts() -> None:
    result = judge([LIQ], view(position("100", "94"), position("100", None, symbol="ETHUSDT")))
    assert result == {
        "liq|acct|USDT-FUTURES BTCUSDT long": (C, "BTCUSDT long: 6.00% from liquidation (mark 100, liquidation 94)"),
        "liq|acct|USDT-FUTURES ETHUSDT long": (None, "ETHUSDT long: no liquidation price"),
    }


def test_short_positions_measure_distance_upwards() -> None:
    result = judge([LIQ], view(position("100", "110", side=Side.SHORT)))
    assert result["liq|acct|USDT-FUTURES BTCUSDT short"][0] is W


def test_stale_or_unpolled_accounts_hold_their_data_rules_but_not_the_unreachable_rule() -> None:
    unreachable = Rule("down", RuleType.UNREACHABLE, None, D(3))
    stale = judge([LIQ, unreachable], view(position("100", "94"), fresh=False), T0 + timedelta(minutes=2))
    assert stale == {"held:liq": (None, ""), "down|acct|": (C, stale["down|acct|"][1])}
    assert "no good data for 4 poll intervals" in stale["down|acct|"][1]
    assert judge([LIQ, unreachable], view(polled=False)) == {"held:liq": (None, ""), "held:down": (None, "")}


def test_a_permanent_error_is_critical_at_once() -> None:
    unreachable = Rule("down", RuleType.UNREACHABLE, D(3), D(10))
    result = judge([unreachable], view(permanent=True))
    assert result["down|acct|"] == (C, "cannot be read: Bitget error 40012: bad passphrase")


@pytest.mark.parametrize(
    ("code", "message", "said"),
    [
        (
            "40012",
            "acct: /api/v2/spot/account/info: Bitget 40012 (HTTP 400): Passphrase error",
            "Bitget error 40012 on /api/v2/spot/account/info: Passphrase error",
        ),
        ("40012", "bad passphrase", "Bitget error 40012: bad passphrase"),
        (
            "ExchangeUnavailable",
            "acct: /api/v2/mix/account/accounts: HTTP 502: HTTP 502 without a Bitget body: '<html>'",
            "ExchangeUnavailable on /api/v2/mix/account/accounts: HTTP 502 without a Bitget body: '<html>'",
        ),
        (
            "RequestTimeout",
            "acct: /api/v2/mix/position/all-position: no answer within the request timeout",
            "RequestTimeout on /api/v2/mix/position/all-position: no answer within the request timeout",
        ),
    ],
)
def test_an_unreachable_message_says_the_account_endpoint_and_code_once(code: str, message: str, said: str) -> None:
    from dataclasses import replace

    unreachable = Rule("down", RuleType.UNREACHABLE, D(3), D(10))
    permanent = replace(view(permanent=True), error_code=code, error_message=message)
    assert judge([unreachable], permanent)["down|acct|"] == (C, f"cannot be read: {said}")
    failing = replace(permanent, permanent_error=False, last_good_at=T0 - timedelta(minutes=3))
    assert judge([unreachable], failing)["down|acct|"][1].endswith(f"(last error: {said})")


def test_pnl_rules_in_coin_and_percent_and_key_findings() -> None:
    coin = Rule("pnl", RuleType.UNREALIZED_PNL, D(-50), D(-200))
    pct = Rule("pnlpct", RuleType.UNREALIZED_PNL, D(-20), D(-50), percent=True)
    key = Rule("key", RuleType.KEY_PERMISSIONS, ("trade", "no_ip_binding"), ("withdraw",))
    info = KeyInfo("1", ("spot_trade", "readonly"), ())
    result = judge([coin, pct, key], view(position("100", None, pnl="-60", margin="100"), key=info))
    assert result["pnl|acct|USDT-FUTURES BTCUSDT long"][0] is W
    assert result["pnlpct|acct|USDT-FUTURES BTCUSDT long"][0] is C
    assert result["key|acct|"] == (W, "API key can trade, is not bound to an IP address")


def test_rules_select_accounts_by_glob_and_tag() -> None:
    rule = Rule("r", RuleType.LIQUIDATION_DISTANCE, D(15), accounts=("fund-*",), tags=("hedge",))
    assert rule.selects("fund-1", ("hedge", "x"))
    assert not rule.selects("fund-1", ("x",))
    assert not rule.selects("other", ("hedge",))


def test_the_rolling_peak_forgets_what_left_the_window() -> None:
    peak = RollingPeak(timedelta(hours=24))
    peak.add(T0, D(100))
    peak.add(T0 + timedelta(hours=1), D(90))
    peak.add(T0 + timedelta(hours=2), D(95))
    assert peak.peak(T0 + timedelta(hours=3)) == D(100)
    assert peak.peak(T0 + timedelta(hours=24, minutes=30)) == D(95)


def test_risk_cadence_follows_the_widest_warning_level() -> None:
    wide = Rule("wide", RuleType.LIQUIDATION_DISTANCE, D(25), D(10), D(5))
    assert RiskLevels.from_rules([LIQ, wide, MARGIN]) == RiskLevels(D(30), D("0.55"))
    assert RiskLevels.from_rules([]) == RiskLevels()


# -- the lifecycle -------------------------------------------------------------------------------------------


def observe(rule: Rule, value: str | None, severity: Severity | None) -> object:
    from monitor.rules.view import Observation

    details = {"symbol": "BTCUSDT", "side": "long", "mark": "100", "liquidation": "94"}
    return Observation(rule, "acct", "USDT-FUTURES BTCUSDT long", severity, D(value) if value else None, "s", details)


def test_for_delays_firing_and_a_short_blip_never_fires() -> None:
    rule = Rule("liq", RuleType.LIQUIDATION_DISTANCE, D(15), for_=timedelta(minutes=2))
    alert, tr = step(None, observe(rule, "10", W), T0)  # type: ignore[arg-type]
    assert alert is not None and alert.state is State.PENDING and tr is not None
    assert notify_reason(alert, rule, T0) is None
    alert, tr = step(alert, observe(rule, "10", W), T0 + timedelta(minutes=1))  # type: ignore[arg-type]
    assert alert is not None and alert.state is State.PENDING and tr is None
    blip, tr = step(alert, observe(rule, "20", None), T0 + timedelta(minutes=1))  # type: ignore[arg-type]
    assert blip is not None and blip.state is State.INACTIVE and tr is not None
    alert, tr = step(alert, observe(rule, "10", W), T0 + timedelta(minutes=2))  # type: ignore[arg-type]
    assert alert is not None and alert.state is State.FIRING and tr is not None
    assert notify_reason(alert, rule, T0 + timedelta(minutes=2)) is Reason.FIRING


def test_escalation_notifies_at_once_and_repeats_follow_each_severity() -> None:
    alert, _ = step(None, observe(LIQ, "10", W), T0)  # type: ignore[arg-type]
    assert alert is not None
    alert = notified(alert, T0)
    assert notify_reason(alert, LIQ, T0 + timedelta(minutes=29)) is None
    assert notify_reason(alert, LIQ, T0 + timedelta(minutes=30)) is Reason.REPEAT
    alert, tr = step(alert, observe(LIQ, "6", C), T0 + timedelta(minutes=1))  # type: ignore[arg-type]
    assert alert is not None and tr is not None and tr.reason == "escalated to critical"
    assert notify_reason(alert, LIQ, T0 + timedelta(minutes=1)) is Reason.ESCALATED
    alert = notified(alert, T0 + timedelta(minutes=1))
    assert notify_reason(alert, LIQ, T0 + timedelta(minutes=6)) is Reason.REPEAT


def test_silence_keeps_it_quiet_and_its_end_announces_a_still_firing_alert() -> None:
    alert, _ = step(None, observe(LIQ, "10", W), T0)  # type: ignore[arg-type]
    assert alert is not None
    quiet = Silence(1, "*", None, None, T0, T0 + timedelta(hours=1), "maintenance", T0)
    assert silenced(alert, [quiet], T0)  # the engine asks nothing more of a silenced alert: it stays quiet
    assert not silenced(alert, [quiet], T0 + timedelta(hours=2))
    assert notify_reason(alert, LIQ, T0 + timedelta(hours=2)) is Reason.FIRING
    resolved, _ = step(alert, observe(LIQ, "30", None), T0)  # type: ignore[arg-type]
    assert resolved is not None and resolved.state is State.RESOLVED
    assert notify_reason(resolved, LIQ, T0) is None  # never announced: nothing to resolve


def test_a_closed_position_resolves_its_alert_with_the_reason() -> None:
    alert, _ = step(None, observe(LIQ, "6", C), T0)  # type: ignore[arg-type]
    assert alert is not None
    closed, tr = vanish(alert, T0, "position closed")
    assert closed.state is State.RESOLVED and tr is not None and tr.reason == "position closed"
    assert closed.summary == "s: position closed"


# -- quiet hours ---------------------------------------------------------------------------------------------

BERLIN = ChannelConfig("night", (), quiet_hours=(time(22), time(7)), timezone=ZoneInfo("Europe/Berlin"))


@pytest.mark.parametrize(
    ("now", "until"),
    [
        (datetime(2026, 3, 28, 20, 59, tzinfo=UTC), None),  # 21:59 CET
        (datetime(2026, 3, 28, 21, 0, tzinfo=UTC), datetime(2026, 3, 29, 5, 0, tzinfo=UTC)),  # ends 07:00 CEST
        (datetime(2026, 3, 29, 4, 59, tzinfo=UTC), datetime(2026, 3, 29, 5, 0, tzinfo=UTC)),
        (datetime(2026, 3, 29, 5, 0, tzinfo=UTC), None),
        (datetime(2026, 10, 24, 23, 0, tzinfo=UTC), datetime(2026, 10, 25, 6, 0, tzinfo=UTC)),  # ends 07:00 CET
        (datetime(2026, 7, 1, 12, 0, tzinfo=UTC), None),
    ],
)
def test_quiet_hours_end_at_local_wall_clock_time_across_dst(now: datetime, until: datetime | None) -> None:
    assert quiet_until(BERLIN, now) == until


# -- the accounts file -------------------------------------------------------------------------------------

ACCOUNT = '[[accounts]]\nname = "a"\napi_key = "k"\napi_secret = "s"\npassphrase = "p"\n'


def load(tmp_path: Path, text: str) -> object:
    path = tmp_path / "accounts.toml"
    path.write_text(text + ACCOUNT)
    return load_config(path, env={})


def test_without_rules_the_documented_defaults_apply(tmp_path: Path) -> None:
    config = load(tmp_path, "")
    assert config.rules == DEFAULT_RULES  # type: ignore[attr-defined]
    assert [(r.type, r.warning, r.critical) for r in DEFAULT_RULES] == [
        (RuleType.LIQUIDATION_DISTANCE, D(15), D(7)),
        (RuleType.MARGIN_RATIO, D("0.6"), D("0.8")),
        (RuleType.UNREACHABLE, None, D(3)),
    ]


@pytest.mark.parametrize(
    ("text", "error"),
    [
        (
            '[[rules]]\nname = "x"\ntype = "liquidation"\nwarning = "5%"\n',
            "{f}:3: rules[0].type: unknown rule type 'liquidation'; choose from liquidation_distance, margin_ratio, "
            "unrealized_pnl, account_pnl, drawdown, unreachable, key_permissions, "
            "liquidation_probability",
        ),
        (
            '[[rules]]\nname = "x"\ntype = "liquidation_distance"\nwarning = "5%"\ncritical = "9%"\n',
            "{f}:5: rules[0].critical: the critical level must be at or below the warning level (5)",
        ),
        (
            '[[rules]]\nname = "x"\ntype = "margin_ratio"\nwarning = "abc"\n',
            "{f}:4: rules[0].warning: expected a number or a string like \"15%\", got 'abc'",
        ),
        (
            '[[rules]]\nname = "x"\ntype = "unrealized_pnl"\nwarning = 50\n',
            '{f}:4: rules[0].warning: expected a loss (a negative amount like -500, or a percentage like "-20%"), '
            "got 50",
        ),
        (
            '[[rules]]\nname = "x"\ntype = "margin_ratio"\nwarning = 0.6\nwindow = "1h"\n',
            "{f}:5: rules[0].window: a margin_ratio rule has no 'window'",
        ),
        (
            '[[rules]]\nname = "x"\ntype = "margin_ratio"\nwarning = 0.6\nhorizon = "1h"\n',
            "{f}:5: rules[0].horizon: a margin_ratio rule has no 'horizon'",
        ),
        (
            '[[rules]]\nname = "x"\ntype = "liquidation_probability"\nwarning = 0.05\n',
            "{f}:4: rules[0].warning: 0.05 is ambiguous: warning is in percent, so this reads as 0.05 %; as a fraction "
            'it would mean 5 % (write "5%" for 5 %, or "0.05%" if you mean 0.05 %)',
        ),
        (
            '[[rules]]\nname = "x"\ntype = "margin_ratio"\n',
            "{f}:1: rules[0].warning: a rule needs a warning level, a critical level or both",
        ),
        (
            '[[rules]]\nname = "x"\ntype = "margin_ratio"\nwarning = 0.6\nchannels = ["pager"]\n',
            "{f}:5: rules[0].channels: unknown channel 'pager' (channels: none are defined; add it under [channels])",
        ),
        (
            '[[rules]]\nname = "x"\ntype = "margin_ratio"\nwarning = 0.6\n[[rules]]\nname = "x"\ntype = "drawdown"\n'
            'warning = "5%"\n',
            "{f}:6: rules[1].name: duplicate rule name 'x' (rules[0] already uses it; names must be unique)",
        ),
        (
            '[channels.ops]\nurls = ["json://127.0.0.1/x"]\nquiet_hours = "22-7"\n',
            "{f}:3: channels.ops.quiet_hours: expected a window like \"22:00-07:00\", got '22-7'",
        ),
        (
            '[channels.ops]\nurls = ["json://127.0.0.1/x"]\ntimezone = "Mars/Olympus"\n',
            "{f}:3: channels.ops.timezone: unknown time zone 'Mars/Olympus'; use an IANA name like \"Europe/Berlin\" "
            'or "UTC"',
        ),
        (
            '[channels]\nops = ["notaservice://secret-token-123"]\n',
            "{f}:2: channels.ops: URL number 1 of channel 'ops' is not a valid apprise URL (not shown: it may carry a "
            "token) (see https://github.com/caronc/apprise/wiki for the URL of each service)",
        ),
    ],
)
def test_a_broken_rule_or_channel_names_its_place(tmp_path: Path, text: str, error: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load(tmp_path, text)
    assert str(caught.value) == error.format(f=tmp_path / "accounts.toml")
    assert "secret-token-123" not in str(caught.value)


def test_a_liquidation_probability_rule_reads_in_percent_within_its_horizon(tmp_path: Path) -> None:
    from monitor.rules.describe import describe

    config = load(tmp_path, '[[rules]]\nname = "odds"\ntype = "liquidation_probability"\nwarning = "5%"\n'
                            'critical = "20%"\nhorizon = "1h"\n')  # fmt: skip
    (rule,) = config.rules  # type: ignore[attr-defined]
    assert (rule.warning, rule.critical, rule.horizon) == (D(5), D(20), timedelta(hours=1))
    assert not rule.lower_is_worse and rule.per_position
    assert describe(rule) == ("odds: warning at a 5 % chance or more of liquidation within 1 h, critical at 20 %")


def test_the_odds_rule_holds_without_volatility_and_judges_with_it() -> None:
    rule = Rule("odds", RuleType.LIQUIDATION_PROBABILITY, D(5), D(20))
    p = position("100", "90.9")  # 9.1 % from liquidation
    held = judge([rule], view(p))
    ((severity, summary),) = held.values()
    assert severity is None and "too little mark history" in summary
    sigma = 0.2 / (86400**0.5)  # 20 % a day
    judged = judge([rule], dataclasses.replace(view(p), volatility=lambda product, symbol: sigma))
    ((severity, summary),) = judged.values()
    assert severity is Severity.CRITICAL  # erfc(ln(100 / 90.9) / (0.2 * sqrt(2))): 63 %
    assert summary.startswith("BTCUSDT long: 63.") and "chance of liquidation within 24h" in summary


def test_a_position_past_its_liquidation_price_reads_past_liquidation_not_a_negative_distance() -> None:
    liq = Rule("liq", RuleType.LIQUIDATION_DISTANCE, D(15), D(7), D(2))
    odds = Rule("odds", RuleType.LIQUIDATION_PROBABILITY, D(5), D(20))
    p = position("89.9", "90")  # a long whose mark is already below its liquidation price (the read lags)
    summaries = [s for _, s in judge([liq, odds], dataclasses.replace(view(p), volatility=lambda *_: 1e-4)).values()]
    assert sorted(summaries) == [
        "BTCUSDT long: 100% chance of liquidation within 24h (past liquidation, liquidation 90, volatility 2.9% a day)",
        "BTCUSDT long: past liquidation (mark 89.9, liquidation 90)",
    ]
    assert not [s for s in summaries if "-0." in s]


def test_absurd_figures_give_no_suggestion_and_no_odds_rather_than_an_error() -> None:
    liq = Rule("liq", RuleType.LIQUIDATION_DISTANCE, D(15), D(7), D(2))
    odds = Rule("odds", RuleType.LIQUIDATION_PROBABILITY, D(5), D(20))
    for mark in ("NaN", "Infinity"):
        p = dataclasses.replace(position("100", "95"), mark_price=D(mark))
        v = dataclasses.replace(view(p), volatility=lambda product, symbol: 1e-4)
        # (The poller's checks keep such marks out of snapshots; these parts add no error of their own.)
        assert safety_line(liq, v.snapshot, p, D(mark)) is None  # type: ignore[arg-type]
        value, summary = _odds(odds, v, p)
        assert value is None and "too little mark history" in summary


def test_an_unreachable_alert_says_the_fix_and_the_positions_left_unwatched() -> None:
    unreachable = Rule("down", RuleType.UNREACHABLE, D(3), D(10))
    blocked = dataclasses.replace(
        view(position("100", "94"), position("100", "80", symbol="ETHUSDT"), permanent=True),
        error_code="40018",
        error_message="acct: /api/v2/mix/account/accounts: Bitget 40018 (HTTP 400)",
        fix=fix_of("40018"),
    )
    assert judge([unreachable], blocked)["down|acct|"] == (
        C,
        "cannot be read: Bitget error 40018 on /api/v2/mix/account/accounts; 2 open positions now unwatched "
        "(as last read at 12:00 UTC, equity 0.00 USDT); fix: the key is bound to other IP addresses; add this "
        "host's public IP to the key on Bitget",
    )


def test_an_unreachable_alert_resolves_saying_how_long_the_account_was_blind() -> None:
    unreachable = Rule("down", RuleType.UNREACHABLE, D(3), D(10))
    views = AccountViews(
        lambda: MonitorSettings(Secret("sqlite://"), timedelta(seconds=30), "http://127.0.0.1:1", timedelta(seconds=5)),
        {},
    )
    snapshot = AccountSnapshot("acct", T0, AccountMode.CLASSIC)

    def reading(at: datetime, status: str) -> Reading:
        return Reading("acct", (), snapshot, at, status, 5, None, None, None, timedelta(0), None)

    views.of(reading(T0, Status.OK), T0)
    blind = views.of(reading(T0, Status.FAILING), T0 + timedelta(minutes=12))
    assert not blind.fresh and blind.blind_since is None
    back = T0 + timedelta(minutes=12, seconds=30)
    current = {alert_key("down", "acct", ""): C}
    for _ in range(2):  # every view of that read says so (the portfolio's, the account's)
        seen = views.of(reading(back, Status.OK), back)
        observation = evaluate_account([unreachable], seen, back, current).observations[0]
        assert (observation.severity, observation.summary) == (
            None,
            "read again at 12:12 UTC after 12m without good data (since 2026-03-01 12:00 UTC)",
        )
    later = back + timedelta(seconds=30)
    assert views.of(reading(later, Status.OK), later).blind_since is None


def test_an_account_removed_by_a_reload_is_forgotten_and_watched_anew_when_added_back() -> None:
    views = AccountViews(
        lambda: MonitorSettings(Secret("sqlite://"), timedelta(seconds=30), "http://127.0.0.1:1", timedelta(seconds=5)),
        {},
    )
    snapshot = AccountSnapshot("acct", T0, AccountMode.CLASSIC)
    views.of(Reading("acct", (), snapshot, T0, Status.OK, 5, None, None, None, timedelta(0), None), T0)
    views.of(Reading("other", (), None, None, Status.FAILING, 1, None, None, None, timedelta(0), None), T0)
    later = T0 + timedelta(hours=1)
    views.keep({"other"})  # "acct" left the accounts file
    assert views.watched_since("other", later) == T0
    assert views.watched_since("acct", later) == later  # back in the file: a new watch
