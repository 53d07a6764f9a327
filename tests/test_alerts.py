"""The alert engine and the outbox on a clock the test advances, a real database, and real deliveries:
apprise posting to a local HTTP sink and mailing a local SMTP server."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from monitor.alerts.engine import AlertEngine
from monitor.alerts.sender import Sender
from monitor.cli import main
from monitor.clock import ManualClock, SystemClock
from monitor.config import Config, load_config
from monitor.domain import AccountMode, AccountSnapshot, MarginMode, Position, PositionMode, Side
from monitor.errors import ConfigError
from monitor.exchange.bitget.market import MarkPrices
from monitor.poller.state import AccountState, Status
from monitor.rules.view import AccountView
from monitor.store import migrations
from monitor.store.repository import Store
from monitor.views import AccountViews
from tests.conftest import Mailbox, Sim, Sink

D = Decimal
T0 = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)
ACCOUNT = 'name = "{name}"\napi_key = "k"\napi_secret = "s"\npassphrase = "p"\ntags = ["fund-a"]\n'


def position(mark: str, symbol: str = "BTCUSDT", liquidation: str = "90") -> Position:
    return Position(
        "USDT-FUTURES",
        symbol,
        "USDT",
        Side.LONG,
        PositionMode.ONE_WAY,
        MarginMode.ISOLATED,
        D(1),
        D(100),
        D(mark),
        D(liquidation),
        D(10),
        D(10),
        D(mark) - 100,
    )


@dataclass
class Rig:
    """An engine and a sender sharing one database, driven by a manual clock."""

    config: Config
    store: Store
    clock: ManualClock
    engine: AlertEngine
    sender: Sender
    marks: MarkPrices | None = None

    async def judge(self, name: str, *positions: Position, fresh: bool = True) -> None:
        now = self.clock.now()
        snapshot = AccountSnapshot(name, now, AccountMode.CLASSIC, positions=positions)
        view = AccountView(
            name,
            ("fund-a",),
            snapshot,
            now if fresh else now - timedelta(hours=1),
            fresh,
            T0,
            self.config.monitor.poll_interval,
        )
        self.engine.evaluate([view], now)
        await self.engine.judged()  # a position gone: closed or liquidated, once the mark is read
        assert await self.engine.flush()
        await self.sender.send_due()

    async def restart(self) -> None:
        """A new process: new store, engine and sender on the same database."""
        self.store.close()
        fresh = await rig_for(self.config, self.clock, self.marks)
        self.store, self.engine, self.sender = fresh.store, fresh.engine, fresh.sender


async def rig_for(config: Config, clock: ManualClock, marks: MarkPrices | None = None) -> Rig:
    store = Store(config.monitor.database_url.reveal())
    sender = Sender(config, store, clock, "test-node")
    engine = AlertEngine(config, store, clock, on_queued=sender.wake, memory=sender.memory)
    engine.marks = marks
    await engine.load()
    return Rig(config, store, clock, engine, sender, marks)


@pytest.fixture
def make_rig(tmp_path: Path, db_url: str) -> Any:
    rigs: list[Rig] = []

    async def make(
        text: str, accounts: tuple[str, ...] = ("alpha",), start: datetime = T0, marks: MarkPrices | None = None
    ) -> Rig:
        path = tmp_path / "accounts.toml"
        body = "\n".join("[[accounts]]\n" + ACCOUNT.format(name=n) for n in accounts)
        path.write_text(f'[monitor]\ndatabase_url = "{db_url}"\n{text}\n{body}')
        config = load_config(path, env={})
        await asyncio.to_thread(migrations.upgrade, db_url)
        rig = await rig_for(config, ManualClock(start), marks)
        rigs.append(rig)
        return rig

    yield make
    for rig in rigs:
        rig.store.close()


async def hooked_rig(make_rig: Any, aiohttp_server: Any, hook: Any) -> Rig:
    """A rig whose one channel posts to `hook` (an aiohttp handler of the test's), judged by a liquidation rule
    that fires at once (critical under 7 %)."""
    from aiohttp import web

    app = web.Application()
    app.router.add_post("/hook", hook)
    server = await aiohttp_server(app)
    return await make_rig(
        f'[channels]\nops = ["json://127.0.0.1:{server.port}/hook"]\n[[rules]]\nname = "liq"\n'
        'type = "liquidation_distance"\nwarning = "15%"\ncritical = "7%"\n'
    )


async def endpoint(aiohttp_server: Any, port: int, path: str) -> list[str]:
    """A json:// endpoint that comes up late on a port that refused until now; returns the titles it gets."""
    from aiohttp import web

    titles: list[str] = []

    async def hook(request: web.Request) -> web.Response:
        titles.append((await request.json())["title"])
        return web.Response(text="ok")

    app = web.Application()
    app.router.add_post(path, hook)
    await aiohttp_server(app, port=port)
    return titles


def rules(sink: Sink, extra: str = "") -> str:
    return f"""
[channels]
ops = ["{sink.url()}"]
[[rules]]
name = "liq"
type = "liquidation_distance"
warning = "15%"
critical = "7%"
clear = "2%"
for = "1m"
repeat = "30m"
repeat_critical = "5m"
{extra}
"""


async def test_a_sender_that_never_ran_finishes_at_once_and_one_that_ended_leaves_nothing_waiting(
    make_rig: Any, sink: Sink
) -> None:
    """Shutdown before the sender's loop started (the database away at start): no loop will answer a request for
    a pass, so finish does not wait out its timeout (it would return False then). The same after its loop ended."""
    rig = await make_rig(rules(sink))
    assert await rig.sender.finish(5)
    task = asyncio.create_task(rig.sender.run())
    await asyncio.sleep(0.2)  # a pass or two: nothing due
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    assert await rig.sender.finish(5) and sink.received == []


async def test_the_lifecycle_for_repeat_escalation_hysteresis_and_resolve(make_rig: Any, sink: Sink) -> None:
    rig = await make_rig(rules(sink))
    step = timedelta(seconds=30)
    await rig.judge("alpha", position("105"))  # 14.3 % from liquidation: pending, waiting `for`
    rig.clock.advance(step)
    await rig.judge("alpha", position("105"))
    assert sink.received == []
    rig.clock.advance(step)
    await rig.judge("alpha", position("105"))  # held for a minute: fires
    assert sink.titles() == ["[WARNING] alpha: BTCUSDT long: 14.29% from liquidation (mark 105, liquidation 90)"]
    rig.clock.advance(step)
    await rig.judge("alpha", position("96"))  # 6.25 %: escalates at once
    assert sink.titles()[-1].startswith("[CRITICAL] alpha: BTCUSDT long: 6.25% from liquidation")
    for _ in range(9):  # critical repeats every 5 minutes, not on every poll
        rig.clock.advance(step)
        await rig.judge("alpha", position("97"))  # 7.2 %: within the hysteresis band, still critical
    assert len(sink.received) == 2
    rig.clock.advance(step)
    await rig.judge("alpha", position("97"))
    assert len(sink.received) == 3 and "(still firing)" in sink.received[-1]["message"]
    rig.clock.advance(step)
    await rig.judge("alpha", position("100"))  # 10 %: past 7 + 2, eases to warning
    assert sink.titles()[-1].startswith("[WARNING]")
    rig.clock.advance(step)
    await rig.judge("alpha", position("106"))  # 15.1 %: inside 15 + 2, still a warning, no message
    assert len(sink.received) == 4
    rig.clock.advance(step)
    await rig.judge("alpha", position("110"))  # 18.2 %: resolved
    assert sink.titles()[-1].startswith("[RESOLVED] alpha")
    assert len(sink.received) == 5
    rig.clock.advance(step)
    await rig.judge("alpha", position("110"))
    assert len(sink.received) == 5
    assert {r["type"] for r in sink.received} == {"warning", "failure", "success"}


async def test_missing_data_holds_and_a_closed_position_resolves(make_rig: Any, sink: Sink, sim: Sim) -> None:
    await sim.control("POST", "/_sim/price", {"symbol": "BTCUSDT", "product_type": "USDT-FUTURES", "mark": "95"})
    marks = MarkPrices(sim.session, sim.url, None, SystemClock())
    rig = await make_rig(rules(sink).replace('for = "1m"', 'for = "0s"'), marks=marks)
    await rig.judge("alpha", position("95"))
    assert len(sink.received) == 1
    rig.clock.advance(60)
    await rig.judge("alpha", fresh=False)  # stale: no positions seen, but nothing resolves
    assert len(sink.received) == 1
    assert rig.engine.firing()[0].state == "firing"
    rig.clock.advance(60)
    await rig.judge("alpha")  # fresh data without the position, the mark where it was: it was closed
    assert (
        sink.titles()[-1]
        == "[RESOLVED] alpha: BTCUSDT long: 5.26% from liquidation (mark 95, liquidation 90): position closed"
    )
    assert sink.received[-1]["type"] == "success"


async def test_a_silence_quiets_an_alert_and_its_end_announces_it(
    make_rig: Any, sink: Sink, tmp_path: Path, capsys: Any
) -> None:
    rig = await make_rig(rules(sink).replace('for = "1m"', 'for = "0s"'))
    config = str(tmp_path / "accounts.toml")
    assert (
        main(
            [
                "silence",
                "-c",
                config,
                "add",
                "--account",
                "alp*",
                "--symbol",
                "btcusdt",
                "--for",
                "2h",
                "--reason",
                "adding margin",
            ]
        )
        == 0
    )
    assert "silence 1 added" in capsys.readouterr().out
    rig.engine.silences = await asyncio.to_thread(rig.store.alerts.silences, rig.clock.now())
    # The silence was written on the real clock; the rig's clock starts inside it only if we move there.
    silence = rig.engine.silences[0]
    rig.clock.advance(silence.starts_at - rig.clock.now() + timedelta(seconds=1))
    await rig.judge("alpha", position("95"))
    assert sink.received == [] and rig.engine.firing()  # tracked, not sent
    assert main(["silence", "-c", config, "list"]) == 0
    assert "adding margin" in capsys.readouterr().out
    rig.clock.advance(timedelta(hours=2))
    await rig.judge("alpha", position("95"))
    assert sink.titles() == ["[CRITICAL] alpha: BTCUSDT long: 5.26% from liquidation (mark 95, liquidation 90)"]
    assert main(["silence", "-c", config, "remove", "1"]) == 0
    assert main(["silence", "-c", config, "remove", "1"]) == 1


async def test_quiet_hours_hold_warnings_across_a_dst_change_and_let_critical_through(
    make_rig: Any, sink: Sink
) -> None:
    text = f"""
[channels.night]
urls = ["{sink.url("night")}"]
quiet_hours = "22:00-07:00"
timezone = "Europe/Berlin"
[[rules]]
name = "liq"
type = "liquidation_distance"
warning = "15%"
critical = "7%"
"""
    # 22:30 CET on the night Berlin moves its clocks forward: the window ends at 07:00 CEST = 05:00 UTC.
    rig = await make_rig(text, accounts=("alpha", "beta", "gamma"), start=datetime(2026, 3, 28, 21, 30, tzinfo=UTC))
    await rig.judge("alpha", position("105"))  # warning: held
    await rig.judge("beta", position("104", "ETHUSDT"))  # warning: held, then resolved before morning
    await rig.judge("gamma", position("95"))  # critical: goes through
    assert [t.split(":")[0] for t in sink.titles()] == ["[CRITICAL] gamma"]
    rig.clock.advance(timedelta(hours=1))
    await rig.judge("beta", position("120", "ETHUSDT"))  # resolved during the night: also held
    rig.clock.advance(datetime(2026, 3, 29, 4, 59, tzinfo=UTC) - rig.clock.now())
    await rig.sender.send_due()
    assert len(sink.received) == 1
    rig.clock.advance(timedelta(minutes=1))
    await rig.sender.send_due()
    assert len(sink.received) == 2
    summary = sink.received[1]["message"]
    assert "alpha liq: BTCUSDT long: 14.29% from liquidation" in summary
    assert "RESOLVED beta" in summary and "WARNING beta" not in summary  # the held warning is no longer true
    assert "since 2026-03-28 22:30 CET" in summary  # on the channel's clock, like its quiet hours
    await rig.sender.send_due()
    assert len(sink.received) == 2


async def test_each_channel_reads_the_alerts_times_on_its_own_clock(make_rig: Any, sink: Sink) -> None:
    text = f"""
[channels.utc]
urls = ["{sink.url("utc")}"]
[channels.tokyo]
urls = ["{sink.url("tokyo")}"]
timezone = "Asia/Tokyo"
[channels.berlin]
urls = ["{sink.url("berlin")}"]
timezone = "Europe/Berlin"
[[rules]]
name = "liq"
type = "liquidation_distance"
warning = "15%"
critical = "7%"
"""
    rig = await make_rig(text)  # T0: 2026-03-02 12:00 UTC
    await rig.judge("alpha", position("95"))
    rig.clock.advance(timedelta(minutes=3))
    await rig.judge("alpha", position("120"))  # resolved: its time is the channel's too
    by_path = {p: [r["message"] for r in sink.received if r["path"] == f"/{p}"] for p in ("utc", "tokyo", "berlin")}
    for path, fired, resolved in (("utc", "2026-03-02 12:00 UTC", "2026-03-02 12:03 UTC"),
                                  ("tokyo", "2026-03-02 21:00 JST", "2026-03-02 21:03 JST"),
                                  ("berlin", "2026-03-02 13:00 CET", "2026-03-02 13:03 CET")):  # fmt: skip
        assert len(by_path[path]) == 2, path
        assert by_path[path][0].rstrip().endswith(f"; since {fired}"), by_path[path][0]
        assert f"since {resolved}" in by_path[path][1]


async def test_a_failing_sink_gets_every_message_exactly_once_after_it_recovers(
    make_rig: Any, sink: Sink, caplog: Any, aiohttp_server: Any
) -> None:
    from aiohttp.test_utils import unused_port

    port = unused_port()
    refused = f"json://user:hunter2secret@127.0.0.1:{port}/hook/webhook-token-77"
    text = (
        f'[channels]\nops = ["{sink.url("good")}", "{sink.url("flaky", "user:s3cr3t-pass@")}"]\n'
        f'backup = ["{refused}"]\n'
    )
    rig = await make_rig(text, accounts=("alpha", "beta"))
    sink.status = 500
    with caplog.at_level(logging.WARNING):
        await rig.judge("alpha", position("95"))
    assert sink.received == []
    outbox = await asyncio.to_thread(rig.store.alerts.outbox)
    assert {m.status for m in outbox} == {"queued"} and all(m.last_error for m in outbox)
    sink.status = 200
    for _ in range(8):  # retries back off: 5 s, 10 s, ...
        rig.clock.advance(60)
        await rig.sender.send_due()
    assert (
        sink.titles("good")
        == sink.titles("flaky")
        == ["[CRITICAL] alpha: BTCUSDT long: 5.26% from liquidation (mark 95, liquidation 90)"]
    )
    outbox = {m.channel: m for m in await asyncio.to_thread(rig.store.alerts.outbox)}
    assert outbox["ops"].status == "sent" and outbox["backup"].status == "queued"
    assert "Connection" in (outbox["backup"].last_error or "")
    counts = await asyncio.to_thread(rig.store.alerts.outbox_counts)
    assert counts["sent"] == 1 and counts["failing"] == 1
    logged = caplog.text + "".join(m.last_error or "" for m in outbox.values())
    assert "hunter2secret" not in logged and "s3cr3t-pass" not in logged and "webhook-token-77" not in logged
    assert "backup #1 (json)" in (outbox["backup"].last_error or "")
    # the refusing endpoint comes up: its message arrives, once
    late = await endpoint(aiohttp_server, port, "/hook/webhook-token-77")
    for _ in range(5):
        rig.clock.advance(600)
        await rig.sender.send_due()
    assert late == sink.titles("good")
    assert len(sink.received) == 2


async def test_a_restart_neither_resends_nor_misses(make_rig: Any, sink: Sink) -> None:
    rig = await make_rig(rules(sink).replace('for = "1m"', 'for = "0s"'))
    await rig.judge("alpha", position("95"), position("104", "ETHUSDT"))
    assert len(sink.received) == 1
    await rig.restart()
    rig.clock.advance(30)
    await rig.judge("alpha", position("95"), position("104", "ETHUSDT"))
    assert len(sink.received) == 1
    rig.clock.advance(30)
    await rig.judge("alpha", position("95"), position("120", "ETHUSDT"))
    assert len(sink.received) == 2 and sink.titles()[-1].startswith("[RESOLVED] alpha: ETHUSDT")


async def test_two_hundred_positions_crossing_at_once_make_one_message_per_account_and_channel(
    make_rig: Any, sink: Sink, smtp: Mailbox
) -> None:
    names = tuple(f"acct-{i:02}" for i in range(20))
    text = f'[alerts]\nmax_items = 5\n[channels]\nchat = ["{sink.url()}"]\nmail = ["{smtp.url()}"]\n'
    rig = await make_rig(text, accounts=names)
    now = rig.clock.now()
    views = [
        AccountView(
            n,
            (),
            AccountSnapshot(
                n, now, AccountMode.CLASSIC, positions=tuple(position("95", f"C{i}USDT") for i in range(10))
            ),
            now,
            True,
            T0,
            timedelta(seconds=30),
        )
        for n in names
    ]
    rig.engine.evaluate(views, now)
    assert await rig.engine.flush()
    while await rig.sender.send_due():
        pass
    assert len(sink.received) == 20 and len(smtp.messages) == 20
    assert sorted(t.split(":")[0] for t in sink.titles()) == [f"[CRITICAL] {n}" for n in names]
    chat = sink.received[0]["message"]
    assert chat.count("CRITICAL liq") == 5 and "and 5 more" in chat and len(chat) < 4096
    (body,) = [
        p.get_payload(decode=True).decode() for p in smtp.messages[0].walk() if p.get_content_type() == "text/plain"
    ]
    assert "Liquidation: 90 (5.26% away)\r\n" in body and "  Mark price:  95\r\n" in body


async def test_notify_test_reports_each_url(sink: Sink, tmp_path: Path, capsys: Any) -> None:
    from aiohttp.test_utils import unused_port

    path = tmp_path / "accounts.toml"
    path.write_text(
        f'[channels]\nops = ["{sink.url()}", "json://127.0.0.1:{unused_port()}/x"]\n'
        "[[accounts]]\n" + ACCOUNT.format(name="a")
    )
    assert await asyncio.to_thread(main, ["notify-test", "-c", str(path)]) == 1
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "ops #1 (json)  ok"
    assert lines[1].startswith("ops #2 (json)  FAILED: ")
    assert sink.titles() == ["bitget-monitor test message"]


async def test_an_unreachable_account_speaks_for_its_other_alerts(make_rig: Any, sink: Sink) -> None:
    text = rules(sink).replace('for = "1m"', 'for = "0s"').replace('repeat_critical = "5m"', 'repeat_critical = "1m"')
    rig = await make_rig(text + '[[rules]]\nname = "down"\ntype = "unreachable"\ncritical = 3\nrepeat = "1h"\n')
    await rig.judge("alpha", position("95"))
    assert sink.titles() == ["[CRITICAL] alpha: BTCUSDT long: 5.26% from liquidation (mark 95, liquidation 90)"]
    for _ in range(5):  # an hour without good data: one unreachable message, no liquidation repeats on old data
        rig.clock.advance(60)
        await rig.judge("alpha", fresh=False)
    assert len(sink.received) == 2
    assert sink.titles()[1].startswith("[CRITICAL] alpha: no good data for 120 poll intervals")
    rig.clock.advance(60)
    await rig.judge("alpha", position("95"))  # readable again: unreachable resolves, the liquidation repeat is due
    assert len(sink.received) == 3
    message = sink.received[2]["message"]
    assert "RESOLVED down" in message and "CRITICAL liq" in message and "(still firing)" in message


async def test_the_timer_judges_again_only_accounts_whose_judgement_can_change(make_rig: Any, sink: Sink) -> None:
    rig = await make_rig(rules(sink, '[[rules]]\nname = "down"\ntype = "unreachable"\ncritical = 3\n'),
                         accounts=("alpha", "beta"))  # fmt: skip
    interval = rig.config.monitor.poll_interval

    def view(name: str, mark: str, read_at: datetime) -> AccountView:
        snapshot = AccountSnapshot(name, read_at, AccountMode.CLASSIC, positions=(position(mark),))
        return AccountView(name, ("fund-a",), snapshot, read_at, True, T0, interval)

    read = rig.clock.now()
    rig.engine.evaluate([view("alpha", "200", read), view("beta", "104", read)], read)  # beta: pending
    assert rig.engine.judgements == 2
    rig.clock.advance(5)
    rig.engine.evaluate([view("alpha", "200", read), view("beta", "104", read)], rig.clock.now(), changed_only=True)
    assert rig.engine.judgements == 3  # alpha: nothing new, no alert; beta: its pending alert has a `for` to run
    rig.clock.advance(5)
    rig.engine.evaluate([view("alpha", "199", read)], rig.clock.now(), changed_only=True)
    assert rig.engine.judgements == 4  # alpha's data changed
    # No read for three poll intervals: time alone changes alpha's judgement, and the timer raises the alert.
    for _ in range(3):
        rig.clock.advance(interval)
        rig.engine.evaluate([view("alpha", "199", read)], rig.clock.now(), changed_only=True)
    assert rig.engine.judgements == 7
    assert "down|alpha|" in rig.engine.current
    assert await rig.engine.flush()


async def test_a_read_that_changes_nothing_judging_looks_at_is_not_judged_again(make_rig: Any, sink: Sink) -> None:
    rig = await make_rig(rules(sink))
    interval = rig.config.monitor.poll_interval

    def read(mark: str) -> AccountView:
        now = rig.clock.now()
        snapshot = AccountSnapshot("alpha", now, AccountMode.CLASSIC, positions=(position(mark),))
        return AccountView("alpha", ("fund-a",), snapshot, now, True, T0, interval)

    rig.engine.evaluate([read("200")], rig.clock.now(), changed_only=True)
    assert rig.engine.judgements == 1
    rig.clock.advance(interval)
    rig.engine.evaluate([read("200")], rig.clock.now(), changed_only=True)  # the same answer, read later
    assert rig.engine.judgements == 1
    rig.clock.advance(interval)
    rig.engine.evaluate([read("104")], rig.clock.now(), changed_only=True)  # the mark moved: pending alert
    assert rig.engine.judgements == 2 and "liq|alpha|USDT-FUTURES BTCUSDT long" in rig.engine.current
    rig.clock.advance(interval)
    rig.engine.evaluate([read("104")], rig.clock.now(), changed_only=True)  # unchanged, but an alert to step
    assert rig.engine.judgements == 3
    assert await rig.engine.flush()


async def test_a_stretched_cycle_neither_holds_alerts_nor_makes_every_account_unreachable(
    make_rig: Any, sink: Sink
) -> None:
    """More accounts than the IP budget reads every poll_interval: each is read every three minutes instead.
    Data that old is as fresh as it gets, so the rules judge it, and `unreachable` counts real intervals."""
    text = rules(sink).replace('for = "1m"', 'for = "0s"')
    rig = await make_rig(text + '[[rules]]\nname = "down"\ntype = "unreachable"\ncritical = 3\n')
    read_at = rig.clock.now()
    state = AccountState(rig.config.accounts[0], client=None)  # type: ignore[arg-type]  # views read no client
    state.snapshot = AccountSnapshot("alpha", read_at, AccountMode.CLASSIC, positions=(position("95"),))
    state.last_good_at, state.polls, state.status = read_at, 1, Status.OK
    rig.clock.advance(150)  # five poll_intervals (30 s) since the last read, within one stretched cycle
    now = rig.clock.now()
    views = AccountViews(lambda: rig.config.monitor, rig.engine.last_success)
    assert not views.of(state.reading(), now).fresh  # against poll_interval alone it would be stale
    view = views.of(state.reading(cadence=timedelta(minutes=3)), now)
    assert view.fresh
    rig.engine.evaluate([view], now)
    assert await rig.engine.flush()
    await rig.sender.send_due()
    assert sink.titles() == ["[CRITICAL] alpha: BTCUSDT long: 5.26% from liquidation (mark 95, liquidation 90)"]


async def test_users_can_bring_their_own_templates(make_rig: Any, sink: Sink, tmp_path: Path) -> None:
    (tmp_path / "tpl").mkdir()
    (tmp_path / "tpl" / "short.j2").write_text(
        "{% for i in items %}{{ i.details.symbol }} {{ i.details.side }} at {{ i.details.distance }}%{% endfor %}"
    )
    rig = await make_rig('[alerts]\ntemplates = "tpl"\n[web]\npublic_url = "https://mon.example/"\n' + rules(sink))
    rig.clock.advance(0)
    await rig.judge("alpha", position("96"))
    rig.clock.advance(60)
    await rig.judge("alpha", position("96"))
    assert sink.received[0]["message"] == "BTCUSDT long at 6.25%"
    assert sink.titles() == ["[CRITICAL] alpha: BTCUSDT long: 6.25% from liquidation (mark 96, liquidation 90)"]


async def test_a_portfolio_drawdown_keeps_its_peak_across_a_restart(make_rig: Any, sink: Sink) -> None:
    from monitor.domain import PollOutcome

    text = (
        f'[channels]\nops = ["{sink.url()}"]\n[[rules]]\nname = "dd"\ntype = "drawdown"\nwarning = "5%"\n'
        'critical = "10%"\nscope = "portfolio"\ntags = ["fund-a"]\nwindow = "24h"\n'
    )
    rig = await make_rig(text, accounts=("alpha", "beta"))

    async def equity(value: str) -> None:
        now = rig.clock.now()
        snapshots = [AccountSnapshot(n, now, AccountMode.CLASSIC, spot_usdt=D(value)) for n in ("alpha", "beta")]
        views = [AccountView(s.account, ("fund-a",), s, now, True, T0, timedelta(seconds=30)) for s in snapshots]
        await asyncio.to_thread(rig.store.write_polls, [PollOutcome(s.account, now, now, s) for s in snapshots])
        rig.engine.evaluate(views, now, portfolio=True)
        assert await rig.engine.flush()
        await rig.sender.send_due()

    await equity("1000")
    rig.clock.advance(30)
    await equity("880")  # the two together: 12 % below their peak of 2000
    assert sink.titles() == [
        "[CRITICAL] portfolio: portfolio equity 1,760.00 USDT, 12.00% below its 24h peak of 2,000.00"
    ]
    await rig.restart()
    rig.clock.advance(30)
    await equity("880")
    assert len(sink.received) == 1  # the peak came back from the database: still firing, nothing new
    rig.clock.advance(30)
    await equity("1000")
    assert len(sink.received) == 2 and sink.titles()[1].startswith("[RESOLVED] portfolio")


async def test_a_critical_only_channel_hears_the_easing_and_the_end(make_rig: Any, sink: Sink) -> None:
    text = (
        rules(sink)
        .replace('for = "1m"', 'for = "0s"')
        .replace(
            f'ops = ["{sink.url()}"]',
            f'ops = ["{sink.url()}"]\n[channels.pager]\nurls = ["{sink.url("pager")}"]\nmin_severity = "critical"',
        )
    )
    rig = await make_rig(text)
    await rig.judge("alpha", position("105"))  # warning: not for the pager
    rig.clock.advance(30)
    await rig.judge("alpha", position("95"))  # critical
    rig.clock.advance(30)
    await rig.judge("alpha", position("100"))  # eased to warning
    rig.clock.advance(30)
    await rig.judge("alpha", position("120"))  # resolved
    assert [t.split(":")[0] for t in sink.titles("pager")] == [
        "[CRITICAL] alpha",
        "[WARNING] alpha",
        "[RESOLVED] alpha",
    ]
    assert len(sink.titles("hook")) == 4


async def test_an_announced_alert_is_announced_again_when_its_silence_ends(make_rig: Any, sink: Sink) -> None:
    rig = await make_rig(rules(sink).replace('for = "1m"', 'for = "0s"').replace('"5m"', '"1h"'))
    await rig.judge("alpha", position("95"))
    assert len(sink.received) == 1
    now = rig.clock.now()
    await asyncio.to_thread(rig.store.alerts.add_silence, "alpha", None, None, now, now + timedelta(minutes=10), "x")
    rig.engine.silences = await asyncio.to_thread(rig.store.alerts.silences, now)
    for _ in range(3):
        rig.clock.advance(timedelta(minutes=4))
        rig.engine.silences = await asyncio.to_thread(rig.store.alerts.silences, rig.clock.now())
        await rig.judge("alpha", position("95"))
    assert len(sink.received) == 2 and sink.titles()[1].startswith("[CRITICAL] alpha")  # at 12 min, not at 1 h


async def test_a_channel_gets_its_messages_in_order_while_others_go_on(
    make_rig: Any, sink: Sink, aiohttp_server: Any
) -> None:
    from aiohttp.test_utils import unused_port

    port = unused_port()
    text = (
        rules(sink)
        .replace('for = "1m"', 'for = "0s"')
        .replace(f'ops = ["{sink.url()}"]', f'ops = ["{sink.url()}"]\nslow = ["json://127.0.0.1:{port}/x"]')
    )
    rig = await make_rig(text)
    await rig.judge("alpha", position("95"))  # firing: ops gets it, slow refuses
    rig.clock.advance(1)
    await rig.judge("alpha", position("120"))  # resolved: ops gets it, slow must wait for the first
    assert [t.split(":")[0] for t in sink.titles()] == ["[CRITICAL] alpha", "[RESOLVED] alpha"]
    got = await endpoint(aiohttp_server, port, "/x")
    for _ in range(6):
        rig.clock.advance(60)
        await rig.sender.send_due()
    assert [t.split(":")[0] for t in got] == ["[CRITICAL] alpha", "[RESOLVED] alpha"]


async def test_a_broken_user_template_is_refused_at_load_and_a_failing_one_falls_back(
    make_rig: Any, sink: Sink, tmp_path: Path
) -> None:
    (tmp_path / "tpl").mkdir()
    (tmp_path / "tpl" / "short.j2").write_text("{% for i in items %}{{ i.summary }")
    with pytest.raises(ConfigError, match=r"alerts.templates: .*short.j2:1: unexpected '}'"):
        await make_rig('[alerts]\ntemplates = "tpl"\n' + rules(sink))
    (tmp_path / "tpl" / "short.j2").write_text("{{ items[0].summary | int(base=None, nonsense=1) }}")
    rig = await make_rig('[alerts]\ntemplates = "tpl"\n' + rules(sink).replace('for = "1m"', 'for = "0s"'))
    await rig.judge("alpha", position("95"))
    assert sink.received[0]["message"].startswith("alpha (fund-a)\nCRITICAL liq: BTCUSDT long")


async def test_a_batch_the_database_refuses_is_dropped_and_later_ones_are_written(
    make_rig: Any, sink: Sink, db_url: str
) -> None:
    from monitor.alerts.model import Alert, State

    if db_url.startswith("sqlite"):
        pytest.skip("SQLite does not enforce column lengths: nothing to refuse")
    rig = await make_rig(rules(sink).replace('for = "1m"', 'for = "0s"'))
    now = rig.clock.now()
    rig.engine.journal.record(Alert("x" * 500, "liq", "alpha", "", State.FIRING, now), None)  # a key too long
    assert await rig.engine.flush() and rig.engine.journal.rejected == 1
    await rig.judge("alpha", position("95"))
    assert len(sink.received) == 1


async def test_a_delivery_recorded_while_the_database_is_away_is_not_sent_again(
    make_rig: Any, db_url: str, aiohttp_server: Any
) -> None:
    """The sink answers, and at that moment the database goes away (connections cut and refused for two
    seconds): the sender keeps the result and records it when the database is back, instead of sending again."""
    if not db_url.startswith("postgresql"):
        pytest.skip("needs a database whose connections can be cut and refused: PostgreSQL")
    import psycopg
    from aiohttp import web
    from sqlalchemy.engine import make_url

    url = make_url(db_url)
    admin = url.set(drivername="postgresql", database="postgres").render_as_string(hide_password=False)
    received: list[str] = []
    reopened: list[asyncio.Task[None]] = []

    def allow(on: bool) -> None:
        with psycopg.connect(admin, autocommit=True) as connection:
            connection.execute(f'ALTER DATABASE "{url.database}" WITH ALLOW_CONNECTIONS {str(on).lower()}')
            if not on:
                connection.execute(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s", (url.database,)
                )

    async def reopen() -> None:
        await asyncio.sleep(2)
        await asyncio.to_thread(allow, True)

    async def hook(request: web.Request) -> web.Response:
        received.append((await request.json())["title"])
        await asyncio.to_thread(allow, False)
        reopened.append(asyncio.create_task(reopen()))
        return web.Response(text="ok")

    rig = await hooked_rig(make_rig, aiohttp_server, hook)
    try:
        await rig.judge("alpha", position("95"))  # delivered, then recorded once the database is back
    finally:
        await asyncio.gather(*reopened)
    assert len(received) == 1
    outbox = await asyncio.to_thread(rig.store.alerts.outbox)
    assert [m.status for m in outbox] == ["sent"]
    rig.clock.advance(600)
    await rig.sender.send_due()
    assert len(received) == 1


def test_url_fragments_are_masked_but_addresses_and_ports_stay_readable() -> None:
    from monitor.alerts.delivery import Masker
    from monitor.secret import Secret

    masker = Masker()
    masker.learn([Secret("json://user:pa55word@127.0.0.1:8080/hooks/t0ken-xyz?key=s3cret")])
    shown = masker.mask("POST 127.0.0.1:8080/hooks/t0ken-xyz as user:pa55word, key s3cret")
    assert shown == "POST 127.0.0.1:8080/*** as ***:***, key ***"
    masker.learn([Secret("mailto://user:pa55word@example.com:2525?smtp=127.0.0.1&to=ops@example.com")])
    shown = masker.mask("failed sign-in from 127.0.0.1; mail to ops@example.com through example.com")
    assert shown == "failed sign-in from 127.0.0.1; mail to *** through ***"  # an address is no secret
