"""A liquidation is never announced as "resolved": positions that disappear are judged against the public mark
price read afterwards, through the real simulator, engine, database and apprise to a local sink."""

from __future__ import annotations

import asyncio
import json
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from monitor.alerts.departures import LastSeen, judge
from monitor.clock import ManualClock, SystemClock
from monitor.config import load_config
from monitor.domain import AccountSnapshot, MarginMode, Position, PositionMode, Side
from monitor.exchange.bitget import endpoints as ep
from monitor.exchange.bitget.market import MarkPrices
from monitor.exchange.bitget.ratelimit import IpBudget
from monitor.exchange.bitget.reader import read_snapshot
from monitor.simulator.world import build_world
from monitor.store import migrations
from monitor.store.alertrows import NOTIFICATION
from monitor.store.alerts import ALERT, TRANSITION
from monitor.store.repository import Store
from tests.conftest import Sim, SimFactory, Sink
from tests.test_alerts import ACCOUNT, T0, Rig, rig_for, rules

D = Decimal


def last(side: str = "long", mark: str = "95", liquidation: str = "90", hedge: bool = False) -> LastSeen:
    position = Position(
        "USDT-FUTURES", "BTCUSDT", "USDT", Side(side), PositionMode.HEDGE if hedge else PositionMode.ONE_WAY,
        MarginMode.CROSSED if hedge else MarginMode.ISOLATED, D(1), D(100), D(mark), D(liquidation), D(10), D(10),
        D(0),
    )  # fmt: skip
    seen = LastSeen.of(position)
    assert seen is not None
    return seen


@pytest.mark.parametrize(
    ("seen", "mark", "verdict"),
    [
        (last(), "89", "liquidated: mark 89 is past its liquidation price 90 (last read: mark 95, 5.26% away)"),
        (last(), "90", "liquidated: mark 90 is past its liquidation price 90 (last read: mark 95, 5.26% away)"),
        (
            last(),
            "91",
            "probably liquidated: mark 91 is 1.10% from its last liquidation price 90 and moved toward it from 95",
        ),
        (last(), "95", "position closed"),  # critical, but the mark did not move toward it: the trader closed it
        (
            last(),
            "93",
            "probably liquidated: mark 93 is 3.23% from its last liquidation price 90 and moved toward it from 95",
        ),
        (last(mark="120"), "97", "position closed"),  # 25 % away at the last read: not near enough to count
        (last(mark="100"), "93", "position closed"),  # 10 % away at the last read, 3.2 % now: still not
        (last(mark="89"), "92", "liquidated: the last read had the mark 89 past its liquidation price 90"),
        (
            last("short", "100", "110"),
            "111",
            "liquidated: mark 111 is past its liquidation price 110 (last read: mark 100, 10.00% away)",
        ),
        (last("short", "100", "110"), "90", "position closed"),
        # a crossed hedge pair's shared price above the long's mark: reached by the mark going up
        (
            last("long", "100", "104", hedge=True),
            "105",
            "liquidated: mark 105 is past its liquidation price 104 (last read: mark 100, 4.00% away)",
        ),
        (last("long", "100", "104", hedge=True), "99", "position closed"),
        (
            last(),
            None,
            "probably liquidated: the last read had it 5.26% from its liquidation price 90 (mark 95); "
            "mark unavailable (HTTP 500)",
        ),
        (
            last(mark="89"),
            None,
            "liquidated: the last read had the mark 89 past its liquidation price 90; mark unavailable (HTTP 500)",
        ),
        (last(mark="120"), None, "position closed (mark unavailable (HTTP 500))"),
    ],
)
def test_a_position_that_disappeared_is_judged_on_the_mark_read_since(
    seen: LastSeen, mark: str | None, verdict: str
) -> None:
    result = judge(seen, D(mark) if mark else None, D(7), "HTTP 500" if mark is None else "")
    assert result.reason == verdict
    assert result.liquidated is ("liquidated" in verdict)
    if result.liquidated:
        assert result.summary == f"BTCUSDT {seen.side} {verdict}"


def test_a_position_without_a_liquidation_price_cannot_be_judged() -> None:
    p = Position("USDT-FUTURES", "BTCUSDT", "USDT", Side.LONG, PositionMode.ONE_WAY, MarginMode.CROSSED, D(1),
                 D(100), D(100), D("-5000"), D(10), D(10), D(0))  # fmt: skip
    assert LastSeen.of(p) is None


