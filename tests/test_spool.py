"""The alert spool: what the database has not taken survives a `kill -9`, and a start while the database is away
still warns.

The database really goes away (another connection holds SQLite's write lock), the monitor is a real `run`
subprocess killed with SIGKILL, and messages really reach a local sink.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import signal
import sqlite3
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from monitor.alerts.model import AlertBatch, Outgoing, Queued, Rendered, State, Transition
from monitor.alerts.records import alert_data, message_data, transition_data
from monitor.alerts.spool import Spool, encode, spool_path
from monitor.clock import SystemClock
from monitor.config import load_config
from monitor.service import Service
from tests.conftest import SimFactory, Sink
from tests.launch import MONITOR, liquidation_watch, process
from tests.scenarios import TWO_HMAC_ACCOUNTS
from tests.test_alerts import T0
from tests.test_outbox import database_away, until

ROOT = Path(__file__).parent.parent


def test_a_torn_last_line_is_skipped_with_a_log_line_and_the_rest_is_restored(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    from monitor.alerts.model import Alert

    alert = Alert("liq|alpha|BTCUSDT", "liq", "alpha", "BTCUSDT", State.FIRING, T0, last_notified_state=State.FIRING)
    transition = Transition(alert.key, T0, State.PENDING, State.FIRING, None, None, "critical")
    message = Queued(Outgoing("ops", "alpha", "critical", Rendered("t", "b", "l"), ()), T0)
    spool = Spool(tmp_path / "alerts.spool")
    spool.append([{"t": "alert", "d": alert_data(alert)}, {"t": "transition", "d": transition_data(transition)}])
    spool.append([{"t": "message", "d": message_data(message)}])
    spool.close()
    torn = encode({"t": "state", "m": 3, "n": 4, "d": {"attempts": 1}})
    with open(tmp_path / "alerts.spool", "ab") as file:
        file.write(torn[: len(torn) // 2])  # the crash came in the middle of a write
    caplog.set_level(logging.WARNING)
    again = Spool(tmp_path / "alerts.spool")
    restored = again.load()
    again.close()
    assert restored is not None
    assert restored.known == {alert.key: alert}
    assert restored.unwritten.transitions == [transition]
    [back] = restored.unwritten.messages
    assert (back.title, back.sent_at, back.attempts) == ("t", None, 0)
    assert "line 4 is torn or unreadable: skipped" in caplog.text


def test_a_line_whose_checksum_does_not_match_is_skipped_and_a_written_batch_is_not_restored_as_pending(
    tmp_path: Path,
) -> None:
    from monitor.alerts.model import Alert

    first = Alert("a", "liq", "alpha", "X", State.FIRING, T0)
    second = Alert("b", "liq", "alpha", "Y", State.PENDING, T0)
    spool = Spool(tmp_path / "s")
    [n] = spool.append([{"t": "alert", "d": alert_data(first)}])
    spool.append([{"t": "written", "upto": n}, {"t": "alert", "d": alert_data(second)}])
    spool.close()
    lines = (tmp_path / "s").read_bytes().splitlines(keepends=True)
    lines.insert(1, lines[0].replace(b'"X"', b'"Z"'))  # altered on disk: its checksum no longer matches
    (tmp_path / "s").write_bytes(b"".join(lines))
    again = Spool(tmp_path / "s")
    restored = again.load()
    again.close()
    assert restored is not None
    assert restored.known == {"a": first, "b": second}
    assert restored.unwritten.alerts == {"b": second}  # "a" is in the database already
    assert isinstance(restored.unwritten, AlertBatch)


# -- the running monitor ---------------------------------------------------------------------------------------


@contextlib.contextmanager
def locked(database: Path) -> Iterator[None]:
    """Another connection holds the write lock: every write of the monitor waits out its busy timeout and fails."""
    holder = sqlite3.connect(database, isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")
    try:
        yield
    finally:
        holder.execute("ROLLBACK")
        holder.close()


@contextlib.asynccontextmanager
async def monitor(path: Path, log: Path) -> AsyncIterator[asyncio.subprocess.Process]:
    with open(log, "ab") as stderr:
        async with process(*MONITOR, "run", "-c", str(path), cwd=ROOT, stdout=asyncio.subprocess.DEVNULL,
                           stderr=stderr) as running:  # fmt: skip
            yield running


async def setup(make_sim: SimFactory, sink: Sink, tmp_path: Path) -> tuple[Path, Path, str, object]:
    sim = await make_sim(scenario=TWO_HMAC_ACCOUNTS)
    path = liquidation_watch(sim, tmp_path, sink)
    database = tmp_path / "m.db"
    url = f"sqlite:///{database}"
    return path, database, url, sim


def rows(database: Path, query: str) -> list[tuple[object, ...]]:
    with contextlib.closing(sqlite3.connect(database)) as connection:
        return connection.execute(query).fetchall()


def spool_records(path: Path) -> list[dict[str, object]]:
    if not path.exists():
        return []
    return [json.loads(line.partition(b" ")[2]) for line in path.read_bytes().splitlines() if b" " in line]


@pytest.mark.timeout(120)
async def test_a_kill_during_an_outage_does_not_announce_the_alert_again_and_everything_is_written_once_after(
    make_sim: SimFactory, sink: Sink, tmp_path: Path
) -> None:
    """`run` on SQLite; the write lock is taken, a mark crosses the critical level, the message reaches the sink;
    the process is killed with SIGKILL and started again with the lock still held: the alert is not announced
    again; once the lock is gone the alert, its transition and the message are in the database once, sent."""
    path, database, url, sim = await setup(make_sim, sink, tmp_path)
    spool = spool_path(url)
    log = tmp_path / "monitor.log"
    async with monitor(path, log) as first:
        await until(lambda: spool.exists() and bool(rows(database, "SELECT 1 FROM account")), 60)
        await asyncio.sleep(1.5)
        assert sink.received == []
        with locked(database):
            await sim.control("POST", "/_sim/price", {"symbol": "BTCUSDT", "mark": "93"})  # type: ignore[attr-defined]
            await until(lambda: len(sink.received) >= 1, 30)
            assert sink.titles()[0].startswith("[CRITICAL] iso: BTCUSDT long")
            # its delivery is on disk (else a restart may repeat it: at most once per channel, as promised)
            await until(lambda: any(r["t"] == "state" and r["d"]["sent"] for r in spool_records(spool)), 30)  # type: ignore[index]
            os.kill(first.pid, signal.SIGKILL)
            await first.wait()
            async with monitor(path, log):
                await until(lambda: "1 messages (0 not sent) the database had not taken" in log.read_text(), 60)
                await asyncio.sleep(4.0)  # many polls at the risk cadence, the account still critical
                assert len(sink.received) == 1, sink.titles()
                # the database is still away: nothing could be written yet
                assert rows(database, "SELECT count(*) FROM notification") == [(0,)]
            # second process stopped at the block's end (killed too: what it knew is in the spool)
        async with monitor(path, log):
            await until(lambda: rows(database, "SELECT status FROM notification") == [("sent",)], 60)
            await asyncio.sleep(2.0)
            assert len(sink.received) == 1, sink.titles()
            firing = rows(database, "SELECT state FROM alert WHERE key LIKE 'liq|iso|%'")
            assert firing == [("firing",)]
            moves = rows(database, "SELECT to_state FROM alert_transition ORDER BY id")
            assert moves.count(("firing",)) == 1, moves
            assert rows(database, "SELECT count(*) FROM notification") == [(1,)]


@pytest.mark.timeout(120)
async def test_a_monitor_started_while_its_database_is_away_sends_a_new_critical_alert(
    make_sim: SimFactory, sink: Sink, tmp_path: Path
) -> None:
    path, database, url, sim = await setup(make_sim, sink, tmp_path)
    spool = spool_path(url)
    log = tmp_path / "monitor.log"
    async with monitor(path, log) as first:  # one ordinary run: the spool knows the (quiet) alert state
        await until(lambda: spool.exists() and bool(rows(database, "SELECT 1 FROM account")), 60)
        first.send_signal(signal.SIGTERM)
        await first.wait()
    with locked(database):
        await sim.control("POST", "/_sim/price", {"symbol": "BTCUSDT", "mark": "93"})  # type: ignore[attr-defined]
        async with monitor(path, log):
            await until(lambda: len(sink.received) >= 1, 60)
            assert sink.titles()[0].startswith("[CRITICAL] iso: BTCUSDT long")
            assert "not ready (database is locked)" in log.read_text()  # it did not wait for the database
    async with monitor(path, log):
        await until(lambda: rows(database, "SELECT status FROM notification") == [("sent",)], 60)
        await asyncio.sleep(1.0)
        assert len(sink.received) == 1, sink.titles()


@pytest.mark.timeout(120)
async def test_a_monitor_whose_database_refuses_connections_at_start_judges_from_the_spool_and_warns(
    make_sim: SimFactory, sink: Sink, tmp_path: Path, db_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    """PostgreSQL refusing connections: the alert state cannot even be read, so the engine starts from the
    spool (in `state_dir`) and the new critical alert goes out; it is written, sent, once the database is back."""
    if db_url.startswith("sqlite"):
        pytest.skip("SQLite's write lock leaves reads working: the kill test above covers SQLite")
    path, _database, _url, sim = await setup(make_sim, sink, tmp_path)
    state = tmp_path / "state"
    text = path.read_text().replace(f'database_url = "{_url}"', f'database_url = "{db_url}"\nstate_dir = "{state}"')
    path.write_text(text)
    config = load_config(path, env={})
    first = Service(path, config, SystemClock())
    stop = asyncio.Event()
    task = asyncio.create_task(first.run(stop))
    await until(lambda: first.engine.ready and spool_path(db_url, str(state)).exists(), 60)
    stop.set()
    await asyncio.wait_for(task, 30)
    caplog.set_level(logging.INFO)
    second = Service(path, config, SystemClock())
    stop = asyncio.Event()
    with database_away(db_url):
        await sim.control("POST", "/_sim/price", {"symbol": "BTCUSDT", "mark": "93"})  # type: ignore[attr-defined]
        task = asyncio.create_task(second.run(stop))
        try:
            await until(lambda: len(sink.received) >= 1, 60)
            assert sink.titles()[0].startswith("[CRITICAL] iso: BTCUSDT long")
            assert "judging from the last state known to the spool" in caplog.text
        except BaseException:
            stop.set()
            await asyncio.wait_for(task, 30)
            raise
    try:
        await until(lambda: [m.status for m in second.store.alerts.outbox()] == ["sent"], 60)
        await asyncio.sleep(1.0)
        assert len(sink.received) == 1
    finally:
        stop.set()
        await asyncio.wait_for(task, 30)


async def test_a_spool_past_its_bound_is_rewritten_with_the_current_state_and_a_new_engine_restores_from_it(
    tmp_path: Path, sink: Sink, db_url: str
) -> None:
    """Every write goes past a one-byte bound, so the spool is rewritten each time, during the outage too; an
    engine started on it afterwards knows the alert as announced and has its message to write."""
    from monitor.alerts.engine import AlertEngine
    from monitor.alerts.sender import Sender
    from monitor.clock import ManualClock
    from monitor.store import migrations
    from monitor.store.repository import Store
    from tests.test_alerts import ACCOUNT, position, rules
    from tests.test_outbox import NOW, evaluate

    path = tmp_path / "accounts.toml"
    body = "[[accounts]]\n" + ACCOUNT.format(name="alpha")
    text = rules(sink).replace('for = "1m"', f'for = "{NOW}"')
    path.write_text(f'[monitor]\ndatabase_url = "{db_url}"\n{text}\n{body}')
    config = load_config(path, env={})
    await asyncio.to_thread(migrations.upgrade, db_url)
    store = Store(db_url)
    clock = ManualClock(T0)

    def engine_on(spool: Spool) -> tuple[AlertEngine, Sender]:
        sender = Sender(config, store, clock, "test-node")
        return AlertEngine(config, store, clock, on_queued=sender.wake, memory=sender.memory, spool=spool), sender

    from tests.test_alerts import Rig

    file = tmp_path / "alerts.spool"
    spool = Spool(file, max_bytes=1)
    engine, sender = engine_on(spool)
    try:
        await engine.load()
        with database_away(db_url):
            evaluate(Rig(config, store, clock, engine, sender), "alpha", position("95"))
            assert not await engine.flush()
            await sender.send_due()
            assert len(sink.received) == 1
            evaluate(Rig(config, store, clock, engine, sender), "alpha", position("94"))
            assert not await engine.flush()  # past the bound: rewritten, not appended to
            kinds = [r["t"] for r in spool_records(file)]
            assert kinds.count("message") == 1 and "state" not in kinds, kinds  # its state is in its record
            spool.close()  # the process dies here
            again = Spool(file)
            engine, sender = engine_on(again)
            await engine.load()
            [alert] = engine.firing()
            assert alert.last_notified_state is State.FIRING
            evaluate(Rig(config, store, clock, engine, sender), "alpha", position("95"))
            await sender.send_due()
            assert len(sink.received) == 1  # not announced again
        assert await engine.flush()
        outbox = await asyncio.to_thread(store.alerts.outbox)
        assert [(m.status, m.attempts) for m in outbox] == [("sent", 1)]
        again.close()
    finally:
        store.close()
