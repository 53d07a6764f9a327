"""Alerts get out while the database refuses writes, and a crash repeats at most one message per channel.

The database really goes away: on SQLite another connection holds the write lock (every write waits out the
busy timeout and fails, as on a locked or full database), on PostgreSQL the database refuses connections and
its sessions are cut. Deliveries really go to a local sink, and the crash is a real `kill -9` of a process.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sqlite3
import sys
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from monitor.domain import AccountMode, AccountSnapshot, Position
from monitor.rules.view import AccountView
from tests.conftest import SimFactory, Sink, until
from tests.launch import liquidation_watch, process, running
from tests.scenarios import TWO_HMAC_ACCOUNTS
from tests.test_alerts import T0, Rig, hooked_rig, make_rig, position, rules

__all__ = ["make_rig"]  # a fixture shared with tests.test_alerts

NOW = "0s"


@contextlib.contextmanager
def database_away(db_url: str) -> Iterator[None]:
    """The database refuses writes until the block ends."""
    if db_url.startswith("sqlite"):
        holder = sqlite3.connect(db_url.removeprefix("sqlite:///"), isolation_level=None)
        holder.execute("BEGIN EXCLUSIVE")  # every other writer waits out its busy timeout, then fails
        try:
            yield
        finally:
            holder.execute("ROLLBACK")
            holder.close()
        return
    import psycopg
    from sqlalchemy.engine import make_url

    url = make_url(db_url)
    admin = url.set(drivername="postgresql", database="postgres").render_as_string(hide_password=False)

    def allow(on: bool) -> None:
        with psycopg.connect(admin, autocommit=True) as connection:
            connection.execute(f'ALTER DATABASE "{url.database}" WITH ALLOW_CONNECTIONS {str(on).lower()}')
            if not on:
                connection.execute(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s", (url.database,)
                )

    allow(False)
    try:
        yield
    finally:
        allow(True)


def evaluate(rig: Rig, name: str, *positions: Position) -> None:
    now = rig.clock.now()
    snapshot = AccountSnapshot(name, now, AccountMode.CLASSIC, positions=positions)
    rig.engine.evaluate(
        [AccountView(name, ("fund-a",), snapshot, now, True, T0, rig.config.monitor.poll_interval)], now
    )


async def judge_away(rig: Rig, name: str, *positions: Position) -> None:
    """One evaluation while the database is away: its changes cannot be written, its messages go out."""
    evaluate(rig, name, *positions)
    assert not await rig.engine.flush()
    await rig.sender.send_due()


async def test_a_new_alert_reaches_the_sink_while_the_database_refuses_writes_and_is_recorded_sent_after(
    make_rig: Any, sink: Sink, db_url: str
) -> None:
    rig = await make_rig(rules(sink).replace('for = "1m"', f'for = "{NOW}"'), accounts=("alpha", "beta"))
    await rig.judge("alpha", position("95"))  # before the outage: through the table as usual
    assert len(sink.received) == 1
    with database_away(db_url):
        rig.clock.advance(30)
        await judge_away(rig, "beta", position("95"))
        assert sink.titles()[-1].startswith("[CRITICAL] beta: BTCUSDT long")
        assert rig.sender.memory.waiting == 1 and rig.engine.waiting == 1
        rig.clock.advance(30)
        evaluate(rig, "beta", position("120"))  # resolved: out at once, not at the next write attempt
        await rig.sender.send_due()
        assert [t.split(":")[0] for t in sink.titles()] == ["[CRITICAL] alpha", "[CRITICAL] beta", "[RESOLVED] beta"]
    assert await rig.engine.flush()
    assert rig.sender.memory.waiting == 0 and len(rig.sender.memory) == 0
    outbox = await asyncio.to_thread(rig.store.alerts.outbox)
    assert [(m.account, m.status, m.attempts, len(m.delivered)) for m in outbox] == [
        ("beta", "sent", 1, 1),
        ("beta", "sent", 1, 1),
        ("alpha", "sent", 1, 1),
    ]
    assert outbox[1].sent_at == T0 + timedelta(seconds=30)
    for _ in range(3):  # nothing is sent twice
        rig.clock.advance(600)
        await rig.sender.send_due()
    assert len(sink.received) == 3


async def test_a_failing_channel_is_retried_from_memory_with_backoff_and_its_attempts_are_kept(
    make_rig: Any, sink: Sink, db_url: str
) -> None:
    rig = await make_rig(rules(sink).replace('for = "1m"', f'for = "{NOW}"'))
    with database_away(db_url):
        sink.status = 500
        await judge_away(rig, "alpha", position("95"))
        assert sink.received == []
        rig.clock.advance(2)  # within the backoff (5 s): not tried again yet
        await rig.sender.send_due()
        queued = rig.sender.memory.claim(rig.clock.now(), ())
        assert queued == []
        rig.clock.advance(60)
        await rig.sender.send_due()  # fails again
        sink.status = 200
        rig.clock.advance(60)
        await rig.sender.send_due()
        assert sink.titles() == ["[CRITICAL] alpha: BTCUSDT long: 5.26% from liquidation (mark 95, liquidation 90)"]
    assert await rig.engine.flush()
    [message] = await asyncio.to_thread(rig.store.alerts.outbox)
    assert (message.status, message.attempts, message.last_error) == ("sent", 3, None)
    rig.clock.advance(600)
    await rig.sender.send_due()
    assert len(sink.received) == 1


async def test_a_delivery_under_way_when_the_database_returns_is_recorded_once_it_ends(
    make_rig: Any, db_url: str, aiohttp_server: Any
) -> None:
    from aiohttp import web

    arrived, answer, received = asyncio.Event(), asyncio.Event(), []

    async def hook(request: web.Request) -> web.Response:
        received.append((await request.json())["title"])
        arrived.set()
        await answer.wait()
        return web.Response(text="ok")

    rig = await hooked_rig(make_rig, aiohttp_server, hook)
    with database_away(db_url):
        evaluate(rig, "alpha", position("95"))
        assert not await rig.engine.flush()
        delivering = asyncio.create_task(rig.sender.send_due())
        await asyncio.wait_for(arrived.wait(), 30)
    assert await rig.engine.flush()  # written while its delivery is under way: claimed, not sent again
    assert len(rig.sender.memory) == 1
    assert await rig.sender.send_due() == 0
    answer.set()
    await delivering
    [message] = await asyncio.to_thread(rig.store.alerts.outbox)
    assert (message.status, message.attempts) == ("sent", 1)
    assert len(rig.sender.memory) == 0
    rig.clock.advance(600)
    await rig.sender.send_due()
    assert len(received) == 1


SENDER = """
import asyncio, sys
from pathlib import Path
from monitor.alerts.node import node_name
from monitor.alerts.sender import Sender
from monitor.clock import SystemClock
from monitor.config import load_config
from monitor.store.repository import Store