# -- through the simulator ---------------------------------------------------------------------------------


def world(unified: bool, side: str, mode: str) -> Any:
    """One account, one BTCUSDT position at mark 100. Isolated: 9 % from liquidation (a warning). Crossed: 19 %
    away (no alert: what a gap between two reads can hide)."""
    position = {"product_type": "USDT-FUTURES", "symbol": "BTCUSDT", "side": side, "margin_mode": mode,
                "size": "10", "entry": "100", "leverage": "10", "margin": "100"}  # fmt: skip
    return build_world({
        "symbols": [{"product_type": "USDT-FUTURES", "symbol": "BTCUSDT", "mark": "100", "tick_size": "0.01",
                     "maintenance_rate": "0.01"}],
        "accounts": [{"name": "alpha", "api_key": "bg_alpha", "api_secret": "s", "passphrase": "p",
                      "unified": unified, "products": ["USDT-FUTURES"], "positions": [position],
                      "wallets": [{"product_type": "USDT-FUTURES", "coin": "USDT",
                                   "balance": "1000" if mode == "isolated" else "200"}]}],
    })  # fmt: skip


@pytest.fixture
async def started(make_sim: SimFactory, sink: Sink, db_url: str, tmp_path: Path) -> Any:
    """The simulator on one case's world, and an engine, sender and database (test_alerts' rig) whose engine
    reads marks from it."""
    stores = []

    async def start(*case: Any) -> tuple[Sim, Rig, Any]:
        sim = await make_sim(world=world(*case))
        path = tmp_path / "accounts.toml"
        text = rules(sink).replace('for = "1m"', 'for = "0s"')
        path.write_text(f'[monitor]\ndatabase_url = "{db_url}"\n{text}\n[[accounts]]\n' + ACCOUNT.format(name="alpha"))
        await asyncio.to_thread(migrations.upgrade, db_url)
        marks = MarkPrices(sim.session, sim.url, IpBudget(600, 60.0, SystemClock()), SystemClock())
        rig = await rig_for(load_config(path, env={}), ManualClock(T0), marks)
        stores.append(rig)
        client = sim.client(sim.account("alpha"))

        async def read() -> AccountSnapshot:
            return await read_snapshot(client, ("USDT-FUTURES",), SystemClock())

        return sim, rig, read

    yield start
    for rig in stores:
        rig.store.close()


def transitions(rig: Rig) -> list[tuple[str, str, str]]:
    query = (
        select(TRANSITION.c.from_state, TRANSITION.c.to_state, TRANSITION.c.reason)
        .join(ALERT, ALERT.c.id == TRANSITION.c.alert_id)
        .order_by(TRANSITION.c.id)
    )
    with rig.store.engine.connect() as connection:
        return [tuple(row) for row in connection.execute(query)]


@pytest.mark.parametrize("unified", [False, True], ids=["classic", "unified"])
@pytest.mark.parametrize("side", ["long", "short"])
@pytest.mark.parametrize("mode", ["isolated", "crossed"])
async def test_a_position_liquidated_between_two_reads_is_announced_critical_as_liquidated(
    started: Any, sink: Sink, unified: bool, side: str, mode: str
) -> None:
    sim, rig, read = await started(unified, side, mode)
    await rig.judge("alpha", *(await read()).positions)
    alerting = mode == "isolated"
    assert len(sink.received) == int(alerting)  # isolated: a warning; crossed: quiet until it is gone
    rig.clock.advance(30)
    mark = "70" if side == "long" else "130"
    await sim.control("POST", "/_sim/price", {"symbol": "BTCUSDT", "product_type": "USDT-FUTURES", "mark": mark})
    gone = await read()
    assert gone.positions == () and sim.account("alpha").liquidations == 1
    await rig.judge("alpha", *gone.positions)
    title = sink.titles()[-1]
    assert title.startswith(f"[LIQUIDATED] alpha: BTCUSDT {side} liquidated: mark {mark} is past its liquidation ")
    assert sink.received[-1]["type"] == "failure"  # apprise's red, never a green "resolved"
    assert "RESOLVED" not in " ".join(r["message"] for r in sink.received)
    assert "; size 10, last unrealized PnL " in sink.received[-1]["message"]
    (liquidation,) = [t for t in transitions(rig) if t[1] == "liquidated"]
    assert liquidation[0] == ("firing" if alerting else "inactive")
    assert liquidation[2].startswith(f"liquidated: mark {mark} is past its liquidation price ")
    (alert,) = rig.engine.current.values()
    assert (alert.state, alert.severity) == ("liquidated", "critical")
    assert sim.sim.requests[("-", ep.TICKERS.path)] == 1  # one unsigned request for the whole product type
    rig.clock.advance(30)
    await rig.judge("alpha")  # nothing more to say about it
    assert len(sink.received) == int(alerting) + 1


