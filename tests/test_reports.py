"""Scheduled reports: when they are due (DST included), what they say, how they read, the data the database
gives them (SQLite and PostgreSQL, filled through the real write path) and the once-only claim."""

from __future__ import annotations

import json
import threading
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from monitor.alerts.lifecycle import Alert, State, Transition
from monitor.clock import ManualClock
from monitor.config import load_config, values
from monitor.config.model import ReportConfig
from monitor.domain import (
    AccountMode,
    AccountSnapshot,
    FuturesAccount,
    MarginMode,
    PollOutcome,
    Position,
    PositionMode,
    Side,
)
from monitor.errors import ConfigError
from monitor.exchange.bitget.reader import read_snapshot
from monitor.numbers import duration, money, percent
from monitor.reports import schedule as sch
from monitor.reports.content import build_report
from monitor.reports.model import AccountPeriod
from monitor.reports.render import ReportMessages, render_report
from monitor.store import migrations, reportsent
from monitor.store import reports as stored
from monitor.store.alerts import AlertBatch
from monitor.store.repository import Store
from tests.conftest import Mailbox, Sim, SimFactory, Sink

BERLIN = ZoneInfo("Europe/Berlin")


def at(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


# -- schedule --------------------------------------------------------------------------------------------------

DUE_TIMES = [
    # (schedule, time zone, now UTC, due time UTC, period start UTC, next due UTC)
    ("daily 08:00", "UTC", "2026-03-02 09:00", "2026-03-02 08:00", "2026-03-01 08:00", "2026-03-03 08:00"),
    ("daily 08:00", "UTC", "2026-03-02 08:00", "2026-03-02 08:00", "2026-03-01 08:00", "2026-03-03 08:00"),
    ("daily 08:00", "UTC", "2026-03-02 07:59", "2026-03-01 08:00", "2026-02-28 08:00", "2026-03-02 08:00"),
    ("daily 08:00", "Europe/Berlin", "2026-01-15 07:30", "2026-01-15 07:00", "2026-01-14 07:00", "2026-01-16 07:00"),
    # Spring: Sunday 29 March 2026 has 23 hours in Berlin; 08:00 is 06:00 UTC from then on.
    ("daily 08:00", "Europe/Berlin", "2026-03-29 07:00", "2026-03-29 06:00", "2026-03-28 07:00", "2026-03-30 06:00"),
    # Autumn: Sunday 25 October 2026 has 25 hours.
    ("daily 08:00", "Europe/Berlin", "2026-10-25 08:00", "2026-10-25 07:00", "2026-10-24 06:00", "2026-10-26 07:00"),
    # 02:30 does not exist on the spring night: taken an hour later on the clock (03:30 CEST, 01:30 UTC).
    ("daily 02:30", "Europe/Berlin", "2026-03-29 03:00", "2026-03-29 01:30", "2026-03-28 01:30", "2026-03-30 00:30"),
    # 02:30 happens twice on the autumn night: the first (CEST, 00:30 UTC).
    ("daily 02:30", "Europe/Berlin", "2026-10-25 02:00", "2026-10-25 00:30", "2026-10-24 00:30", "2026-10-26 01:30"),
    ("weekly mon 08:00", "Europe/Berlin", "2026-03-04 12:00", "2026-03-02 07:00", "2026-02-23 07:00",
     "2026-03-09 07:00"),
    ("weekly mon 08:00", "Europe/Berlin", "2026-03-02 07:00", "2026-03-02 07:00", "2026-02-23 07:00",
     "2026-03-09 07:00"),
    # The week of the spring change is an hour short.
    ("weekly mon 08:00", "Europe/Berlin", "2026-03-30 06:00", "2026-03-30 06:00", "2026-03-23 07:00",
     "2026-04-06 06:00"),
    ("weekly sun 23:00", "UTC", "2026-03-07 12:00", "2026-03-01 23:00", "2026-02-22 23:00", "2026-03-08 23:00"),
    ("hourly", "UTC", "2026-03-02 09:59", "2026-03-02 09:00", "2026-03-02 08:00", "2026-03-02 10:00"),
    # The second 02:00-03:00 of the autumn night is an hour of its own.
    ("hourly", "Europe/Berlin", "2026-10-25 01:30", "2026-10-25 01:00", "2026-10-25 00:00", "2026-10-25 02:00"),
    ("hourly", "Europe/Berlin", "2026-03-29 01:10", "2026-03-29 01:00", "2026-03-29 00:00", "2026-03-29 02:00"),
    # Whole local hours in a zone half an hour off UTC.
    ("hourly", "Asia/Kolkata", "2026-03-02 09:10", "2026-03-02 08:30", "2026-03-02 07:30", "2026-03-02 09:30"),
]  # fmt: skip


@pytest.mark.parametrize(("text", "zone", "now", "due", "start", "following"), DUE_TIMES)
def test_due_times_follow_the_local_clock_across_daylight_saving_changes(
    text: str, zone: str, now: str, due: str, start: str, following: str
) -> None:
    schedule, tz = values.schedule(text), ZoneInfo(zone)
    assert sch.current_due(schedule, tz, at(now)) == at(due)
    assert sch.period(schedule, tz, at(due)) == sch.Period(at(start), at(due))
    assert sch.next_due(schedule, tz, at(now)) == at(following)


DECISIONS = [
    # (schedule, time zone, now UTC, last sent due time or None, reason, period end)
    ("daily 08:00", "UTC", "2026-03-02 08:00", None, sch.Reason.DUE, "2026-03-02 08:00"),
    ("daily 08:00", "UTC", "2026-03-02 08:00", "2026-03-01 08:00", sch.Reason.DUE, "2026-03-02 08:00"),
    ("daily 08:00", "UTC", "2026-03-02 08:01", "2026-03-02 08:00", sch.Reason.SENT, "2026-03-02 08:00"),
    # Down at 08:00, started at 14:00: still within half the day, so it goes out late.
    ("daily 08:00", "UTC", "2026-03-02 14:00", "2026-03-01 08:00", sch.Reason.DUE, "2026-03-02 08:00"),
    ("daily 08:00", "UTC", "2026-03-02 20:00", "2026-03-01 08:00", sch.Reason.DUE, "2026-03-02 08:00"),
    ("daily 08:00", "UTC", "2026-03-02 20:01", "2026-03-01 08:00", sch.Reason.MISSED, "2026-03-02 08:00"),
    # Half of the 23-hour day that starts at Saturday's 08:00 in Berlin is 11.5 hours.
    ("daily 08:00", "Europe/Berlin", "2026-03-28 18:30", None, sch.Reason.DUE, "2026-03-28 07:00"),
    ("daily 08:00", "Europe/Berlin", "2026-03-28 18:31", None, sch.Reason.MISSED, "2026-03-28 07:00"),
    ("hourly", "UTC", "2026-03-02 09:30", "2026-03-02 08:00", sch.Reason.DUE, "2026-03-02 09:00"),
    ("hourly", "UTC", "2026-03-02 09:31", "2026-03-02 08:00", sch.Reason.MISSED, "2026-03-02 09:00"),
    ("weekly mon 08:00", "UTC", "2026-03-05 08:00", "2026-02-23 08:00", sch.Reason.DUE, "2026-03-02 08:00"),
    ("weekly mon 08:00", "UTC", "2026-03-06 08:00", "2026-02-23 08:00", sch.Reason.MISSED, "2026-03-02 08:00"),
    ("weekly mon 08:00", "UTC", "2026-03-06 08:00", "2026-03-02 08:00", sch.Reason.SENT, "2026-03-02 08:00"),
]


@pytest.mark.parametrize(("text", "zone", "now", "last", "reason", "end"), DECISIONS)
def test_a_report_is_due_once_per_period_and_late_only_within_half_of_it(
    text: str, zone: str, now: str, last: str | None, reason: sch.Reason, end: str
) -> None:
    decision = sch.decide(values.schedule(text), ZoneInfo(zone), at(now), at(last) if last else None)
    assert (decision.reason, decision.period.end) == (reason, at(end))


def test_the_reports_due_now_are_those_not_yet_sent_for_their_current_period() -> None:
    daily = ReportConfig("daily", values.schedule("daily 08:00"), BERLIN)
    hourly = ReportConfig("hourly", values.schedule("hourly"))
    weekly = ReportConfig("weekly", values.schedule("weekly mon 08:00"))
    now = at("2026-03-04 07:10")  # a Wednesday, 08:10 in Berlin
    sent = {"hourly": at("2026-03-04 07:00"), "weekly": at("2026-03-02 08:00")}
    assert sch.due_reports([daily, hourly, weekly], sent, now) == [
        (daily, sch.Period(at("2026-03-03 07:00"), at("2026-03-04 07:00")))
    ]
    assert sch.next_check([daily, hourly, weekly], now) == at("2026-03-04 08:00")
    assert sch.next_check([], now) is None


def test_a_naive_now_is_refused() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        sch.current_due(values.schedule("hourly"), BERLIN, datetime(2026, 3, 2, 9))  # noqa: DTZ001


@pytest.mark.parametrize(
    ("text", "shown"),
    [("hourly", "hourly"), ("Daily 8:00", "daily 08:00"), ("weekly Monday 08:00", "weekly mon 08:00"),
     ("weekly sun 23:59", "weekly sun 23:59")],
)  # fmt: skip
def test_schedules_are_read_in_their_usual_spellings(text: str, shown: str) -> None:
    assert str(values.schedule(text)) == shown


@pytest.mark.parametrize(
    ("text", "message"),
    [("daily", "expected"), ("daily 25:00", "time of day"), ("weekly 08:00", "expected"),
     ("weekly funday 08:00", "unknown day 'funday'"), ("monthly 1 08:00", "expected"), ("hourly 5", "expected")],
)  # fmt: skip
def test_a_bad_schedule_says_what_is_expected(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        values.schedule(text)


# -- content ---------------------------------------------------------------------------------------------------

T0 = at("2026-03-02 08:00")


def period_of(name: str, **kw: Any) -> AccountPeriod:
    base: dict[str, Any] = {
        "account": name, "as_of": T0, "equity": Decimal(1000), "equity_before": Decimal(1000),
        "unrealized_pnl": Decimal(0), "lowest_equity": Decimal(1000), "deepest_drawdown_pct": Decimal(0),
        "worst_distance_pct": None, "lowest_distance_pct": None,
    }  # fmt: skip
    return AccountPeriod(**{**base, **kw})


def test_the_worst_accounts_come_first_and_the_total_counts_only_accounts_known_at_both_ends() -> None:
    data = [
        period_of("calm"),
        period_of("deep", deepest_drawdown_pct=Decimal(12)),
        period_of("close", worst_distance_pct=Decimal(9), lowest_distance_pct=Decimal("4.5")),
        period_of("closer", worst_distance_pct=Decimal(20), lowest_distance_pct=Decimal("3.1")),
        period_of("silent", as_of=None, equity=None, equity_before=None, unrealized_pnl=None, lowest_equity=None),
        period_of("new", equity=Decimal(500), equity_before=None, alerts_fired=2, alerts_resolved=1),
        period_of("grown", equity=Decimal("1234.5"), unrealized_pnl=Decimal(-7), unreachable=timedelta(minutes=5)),
    ]
    report = build_report("daily", T0 - timedelta(days=1), T0, data, portfolio=(1, 0))
    assert [a.account for a in report.accounts] == ["silent", "closer", "close", "deep", "calm", "grown", "new"]
    assert report.equity == Decimal("5734.5")
    # "new" had no equity at the start: its 500 is no gain.
    assert report.change is not None and report.change.absolute == Decimal("234.5")
    assert report.change.pct == Decimal("234.5") / Decimal(5000) * 100
    assert (report.alerts_fired, report.alerts_resolved, report.unreachable_accounts) == (3, 1, 1)
    assert report.lowest_distance_pct == Decimal("3.1")
    grown = next(a for a in report.accounts if a.account == "grown")
    assert grown.change is not None and (grown.change.absolute, grown.change.pct) == (Decimal("234.5"),
                                                                                      Decimal("23.45"))  # fmt: skip


@pytest.mark.parametrize(
    ("value", "sign", "shown"),
    [("1234567.891", False, "1,234,567.89"), ("-1234.5", False, "-1,234.50"), ("0.005", True, "+0.00"),
     ("-0.004", True, "+0.00"), ("12.345", True, "+12.34"), ("-99999.999", True, "-100,000.00"), (None, False, "–")],
)  # fmt: skip
def test_money_is_shown_with_thousands_separators_and_cents(value: str | None, sign: bool, shown: str) -> None:
    assert money(Decimal(value) if value is not None else None, sign=sign) == shown


def test_percentages_and_durations_read_plainly() -> None:
    shown_pct = (percent(Decimal("-1.005"), sign=True), percent(Decimal("12.3456")), percent(None))
    assert shown_pct == ("-1.00%", "12.35%", "–")
    shown = [duration(timedelta(seconds=s)) for s in (0, 20, 2700, 3 * 3600 + 300, 2 * 86400 + 4 * 3600)]
    assert shown == ["0m", "<1m", "45m", "3h 05m", "2d 4h"]


# -- templates -------------------------------------------------------------------------------------------------


def many(n: int) -> list[AccountPeriod]:
    return [
        period_of(
            f"account-with-a-longish-name-{i:03d}",
            equity=Decimal(100000 + i),
            equity_before=Decimal(100000),
            worst_distance_pct=Decimal(50),
            lowest_distance_pct=Decimal(i + 1),
            alerts_fired=i % 3,
            unreachable=timedelta(minutes=i % 7),
        )
        for i in range(n)
    ]


def test_the_chat_form_of_500_accounts_fits_telegram_with_the_worst_first_and_says_how_many_more() -> None:
    rendered = ReportMessages(None).render(build_report("daily", T0 - timedelta(days=1), T0, many(500)), BERLIN)
    assert len(rendered.body) < 4096
    lines = [line for line in rendered.body.splitlines() if line.startswith("account-with")]
    assert [line.split(":")[0] for line in lines] == [f"account-with-a-longish-name-{i:03d}" for i in range(len(lines))]
    assert f"and {500 - len(lines)} more" in rendered.body
    assert "Total: 50,124,750.00 USDT, +124,750.00 (+0.25%)" in rendered.body
    assert "2026-03-01 09:00 to 2026-03-02 09:00 (Europe/Berlin)" in rendered.body
    # Every account is in the email.
    assert all(f"account-with-a-longish-name-{i:03d}\n" in rendered.body_long for i in range(500))
    assert rendered.title == "daily: 500 accounts, equity 50,124,750.00 USDT (+0.25%)"


def test_the_chat_form_shows_each_accounts_figures() -> None:
    data = [
        period_of("alpha", equity=Decimal("104823.8"), equity_before=Decimal("100000"), worst_distance_pct=Decimal(18),
                  lowest_distance_pct=Decimal("6.25"), deepest_drawdown_pct=Decimal("3.5"), alerts_fired=2,
                  alerts_resolved=1, unreachable=timedelta(minutes=12)),
        period_of("beta", as_of=None, equity=None, equity_before=None, unrealized_pnl=None, lowest_equity=None),
    ]  # fmt: skip
    body = ReportMessages(None).render(build_report("daily", T0 - timedelta(days=1), T0, data)).body
    assert "beta: no data in this period\nalpha: 104,823.80 (+4.82%), liq 18.00% (low 6.25%), dd 3.50%, " \
           "alerts 2/1, down 12m" in body  # fmt: skip
    assert "and" not in body.split("alpha")[1]


def test_an_account_first_read_inside_the_period_shows_its_change_since_that_first_read() -> None:
    first = T0 - timedelta(hours=3)
    data = [period_of("fresh", equity=Decimal(1100), equity_before=Decimal(1000), first_read_at=first)]
    rendered = ReportMessages(None).render(build_report("daily", T0 - timedelta(days=1), T0, data))
    assert "fresh: 1,100.00 (+10.00% since first read 2026-03-02 05:00)" in rendered.body
    assert "Total: 1,100.00 USDT, +100.00 (+10.00%) since first read 2026-03-02 05:00;" in rendered.body
    assert "Change:                 +100.00 USDT (+10.00%) since first read 2026-03-02 05:00" in rendered.body_long


def test_a_total_mixing_accounts_known_at_the_start_and_first_read_later_says_so() -> None:
    first = T0 - timedelta(hours=3)
    data = [period_of("old", equity=Decimal(1100)), period_of("fresh", equity_before=Decimal(500), first_read_at=first)]
    rendered = ReportMessages(None).render(build_report("daily", T0 - timedelta(days=1), T0, data))
    assert "Total: 2,100.00 USDT, +600.00 (+40.00%) (1 of the accounts since their first read);" in rendered.body
    zero = [period_of("emptied", equity=Decimal(5), equity_before=Decimal(0))]  # a change, but no percentage
    assert ReportMessages(None).render(build_report("daily", T0 - timedelta(days=1), T0, zero)).title == (
        "daily: 1 account, equity 5.00 USDT"
    )


def test_a_title_without_any_earlier_figure_says_no_change_rather_than_a_dash() -> None:
    data = [period_of("new", equity_before=None)]
    rendered = ReportMessages(None).render(build_report("daily", T0 - timedelta(days=1), T0, data))
    assert rendered.title == "daily: 1 account, equity 1,000.00 USDT"


def test_report_templates_in_the_users_folder_replace_the_built_in_ones(tmp_path: Path) -> None:
    (tmp_path / "report_title.j2").write_text("{{ name }} for the desk: {{ total.equity }}")
    rendered = ReportMessages(tmp_path).render(build_report("weekly", T0 - timedelta(days=7), T0, many(2)))
    assert rendered.title == "weekly for the desk: 200,001.00"
    assert "Total: 200,001.00 USDT" in rendered.body  # the built-in short form, not overridden


def test_a_report_template_failing_at_run_time_falls_back_to_the_built_in_one(tmp_path: Path) -> None:
    (tmp_path / "report_short.j2").write_text("{{ 1 / 0 }}")
    rendered = ReportMessages(tmp_path).render(build_report("daily", T0 - timedelta(days=1), T0, many(1)))
    assert rendered.body.startswith("daily, 2026-03-01 08:00 to 2026-03-02 08:00 (UTC)")


def test_a_broken_report_template_is_a_config_error_naming_its_line(tmp_path: Path) -> None:
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "report_long.j2").write_text("ok\n{% for a in accounts %}\n")
    path = tmp_path / "accounts.toml"
    path.write_text('[alerts]\ntemplates = "mine"\n[[accounts]]\nname = "a"\napi_key = "k"\napi_secret = "s"\n'
                    'passphrase = "p"\n')  # fmt: skip
    with pytest.raises(ConfigError, match=r":2: alerts\.templates: .*report_long\.j2:\d+:"):
        load_config(path, env={})


# -- the database ----------------------------------------------------------------------------------------------

START = at("2026-03-01 08:00")
END = at("2026-03-02 08:00")


def position(mark: str, liq: str) -> Position:
    return Position(
        product_type="USDT-FUTURES", symbol="BTCUSDT", margin_coin="USDT", side=Side.LONG,
        position_mode=PositionMode.ONE_WAY, margin_mode=MarginMode.ISOLATED, size=Decimal("0.5"),
        entry_price=Decimal("59000"), mark_price=Decimal(mark), liquidation_price=Decimal(liq), margin=Decimal(3000),
        leverage=Decimal(10), unrealized_pnl=Decimal("12.5"), margin_ratio=Decimal("0.01"),
    )  # fmt: skip


def ok(account: str, moment: datetime, equity: str, liq: str | None = None) -> PollOutcome:
    snapshot = AccountSnapshot(
        account=account, taken_at=moment, mode=AccountMode.CLASSIC, spot=(), spot_usdt=Decimal(0),
        futures=(FuturesAccount("USDT-FUTURES", "USDT", Decimal(equity), Decimal(equity), Decimal(0), Decimal(0),
                                Decimal("12.5"), None),),
        positions=(position("60000", liq),) if liq else (),
    )  # fmt: skip
    return PollOutcome(account, moment - timedelta(seconds=1), moment, snapshot=snapshot, requests=3)


def failed(account: str, moment: datetime) -> PollOutcome:
    return PollOutcome(account, moment, moment + timedelta(seconds=1), error_code="timeout", error_message="timeout")


def fill(store: Store) -> None:
    """alpha: 1000 before the period, up to 1200, down to 900 (25% below the peak), 1100 at the end; its
    position comes within 5 % of liquidation. beta: unreachable from 10:00 to 10:30 and from 07:50 to the end."""
    h = timedelta(hours=1)
    store.write_polls([ok("alpha", START - timedelta(minutes=5), "1000", liq="40000"),
                       ok("beta", START - timedelta(minutes=5), "500")])  # fmt: skip
    store.write_polls([
        ok("alpha", START + h, "1200", liq="45000"),
        ok("alpha", START + 3 * h, "900", liq="57000"),
        ok("alpha", START + 20 * h, "1100", liq="48000"),
        ok("beta", START + h, "510"),
        failed("beta", START + 2 * h),
        failed("beta", START + 2 * h + timedelta(minutes=10)),
        ok("beta", START + 2 * h + timedelta(minutes=30), "520"),
        failed("beta", END - timedelta(minutes=10)),
    ])  # fmt: skip
    store.write_polls([ok("alpha", END + h, "5000")])  # after the period: not in it


def test_a_periods_figures_come_from_what_the_poller_stored(store: Store) -> None:
    fill(store)
    data = stored.period_data(store.engine, ["alpha", "beta", "never-seen"], START, END)
    alpha, beta, never = data.accounts
    assert (alpha.equity_before, alpha.equity, alpha.lowest_equity) == (Decimal(1000), Decimal(1100), Decimal(900))
    assert alpha.as_of == START + timedelta(hours=20)
    assert alpha.deepest_drawdown_pct == Decimal(25)
    assert alpha.worst_distance_pct == Decimal(20)  # (60000 - 48000) / 60000
    assert alpha.lowest_distance_pct == Decimal(5)
    assert alpha.unrealized_pnl == Decimal("12.5")
    assert alpha.unreachable == timedelta(0)
    assert (beta.equity_before, beta.equity, beta.worst_distance_pct) == (Decimal(500), Decimal(520), None)
    # From the failed read to the start of the next good one (a second before it finished), then to the end.
    assert beta.unreachable == timedelta(minutes=30, seconds=-1) + timedelta(minutes=10)
    assert never == AccountPeriod("never-seen", None, None, None, None, None, None, None, None)


def test_an_account_first_read_inside_the_period_counts_from_its_first_reading(store: Store) -> None:
    h = timedelta(hours=1)
    store.write_polls([ok("gamma", START + 2 * h, "300"), ok("gamma", START + 5 * h, "330")])
    store.write_polls([ok("delta", START - h, "50"), ok("delta", START + h, "60")])
    gamma, delta = stored.period_data(store.engine, ["gamma", "delta"], START, END).accounts
    assert (gamma.equity_before, gamma.first_read_at, gamma.equity) == (Decimal(300), START + 2 * h, Decimal(330))
    assert (delta.equity_before, delta.first_read_at) == (Decimal(50), None)  # known at the start


def test_rolled_up_hours_give_the_same_figures_once_raw_points_are_pruned(store: Store) -> None:
    fill(store)
    before = stored.period_data(store.engine, ["alpha"], START, END).accounts[0]
    report = store.maintain(
        END + timedelta(days=8), raw_retention=timedelta(days=7), hourly_retention=timedelta(days=400)
    )
    assert report.raw_rows_deleted > 0
    after = stored.period_data(store.engine, ["alpha"], START, END).accounts[0]
    assert (after.equity_before, after.lowest_equity, after.deepest_drawdown_pct, after.lowest_distance_pct) == (
        before.equity_before, before.lowest_equity, before.deepest_drawdown_pct, before.lowest_distance_pct
    )  # fmt: skip
    # The end's figures come from the last rolled-up hour (04:00-05:00 UTC on the 2nd, the 20th hour).
    assert (after.equity, after.unrealized_pnl, after.worst_distance_pct) == (
        before.equity,
        before.unrealized_pnl,
        before.worst_distance_pct,
    )
    assert after.as_of == START + timedelta(hours=21)


def test_alerts_fired_resolved_and_liquidated_in_the_period_are_counted(store: Store) -> None:
    store.write_polls([ok("alpha", START, "1000")])

    def alert(key: str, account: str | None, state: State, subject: str = "") -> Alert:
        return Alert(key=key, rule=key, account=account, subject=subject or key, state=state, updated_at=START)

    def moved(key: str, moment: datetime, old: State, new: State) -> Transition:
        return Transition(key, moment, old, new, "warning", None, "")

    h = timedelta(hours=1)
    batch = AlertBatch(END, {
        "a": alert("a", "alpha", State.RESOLVED), "b": alert("b", "alpha", State.LIQUIDATED),
        "p": alert("p", None, State.FIRING),
        # two other rules' alerts about b's position, liquidated with it (as they were before one alert carried
        # a liquidation): one position, one liquidation
        "c": alert("c", "alpha", State.LIQUIDATED, "b"), "d": alert("d", "alpha", State.LIQUIDATED, "b"),
        # another rule's alert about b's position, ended with it as resolved (lifecycle.absorbed): not a resolution
        "e": alert("e", "alpha", State.RESOLVED, "b"),
    }, [
        moved("a", START - h, State.PENDING, State.FIRING),  # before the period
        moved("a", START + h, State.RESOLVED, State.FIRING),
        moved("a", START + 2 * h, State.FIRING, State.FIRING),  # escalated: no new firing
        moved("a", START + 3 * h, State.FIRING, State.RESOLVED),
        moved("b", START + 4 * h, State.PENDING, State.FIRING),
        moved("b", START + 5 * h, State.FIRING, State.LIQUIDATED),
        moved("c", START + 5 * h, State.FIRING, State.LIQUIDATED),
        moved("d", START + 5 * h, State.PENDING, State.LIQUIDATED),
        moved("e", START + 4 * h, State.PENDING, State.FIRING),
        moved("e", START + 5 * h, State.FIRING, State.RESOLVED),
        moved("p", START + 6 * h, State.PENDING, State.FIRING),
        moved("a", END, State.RESOLVED, State.FIRING),  # the next period's
    ])  # fmt: skip
    store.alerts.save(batch)
    data = stored.period_data(store.engine, ["alpha"], START, END)
    alpha = data.accounts[0]
    assert (alpha.alerts_fired, alpha.alerts_resolved, alpha.liquidations) == (3, 1, 1)
    assert data.portfolio == (1, 0)


def test_a_report_is_claimed_once_and_its_last_period_remembered(store: Store) -> None:
    with store.engine.begin() as connection:
        assert reportsent.claim(connection, "daily", END, START, "node-a", END)
        assert not reportsent.claim(connection, "daily", END, START, "node-b", END)  # the transaction goes on
        assert reportsent.claim(connection, "hourly", END, END - timedelta(hours=1), "node-b", END)
    with store.engine.begin() as connection:
        assert reportsent.claim(connection, "daily", END - timedelta(days=1), START - timedelta(days=1), "node-a", END)
    assert reportsent.last_sent(store.engine) == {"daily": END, "hourly": END}
    assert reportsent.last_sent(store.engine, ["hourly"]) == {"hourly": END}


def test_a_claim_rolled_back_with_its_messages_leaves_the_report_unsent(store: Store) -> None:
    with pytest.raises(RuntimeError), store.engine.begin() as connection:
        assert reportsent.claim(connection, "daily", END, START, "node-a", END)
        raise RuntimeError("queuing the messages failed")
    assert reportsent.last_sent(store.engine) == {}


def test_of_processes_racing_for_a_report_exactly_one_sends_it(db_url: str) -> None:
    migrations.upgrade(db_url)
    stores = [Store(db_url) for _ in range(6)]
    won: list[str] = []
    barrier = threading.Barrier(len(stores))

    def race(index: int) -> None:
        barrier.wait()
        for attempt in range(3):  # each tries again, as a process would at its next check
            try:
                with stores[index].engine.begin() as connection:
                    if reportsent.claim(connection, "daily", END, START, f"node-{index}", END):
                        won.append(f"node-{index}")
                break
            except Exception:  # SQLite may answer "database is locked" under contention: retried
                if attempt == 2:
                    raise

    threads = [threading.Thread(target=race, args=(i,)) for i in range(len(stores))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for s in stores:
        s.close()
    assert len(won) == 1


# -- the terminal --------------------------------------------------------------------------------------------


def config_for(tmp_path: Path, sim: Sim, names: list[str], db_url: str, extra: str = "") -> Any:
    accounts = "".join(
        f'[[accounts]]\nname = "{n}"\napi_key = "k"\napi_secret = "s"\npassphrase = "p"\ntags = ["{t}"]\n'
        for n, t in zip(names, ["fund-a", "fund-b"] * len(names), strict=False)
    )
    path = tmp_path / "accounts.toml"
    path.write_text(f'[monitor]\ndatabase_url = "{db_url}"\nbitget_url = "{sim.url}"\n{extra}{accounts}')
    return load_config(path, env={})


async def test_the_terminal_report_prints_the_simulators_reads_as_text_and_json(
    make_sim: SimFactory, store: Store, db_url: str, tmp_path: Path
) -> None:
    sim = await make_sim(limits=False)  # the same accounts read twice within a second
    futures = [a for a in sim.world.accounts.values() if a.positions][:2]
    clock = ManualClock(START - timedelta(minutes=1))
    snapshots: list[AccountSnapshot] = []
    for step in (timedelta(0), timedelta(hours=5, minutes=1)):
        clock.advance(step)
        moment = clock.now()
        for account in futures:
            snapshot = await read_snapshot(sim.client(account), ("spot", "USDT-FUTURES"), clock)
            snapshots.append(snapshot)
            store.write_polls([PollOutcome(account.name, moment, moment, snapshot=snapshot, requests=1)])
    config = config_for(tmp_path, sim, [a.name for a in futures], db_url,
                        '[[reports]]\nname = "fund-a daily"\nschedule = "daily 09:00"\ntimezone = "Europe/Berlin"\n'
                        'tags = ["fund-a"]\n')  # fmt: skip
    now = START + timedelta(hours=6)
    out = json.loads(render_report(config, store, now, since=timedelta(hours=24), as_json=True))
    latest = snapshots[len(futures) :]
    assert [a["name"] for a in out["accounts"]] == sorted(
        (s.account for s in latest),
        key=lambda n: next(s.worst_liquidation_distance_pct for s in latest if s.account == n) or Decimal("Infinity"),
    )
    total = sum((s.equity_usdt for s in latest), Decimal(0))
    assert Decimal(out["total"]["equity_usdt"]) == total
    for account in out["accounts"]:
        snap = next(s for s in latest if s.account == account["name"])
        assert Decimal(account["equity_usdt"]) == snap.equity_usdt
        assert Decimal(account["unrealized_pnl_usdt"]) == snap.unrealized_pnl_usdt
        assert account["liquidation_distance_pct"] == (
            format(snap.worst_liquidation_distance_pct, "f") if snap.worst_liquidation_distance_pct is not None
            else None
        )  # fmt: skip
    text = render_report(config, store, now, since=timedelta(hours=24))
    assert text.startswith(f"Report: 2 accounts, equity {money(total)} USDT")
    assert all(f"\n{a.name}\n  Equity:" in text for a in futures)
    only_a = json.loads(render_report(config, store, now, report="fund-a daily", as_json=True))
    assert [a["name"] for a in only_a["accounts"]] == [futures[0].name]
    assert "(Europe/Berlin)" in render_report(config, store, now, report="fund-a daily")
    with pytest.raises(KeyError, match="no report named 'nope' \\(reports: fund-a daily\\)"):
        render_report(config, store, now, report="nope")


def test_a_report_config_selects_accounts_like_a_rule() -> None:
    report = ReportConfig("r", values.schedule("hourly"), accounts=("fund-*",), tags=("x",))
    assert report.selects("fund-1", ("x", "y"))
    assert not report.selects("fund-1", ("y",))
    assert not report.selects("other", ("x",))
    assert replace(report, tags=()).selects("fund-2", ())


# -- through the outbox --------------------------------------------------------------------------------------


async def test_a_due_report_goes_through_the_outbox_to_chat_and_email_once(
    store: Store, db_url: str, tmp_path: Path, sink: Sink, smtp: Mailbox
) -> None:
    """What the coming scheduler task does, step by step: which reports are due, their data, their messages,
    the claim and the outbox in one transaction, and the sender delivering them like alerts."""
    from monitor.alerts.sender import Sender

    fill(store)
    accounts = "".join(
        f'[[accounts]]\nname = "{n}"\napi_key = "k"\napi_secret = "s"\npassphrase = "p"\n' for n in ("alpha", "beta")
    )
    path = tmp_path / "accounts.toml"
    path.write_text(
        f'[monitor]\ndatabase_url = "{db_url}"\n[channels]\nchat = ["{sink.url()}"]\nmail = ["{smtp.url()}"]\n'
        '[[reports]]\nname = "daily"\nschedule = "daily 09:00"\ntimezone = "Europe/Berlin"\n' + accounts
    )
    config = load_config(path, env={})
    now = END + timedelta(hours=2)  # the process started two hours late
    ((report, period),) = sch.due_reports(config.reports, reportsent.last_sent(store.engine), now)
    assert period == sch.Period(START, END)
    from monitor.reports.render import gather

    rendered = ReportMessages(config.alerts.templates).render(gather(config, store, period.start, period.end, report),
                                                              report.timezone)  # fmt: skip
    messages = [(c, rendered.title, rendered.body, rendered.body_long) for c in report.channels]
    assert reportsent.queue(store.engine, report.name, period.end, period.start, "node-a", now, messages)
    other = Store(db_url)  # a second process on the same database
    try:
        assert not reportsent.queue(other.engine, report.name, period.end, period.start, "node-b", now, messages)
    finally:
        other.close()
    assert sch.due_reports(config.reports, reportsent.last_sent(store.engine), now) == []
    sender = Sender(config, store, ManualClock(now), "node-a")
    try:
        while await sender.send_due():
            pass
    finally:
        sender.close()
    (chat,) = sink.received
    assert chat["title"] == "daily: 2 accounts, equity 1,620.00 USDT (+8.00%)"
    assert "alpha: 1,100.00 (+10.00%), liq 20.00% (low 5.00%), dd 25.00%" in chat["message"]
    assert "beta: 520.00 (+4.00%), dd 0.00%, down 39m" in chat["message"]
    (mail,) = smtp.messages
    (body,) = [p.get_payload(decode=True).decode() for p in mail.walk() if p.get_content_type() == "text/plain"]
    assert "Period: 2026-03-01 09:00 to 2026-03-02 09:00 (Europe/Berlin)" in body
    assert "  Deepest drawdown:       25.00%" in body