config = load_config(Path(sys.argv[1]), env={})
store = Store(config.monitor.database_url.reveal())
asyncio.run(Sender(config, store, SystemClock(), node_name()).run())
"""


@contextlib.asynccontextmanager
async def sender_process(path: Path) -> AsyncIterator[asyncio.subprocess.Process]:
    root = Path(__file__).parent.parent
    async with process(sys.executable, "-c", SENDER, str(path), cwd=root, stdout=asyncio.subprocess.DEVNULL) as sender:
        yield sender


@pytest.mark.timeout(90)
async def test_a_kill_during_deliveries_repeats_at_most_one_message_per_channel_and_resends_at_once(
    make_rig: Any, aiohttp_server: Any, tmp_path: Path
) -> None:
    """Three channels with three accounts' messages each; the sink holds every request unanswered, the sender
    process is killed with a delivery under way on each channel, and a new one is started."""
    from aiohttp import web

    received: list[tuple[str, str]] = []
    answer = asyncio.Event()

    async def hook(request: web.Request) -> web.Response:
        received.append((request.path, (await request.json())["title"]))
        await answer.wait()
        return web.Response(text="ok")

    app = web.Application()
    app.router.add_post("/{channel}", hook)
    server = await aiohttp_server(app)
    # rto: apprise gives up on an answer after 4 s by default; here the sink holds its answers longer than that
    channels = "\n".join(f'{c} = ["json://127.0.0.1:{server.port}/{c}?rto=60"]' for c in "abc")
    rig = await make_rig(
        f'[channels]\n{channels}\n[[rules]]\nname = "liq"\ntype = "liquidation_distance"\nwarning = "15%"\n'
        'critical = "7%"\n',
        accounts=("alpha", "beta", "gamma"),
    )
    for name in ("alpha", "beta", "gamma"):  # nine messages in the table, none sent
        evaluate(rig, name, position("95"))
    assert await rig.engine.flush()
    accounts_file = tmp_path / "accounts.toml"
    async with sender_process(accounts_file) as process:
        await until(lambda: len(received) >= 3, 30)
        await asyncio.sleep(0.5)  # nothing more starts while each channel has a delivery under way
        assert sorted(p for p, _ in received) == ["/a", "/b", "/c"], received
        os.kill(process.pid, signal.SIGKILL)
        await process.wait()
    answer.set()
    async with sender_process(accounts_file):  # well within the dead process's claims (two minutes)
        await until(lambda: len(set(received)) == 9, 60)
        await until(lambda: {m.status for m in rig.store.alerts.outbox()} == {"sent"}, 30)  # recorded, too
    per_channel = Counter(p for p, _ in received)
    assert per_channel == {"/a": 4, "/b": 4, "/c": 4}, received  # three each, and the one cut short again
    outbox = await asyncio.to_thread(rig.store.alerts.outbox)
    assert sorted(m.status for m in outbox) == ["sent"] * 9


async def test_the_running_monitor_warns_while_its_database_is_locked_and_shows_what_waits_in_memory(
    make_sim: SimFactory, sink: Sink, tmp_path: Path
) -> None:
    """`run` against the simulator on SQLite; another connection holds the database's write lock while a mark
    crosses the critical level: the message reaches the sink during the outage, /metrics and /readyz show it
    waiting in memory, and once the lock is gone it is in the outbox table as sent, and never sent again."""
    import aiohttp

    sim = await make_sim(scenario=TWO_HMAC_ACCOUNTS)
    path = liquidation_watch(sim, tmp_path, sink)
    database = f"sqlite:///{tmp_path}/m.db"
    async with running(path, timeout=30) as service:
        await asyncio.sleep(1.5)
        assert sink.received == []
        with database_away(database):
            await sim.control("POST", "/_sim/price", {"symbol": "BTCUSDT", "mark": "93"})  # 2.2 %: critical
            await until(lambda: len(sink.received) >= 1, 30)
            assert sink.titles()[0].startswith("[CRITICAL] iso: BTCUSDT long")
            async with aiohttp.ClientSession() as session:
                async with session.get(f"{service.web_url}/metrics") as response:
                    metrics = await response.text()
                async with session.get(f"{service.web_url}/readyz") as response:
                    ready = (response.status, await response.json())
            assert 'bitget_monitor_outbox_messages{status="memory"} 1.0' in metrics
            assert ready[0] == 503 and ready[1]["messages_in_memory"] == 1
            assert ready[1]["checks"]["outbox_written"] is False
        await until(lambda: len(service.sender.memory) == 0, 30)
        await asyncio.sleep(2.0)  # more polls and passes: nothing is sent again
        assert len(sink.received) == 1
        outbox = await asyncio.to_thread(service.store.alerts.outbox)
        assert [(m.account, m.status, m.attempts) for m in outbox] == [("iso", "sent", 1)]


def test_a_full_outbox_in_memory_forgets_sent_messages_first_then_the_oldest_unsent() -> None:
    from monitor.alerts.model import Outgoing, Queued, Rendered
    from monitor.alerts.outbox import MemoryOutbox

    def message(n: int) -> Queued:
        return Queued(Outgoing("ops", f"a{n}", "critical", Rendered(f"m{n}", "", ""), ()), T0)

    memory = MemoryOutbox("node", limit=3)
    first = [message(n) for n in range(3)]
    assert memory.admit(first) == []
    [claimed] = memory.claim(T0, ())  # one channel: one at a time, the oldest
    assert claimed is first[0]
    memory.attempted(claimed, ["fp"], sent_at=T0)
    assert [m.title for m in memory.claim(T0, ())] == ["m1"]
    fourth, fifth = message(3), message(4)
    assert memory.admit([fourth]) == [first[0]]  # already sent: only its record goes
    assert memory.admit([fifth]) == [first[2]]  # m1 is under way; m2 is the oldest unsent
    assert memory.dropped == 1 and memory.waiting == 3