async def test_a_position_closed_by_the_trader_still_resolves_as_closed(started: Any, sink: Sink) -> None:
    sim, rig, read = await started(False, "long", "isolated")
    await rig.judge("alpha", *(await read()).positions)
    assert sink.titles() == ["[WARNING] alpha: BTCUSDT long: 9.09% from liquidation (mark 100, liquidation 90.909)"]
    assert "; size 10, unrealized PnL 0.00 USDT;" in sink.received[0]["message"]  # chat form: size and PnL
    await sim.control("POST", "/_sim/close", {"account": "alpha", "symbol": "BTCUSDT"})
    rig.clock.advance(30)
    await rig.judge("alpha", *(await read()).positions)
    assert sink.titles()[-1] == (
        "[RESOLVED] alpha: BTCUSDT long: 9.09% from liquidation (mark 100, liquidation 90.909): position closed"
    )
    assert sink.received[-1]["type"] == "success"
    assert transitions(rig)[-1] == ("firing", "resolved", "position closed")


async def test_a_crossed_position_closed_without_alerting_says_nothing(started: Any, sink: Sink) -> None:
    sim, rig, read = await started(True, "short", "crossed")
    await rig.judge("alpha", *(await read()).positions)
    await sim.control("POST", "/_sim/close", {"account": "alpha", "symbol": "BTCUSDT"})
    rig.clock.advance(30)
    await rig.judge("alpha", *(await read()).positions)
    assert sink.received == [] and transitions(rig) == []
    assert sim.sim.requests[("-", ep.TICKERS.path)] == 1  # judged: the mark said it was not liquidated


async def test_without_a_mark_the_last_read_decides_and_the_message_says_the_mark_was_unavailable(
    started: Any, sink: Sink
) -> None:
    sim, rig, read = await started(False, "long", "isolated")
    await sim.control("POST", "/_sim/price", {"symbol": "BTCUSDT", "product_type": "USDT-FUTURES", "mark": "93"})
    await rig.judge("alpha", *(await read()).positions)
    assert sink.titles()[-1].startswith("[CRITICAL] alpha: BTCUSDT long: 2.25% from liquidation")
    await sim.control("POST", "/_sim/faults", {"kind": "500", "count": 10, "endpoint": ep.TICKERS.path})
    await sim.control("POST", "/_sim/price", {"symbol": "BTCUSDT", "product_type": "USDT-FUTURES", "mark": "80"})
    rig.clock.advance(30)
    await rig.judge("alpha", *(await read()).positions)
    title = sink.titles()[-1]
    assert title == (
        "[LIQUIDATED] alpha: BTCUSDT long probably liquidated: the last read had it 2.25% from its liquidation price "
        "90.909 (mark 93); mark unavailable (HTTP 500)"
    )
    assert sink.received[-1]["type"] == "failure"
    assert transitions(rig)[-1][:2] == ("firing", "liquidated")


async def test_after_a_restart_the_stored_alert_is_the_evidence(started: Any, sink: Sink) -> None:
    sim, rig, read = await started(True, "short", "isolated")
    await rig.judge("alpha", *(await read()).positions)
    await rig.restart()  # the new process never saw the position: only the alert's stored details remain
    await sim.control("POST", "/_sim/price", {"symbol": "BTCUSDT", "product_type": "USDT-FUTURES", "mark": "115"})
    rig.clock.advance(30)
    await rig.judge("alpha", *(await read()).positions)
    assert sink.titles()[-1].startswith("[LIQUIDATED] alpha: BTCUSDT short liquidated: mark 115 is past its ")
    assert sink.received[-1]["type"] == "failure"
    assert transitions(rig)[-1][:2] == ("firing", "liquidated")


async def test_run_announces_a_liquidation_and_its_pages_show_it_liquidated(
    make_sim: SimFactory, sink: Sink, tmp_path: Path
) -> None:
    """The whole monitor (`run`: poller, budget, engine, outbox, sender, status page) against the simulator."""
    from tests.conftest import until
    from tests.launch import liquidation_watch, running
    from tests.scenarios import TWO_ACCOUNTS

    sim = await make_sim(scenario=TWO_ACCOUNTS)
    path = liquidation_watch(sim, tmp_path, sink)
    async with running(path) as service:
        await sim.control("POST", "/_sim/price", {"symbol": "BTCUSDT", "mark": "93"})  # 2.2 %: critical
        await until(lambda: len(sink.received) >= 1)
        await sim.control("POST", "/_sim/price", {"symbol": "BTCUSDT", "mark": "85"})  # the isolated long goes
        await until(lambda: len(sink.received) >= 2)
        await asyncio.sleep(1.0)  # more polls: nothing else to say
        assert sink.titles() == [
            "[CRITICAL] iso: BTCUSDT long: 2.25% from liquidation (mark 93, liquidation 90.909)",
            "[LIQUIDATED] iso: BTCUSDT long liquidated: mark 85 is past its liquidation price 90.909 (last read: "
            "mark 93, 2.25% away)",
        ]
        assert [r["type"] for r in sink.received] == ["failure", "failure"]
        # the verdict took the mark feed's marks (MarketWatch.read): no mark reader of its own
        assert service.engine.marks is service.market and sim.sim.requests[("-", ep.TICKERS.path)] > 1
        for page in ("/alerts", "/accounts/iso"):
            async with sim.session.get(f"{service.web_url}{page}") as response:
                html = await response.text()
            assert '<span class="badge critical">LIQUIDATED</span>' in html and "liquidated: mark 85" in html
        async with sim.session.get(f"{service.web_url}/api/v1/accounts/iso") as response:
            (alert,) = (await response.json())["alerts"]
        assert (alert["state"], alert["severity"]) == ("liquidated", "critical")


async def test_a_liquidation_judged_as_run_stops_is_delivered_before_it_exits(
    make_sim: SimFactory, sink: Sink, tmp_path: Path
) -> None:
    """The read that finds the position gone comes just before the stop; its verdict waits for a mark that the
    simulator answers slowly, so it is judged and queued during the shutdown: it still goes out then."""
    from tests.conftest import until
    from tests.launch import liquidation_watch, running
    from tests.scenarios import TWO_ACCOUNTS

    sim = await make_sim(scenario=TWO_ACCOUNTS)
    path = liquidation_watch(sim, tmp_path, sink)
    async with running(path) as service:
        await sim.control("POST", "/_sim/price", {"symbol": "BTCUSDT", "mark": "93"})  # 2.2 %: critical
        await until(lambda: len(sink.received) >= 1)
        await sim.control("POST", "/_sim/faults", {"kind": "slow", "delay": 1.5, "count": 100,
                                                   "endpoint": ep.TICKERS.path})  # fmt: skip
        await sim.control("POST", "/_sim/price", {"symbol": "BTCUSDT", "mark": "85"})  # the isolated long goes
        await until(lambda: bool(service.engine.verdicts.awaiting))  # found gone, waiting for its mark
        assert len(sink.received) == 1
        sink.delay = 1.0  # its delivery is still under way when the last pass has nothing more to start
    assert sink.titles()[1:] == [
        "[LIQUIDATED] iso: BTCUSDT long liquidated: mark 85 is past its liquidation price 90.909 (last read: "
        "mark 93, 2.25% away)"
    ]
    store = Store(f"sqlite:///{tmp_path}/m.db")  # and recorded as sent: not sent again after a restart
    try:
        with store.engine.connect() as connection:
            rows = connection.execute(select(NOTIFICATION.c.title, NOTIFICATION.c.status)).all()
    finally:
        store.close()
    assert sorted(status for _, status in rows) == ["sent", "sent"], rows


def test_the_email_form_gives_the_mark_read_after_and_the_last_read() -> None:
    from monitor.alerts.departures import details_after
    from monitor.alerts.lifecycle import liquidated
    from monitor.alerts.messages import Messages
    from monitor.alerts.model import Alert, Item, Reason, State
    from monitor.rules.model import Severity

    seen = last()
    verdict = judge(seen, D(85), D(7))
    firing = Alert("k", "liq", "alpha", "USDT-FUTURES BTCUSDT long", State.FIRING, T0, Severity.CRITICAL)
    alert, transition = liquidated(firing, T0, summary=verdict.summary, reason=verdict.reason, value=verdict.value,
                                   details=details_after(seen, D(85)))  # fmt: skip
    rendered = Messages(None, None).render("alpha", (), [Item(alert, Reason.LIQUIDATED, "liquidation_distance")])
    assert rendered.title == (
        "[LIQUIDATED] alpha: BTCUSDT long liquidated: mark 85 is past its liquidation price 90 (last read: mark 95, "
        "5.26% away)"
    )
    assert "State:       liquidated (liquidated), severity critical" in rendered.body_long
    assert "Mark price:  85 after it was gone; 95 at the last read" in rendered.body_long
    assert "Liquidation: 90 at the last read (5.26% away then)" in rendered.body_long
    assert transition.to_state is State.LIQUIDATED and transition.from_state is State.FIRING


def test_a_last_read_already_past_liquidation_says_so_in_the_verdict_and_the_email() -> None:
    from monitor.alerts.messages import Messages
    from monitor.alerts.model import Alert, Item, Reason, State
    from monitor.rules.model import Severity

    seen = last(mark="89.9")  # the last read had the long's mark past its liquidation price, 90
    verdict = judge(seen, D(89), D(7))
    assert verdict.summary == (
        "BTCUSDT long liquidated: mark 89 is past its liquidation price 90 (last read: mark 89.9, past liquidation)"
    )
    details = {**seen.details, "distance": "-0.11"}
    firing = Alert("k", "liq", "alpha", "USDT-FUTURES BTCUSDT long", State.FIRING, T0, Severity.CRITICAL,
                   summary="BTCUSDT long: past liquidation", details=details)  # fmt: skip
    rendered = Messages(None, None).render("alpha", (), [Item(firing, Reason.FIRING, "liquidation_distance")])
    assert "Liquidation: 90 (past liquidation)" in rendered.body_long and "-0.11" not in rendered.body_long


async def test_an_account_handed_back_by_another_process_is_not_judged_on_an_old_read(started: Any, sink: Sink) -> None:
    sim, rig, read = await started(False, "long", "crossed")
    await rig.judge("alpha", *(await read()).positions)
    await rig.engine.adopt(set())  # another process polls it now; it sees the trader close the position
    await sim.control("POST", "/_sim/close", {"account": "alpha", "symbol": "BTCUSDT"})
    await sim.control("POST", "/_sim/price", {"symbol": "BTCUSDT", "product_type": "USDT-FUTURES", "mark": "70"})
    await rig.engine.adopt({"alpha"})
    rig.clock.advance(30)
    await rig.judge("alpha", *(await read()).positions)
    assert sink.received == [] and transitions(rig) == []


async def test_both_legs_of_a_crossed_hedge_pair_liquidated_at_once_are_one_message(started: Any, sink: Sink) -> None:
    sim, rig, read = await started(False, "long", "crossed")
    account = sim.account("alpha")
    for leg in account.positions:  # a hedge pair on 100 USDT: both legs share one price, 85.32 (14.7 % away)
        leg.hedge = True
    short = type(account.positions[0])(**{**vars(account.positions[0]), "side": "short", "size": D(4)})
    account.positions.append(short)
    account.wallets[("USDT-FUTURES", "USDT")] = D(100)
    await rig.judge("alpha", *(await read()).positions)
    assert sink.titles() == ["[WARNING] alpha: 2 alerts"]
    await sim.control("POST", "/_sim/price", {"symbol": "BTCUSDT", "product_type": "USDT-FUTURES", "mark": "85"})
    rig.clock.advance(30)
    await rig.judge("alpha", *(await read()).positions)
    assert sink.titles()[-1] == "[LIQUIDATED] alpha: 2 alerts" and sink.received[-1]["type"] == "failure"
    lines = sink.received[-1]["message"].splitlines()
    assert [line.split(":")[0] for line in lines if line.startswith("LIQUIDATED")] == ["LIQUIDATED liq"] * 2
    assert {"BTCUSDT long liquidated", "BTCUSDT short liquidated"} <= {
        line.split(": ", 2)[1] for line in lines if line.startswith("LIQUIDATED")
    }


async def test_three_rules_on_a_liquidated_position_are_one_liquidation(
    make_sim: SimFactory, sink: Sink, tmp_path: Path
) -> None:
    """The distance, odds and PnL rules all fire on one long; it is liquidated: one LIQUIDATED line in one
    message (the distance rule's), the other two end quietly with it, and the page, /metrics and the report
    count one liquidation."""
    from datetime import timedelta

    from prometheus_client.parser import text_string_to_metric_families

    from monitor.alerts.model import State
    from tests.conftest import until
    from tests.launch import accounts_file, cli, running
    from tests.scenarios import LIQUIDATION_RULE, ONE_POSITION

    rules = (LIQUIDATION_RULE
             + '[[rules]]\nname = "odds"\ntype = "liquidation_probability"\nwarning = "5%"\ncritical = "20%"\n'
             + '[[rules]]\nname = "upnl"\ntype = "unrealized_pnl"\nwarning = "-30%"\ncritical = "-60%"\n')  # fmt: skip
    sim = await make_sim(scenario=ONE_POSITION)
    head = f'[channels]\nops = ["{sink.url()}"]\n{rules}'
    path = accounts_file(sim, tmp_path, 'poll_interval = "1s"\nrisk_poll_interval = "200ms"\n', head)
    async with running(path) as service:
        # 20 minutes of marks swinging 1 % every 10 s: the odds rule has its volatility
        start = SystemClock().now() - timedelta(minutes=20)
        swings = [(start + timedelta(seconds=10 * i), D(100 + i % 2)) for i in range(120)]
        service.mark_history.add_many("USDT-FUTURES", "BTCUSDT", swings)
        await sim.control("POST", "/_sim/price", {"symbol": "BTCUSDT", "mark": "93"})  # 2.25 %, -70 % of margin

        def told() -> set[str]:
            return {a.rule for a in service.engine.current.values()
                    if a.state is State.FIRING and a.last_notified_state is State.FIRING}  # fmt: skip

        await until(lambda: told() == {"liq", "odds", "upnl"})
        await sim.control("POST", "/_sim/price", {"symbol": "BTCUSDT", "mark": "85"})
        await until(lambda: any(t.startswith("[LIQUIDATED]") for t in sink.titles()))
        await asyncio.sleep(1.0)  # more polls: nothing else to say
        assert sim.account("iso").liquidations == 1
        (title,) = [t for t in sink.titles() if "LIQUIDATED" in t]
        assert title.startswith("[LIQUIDATED] iso: BTCUSDT long liquidated: mark 85 is past its liquidation price ")
        lines = [line for r in sink.received for line in r["message"].splitlines()]
        assert len([line for line in lines if "LIQUIDATED" in line]) == 1
        assert not [line for line in lines if "RESOLVED" in line]
        ended = {a.rule: a for a in service.engine.current.values()}
        assert {r: a.state for r, a in ended.items()} == {
            "liq": State.LIQUIDATED, "odds": State.RESOLVED, "upnl": State.RESOLVED
        }  # fmt: skip
        assert ended["odds"].summary.endswith(": ended by the liquidation of its position (liq)")
        async with sim.session.get(f"{service.web_url}/accounts/iso") as response:
            assert (await response.text()).count('<span class="badge critical">LIQUIDATED</span>') == 1
        async with sim.session.get(f"{service.web_url}/metrics") as response:
            text = await response.text()
        families = {f.name: f for f in text_string_to_metric_families(text)}
        states = {s.labels["state"]: s.value for s in families["bitget_monitor_alerts"].samples}
        assert states["liquidated"] == 1
    code, out, err = await cli("report", "-c", str(path), "--json")
    assert code == 0, err
    report = json.loads(out)
    assert report["total"]["liquidations"] == 1 and report["accounts"][0]["liquidations"] == 1
    # the two alerts that ended with the liquidation are not "resolved": no good news in the report
    assert (report["total"]["alerts_fired"], report["total"]["alerts_resolved"]) == (3, 0)
    code, out, err = await cli("report", "-c", str(path))
    assert code == 0, err
    assert out.count("Alerts:                 3 fired, 0 resolved, 1 liquidated") == 2  # the total and iso's
