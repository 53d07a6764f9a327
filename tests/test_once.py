"""`once` as cron and timers run it: a series of calls behaves like `run` (the same lifecycle, continued from
the database), delivers what is due before it exits, and never exits 0 without storing its cycle."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from aiohttp import web
from aiohttp.test_utils import unused_port

from monitor.clock import SystemClock
from monitor.config import load_config
from monitor.domain import PollOutcome
from monitor.once import OnceResult
from monitor.report import outcomes_table
from monitor.service import Service
from monitor.simulator.generate import write_accounts_file
from monitor.store.repository import Store
from tests.conftest import Sim, SimFactory, Sink
from tests.launch import MONITOR
from tests.scenarios import ONE_POSITION

# Liquidation at 90.90909091: mark 100 is 9.09 % away, 95 is 4.31 % (warning), 93 is 2.25 % (critical).
RULE = """
[[rules]]
name = "liq"
type = "liquidation_distance"
warning = "8%"
critical = "4%"
clear = "1%"
for = "1m"
repeat = "1h"
"""


class CronClock:
    """Real time moved forward by the test: the hours between cron runs pass at once, while the budgets and
    timeouts (monotonic) keep real pace."""

    def __init__(self) -> None:
        self.offset = timedelta(0)
        self._real = SystemClock()

    def now(self) -> datetime:
        return self._real.now() + self.offset

    def monotonic(self) -> float:
        return self._real.monotonic()

    def advance(self, delta: timedelta) -> None:
        self.offset += delta


async def _world(make_sim: SimFactory) -> Sim:
    """The one-position scenario, without the per-second request limits: these cron runs come seconds apart, so
    each run's key check would meet the last one's limit and wait out a retry."""
    return await make_sim(scenario=ONE_POSITION, limits=False)


def _accounts_file(sim: Sim, tmp_path: Path, database_url: str, channel: str, rule: str = RULE) -> Path:
    path = tmp_path / "accounts.toml"
    write_accounts_file(sim.world, path, sim.url)
    text = path.read_text().replace("[monitor]\n", f'[monitor]\ndatabase_url = "{database_url}"\n', 1)
    path.write_text(text.replace("[[accounts]]", f'[channels]\nops = ["{channel}"]\n{rule}\n[[accounts]]', 1))
    return path


async def _once(path: Path, clock: Any, deliver_timeout: float = 30.0) -> OnceResult:
    """One cron run: a new process's worth of service on the same database."""
    return await Service(path, load_config(path, env={}), clock).once(deliver_timeout)


async def test_a_series_of_once_runs_sends_warning_critical_nothing_before_repeat_and_resolved_exactly_once(
    make_sim: SimFactory, sink: Sink, tmp_path: Path, db_url: str
) -> None:
    sim = await _world(make_sim)
    path = _accounts_file(sim, tmp_path, db_url, sink.url())
    clock = CronClock()

    async def cron(mark: str, after: timedelta = timedelta(minutes=1)) -> list[str]:
        """Move the mark, let `after` pass, run once; what reached the sink in this run."""
        await sim.control("POST", "/_sim/price", {"symbol": "BTCUSDT", "mark": mark})
        clock.advance(after)
        before = len(sink.received)
        result = await _once(path, clock)
        assert result.error is None and all(o.ok for o in result.outcomes)
        assert result.queued == 0
        return sink.titles()[before:]

    assert await cron("100") == []
    assert await cron("95") == []  # warning level, pending: `for` is 1m, measured from the stored time
    assert await cron("95", timedelta(seconds=30)) == []
    assert await cron("95", timedelta(seconds=40)) == [
        "[WARNING] iso: BTCUSDT long: 4.31% from liquidation (mark 95, liquidation 90.909)"
    ]
    assert await cron("93") == ["[CRITICAL] iso: BTCUSDT long: 2.25% from liquidation (mark 93, liquidation 90.909)"]
    for _ in range(3):  # 15 minutes of cron runs, inside `repeat` (1h): nothing
        assert await cron("93", timedelta(minutes=5)) == []
    assert await cron("93", timedelta(minutes=50)) == [  # an hour after the critical message: the reminder
        "[CRITICAL] iso: BTCUSDT long: 2.25% from liquidation (mark 93, liquidation 90.909)"
    ]
    resolved = await cron("100")
    assert len(resolved) == 1 and resolved[0].startswith("[RESOLVED] iso: BTCUSDT long: 9.09% from liquidation")
    assert await cron("100") == []
    assert len(sink.received) == 4  # every message once, nothing twice
    store = Store(db_url)
    try:
        outbox = await asyncio.to_thread(store.alerts.outbox)
    finally:
        store.close()
    assert len(outbox) == 4 and {m.status for m in outbox} == {"sent"}


async def test_a_dry_run_judges_and_prints_but_stores_and_sends_nothing(
    make_sim: SimFactory, sink: Sink, tmp_path: Path
) -> None:
    sim = await _world(make_sim)
    database = tmp_path / "m.db"
    path = _accounts_file(sim, tmp_path, f"sqlite:///{database}", sink.url(), RULE.replace('for = "1m"', ""))
    await sim.control("POST", "/_sim/price", {"symbol": "BTCUSDT", "mark": "93"})
    process = await asyncio.create_subprocess_exec(
        *MONITOR, "once", "--dry-run", "--json", "-c", str(path),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await asyncio.wait_for(process.communicate(), timeout=60)
    assert process.returncode == 0, err.decode()
    alerts = json.loads(out)["alerts"]
    assert [(a["rule"], a["severity"]) for a in alerts] == [("liq", "critical")]
    assert sink.received == [] and not database.exists()


async def test_the_table_shows_the_alerts_as_the_json_does(make_sim: SimFactory, sink: Sink, tmp_path: Path) -> None:
    sim = await _world(make_sim)
    path = _accounts_file(sim, tmp_path, f"sqlite:///{tmp_path}/m.db", sink.url(), RULE.replace('for = "1m"', ""))
    await sim.control("POST", "/_sim/price", {"symbol": "BTCUSDT", "mark": "93"})
    outputs = []
    for extra in (["--json"], []):
        process = await asyncio.create_subprocess_exec(
            *MONITOR, "once", *extra, "-c", str(path), stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
        )
        out, err = await asyncio.wait_for(process.communicate(), timeout=60)
        assert process.returncode == 0, err.decode()
        outputs.append(out.decode())
    (alert,) = json.loads(outputs[0])["alerts"]
    assert alert["state"] == "firing" and alert["severity"] == "critical"
    line = next(x for x in outputs[1].splitlines() if x.startswith("FIRING"))
    assert line.split()[:4] == ["FIRING", "CRITICAL", "iso", "liq"] and line.endswith(alert["summary"])
    assert next(x for x in outputs[1].splitlines() if x.startswith("iso ")).split()[1] == "critical"  # not "ok"
    assert len(sink.received) == 1  # the first run sent it; the second is inside `repeat`


async def test_deliver_timeout_leaves_a_message_queued_for_the_next_run(
    make_sim: SimFactory, tmp_path: Path, aiohttp_server: Any
) -> None:
    answering = False
    received: list[str] = []

    async def hook(request: web.Request) -> web.Response:
        if not answering:  # a channel that hangs: accepts the request and never answers in time
            await asyncio.sleep(30)
            return web.Response(status=500)
        received.append((await request.json())["title"])
        return web.Response(text="ok")

    app = web.Application()
    app.router.add_post("/{path:.*}", hook)
    server = await aiohttp_server(app)
    sim = await _world(make_sim)
    database = f"sqlite:///{tmp_path}/m.db"
    hanging = f"json://127.0.0.1:{server.port}/hook"
    path = _accounts_file(sim, tmp_path, database, hanging, RULE.replace('for = "1m"', ""))
    await sim.control("POST", "/_sim/price", {"symbol": "BTCUSDT", "mark": "93"})
    clock = CronClock()
    first = await _once(path, clock, deliver_timeout=1.0)
    assert first.error is None and (first.sent, first.queued) == (0, 1)
    assert received == []
    answering = True
    # The message cut off mid-delivery stays claimed for two minutes (the delivery thread might still get it
    # through); the run after that delivers it.
    clock.advance(timedelta(minutes=3))
    second = await _once(path, clock)
    assert second.error is None and (second.sent, second.queued) == (1, 0)
    assert received == ["[CRITICAL] iso: BTCUSDT long: 2.25% from liquidation (mark 93, liquidation 90.909)"]
    clock.advance(timedelta(minutes=3))
    third = await _once(path, clock)
    assert (third.sent, third.queued) == (0, 0) and len(received) == 1


async def test_once_exits_3_when_the_cycle_cannot_be_stored(make_sim: SimFactory, sink: Sink, tmp_path: Path) -> None:
    sim = await _world(make_sim)
    closed = unused_port()  # nothing listens there
    for database in (f"postgresql://postgres@127.0.0.1:{closed}/monitor", f"sqlite:///{tmp_path}/missing/m.db"):
        path = _accounts_file(sim, tmp_path, database, sink.url(), RULE.replace('for = "1m"', ""))
        await sim.control("POST", "/_sim/price", {"symbol": "BTCUSDT", "mark": "93"})
        process = await asyncio.create_subprocess_exec(
            *MONITOR, "once", "-c", str(path), stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
        )
        out, err = await asyncio.wait_for(process.communicate(), timeout=60)
        assert process.returncode == 3, err.decode()
        assert "iso      critical" in out.decode()  # the reads are still shown, and what the rules say about them
        assert any(line.split()[:4] == ["BREACHED", "CRITICAL", "iso", "liq"] for line in out.decode().splitlines())
        last = err.decode().strip().splitlines()[-1]
        assert last.startswith("error: database ") and "not (all) stored" in last
        assert sink.received == []


async def test_silences_and_hysteresis_carry_across_once_runs(
    make_sim: SimFactory, sink: Sink, tmp_path: Path, db_url: str
) -> None:
    sim = await _world(make_sim)
    path = _accounts_file(sim, tmp_path, db_url, sink.url(), RULE.replace('for = "1m"', ""))
    clock = CronClock()
    assert (await _once(path, clock)).error is None  # the schema is in place
    store = Store(db_url)
    try:
        now = clock.now()
        await asyncio.to_thread(store.alerts.add_silence, "iso", None, None, now, now + timedelta(minutes=10), "margin")
    finally:
        store.close()

    async def cron(mark: str, after: timedelta = timedelta(minutes=1)) -> tuple[list[str], str | None]:
        await sim.control("POST", "/_sim/price", {"symbol": "BTCUSDT", "mark": mark})
        clock.advance(after)
        before = len(sink.received)
        result = await _once(path, clock)
        assert result.error is None
        (alert,) = result.alerts
        return sink.titles()[before:], alert.severity

    assert await cron("93") == ([], "critical")  # firing, silenced: tracked, quiet
    critical = "[CRITICAL] iso: BTCUSDT long: 2.25% from liquidation (mark 93, liquidation 90.909)"
    assert await cron("93", timedelta(minutes=10)) == ([critical], "critical")  # announced when the silence ends
    assert await cron("95.5") == ([], "critical")  # 4.81 %: past the critical level, not by its `clear`
    eased, severity = await cron("96")  # 5.30 %: past it by more than 1 %: eases back to warning, announced
    assert severity == "warning" and len(eased) == 1 and eased[0].startswith("[WARNING] iso: BTCUSDT long: 5.3")


async def test_a_position_liquidated_between_once_runs_is_announced_liquidated_against_the_mark_read_then(
    make_sim: SimFactory, sink: Sink, tmp_path: Path
) -> None:
    sim = await _world(make_sim)
    path = _accounts_file(sim, tmp_path, f"sqlite:///{tmp_path}/m.db", sink.url(), RULE.replace('for = "1m"\n', ""))
    clock = CronClock()
    await sim.control("POST", "/_sim/price", {"symbol": "BTCUSDT", "mark": "93"})
    assert (await _once(path, clock)).error is None
    assert sink.titles() == ["[CRITICAL] iso: BTCUSDT long: 2.25% from liquidation (mark 93, liquidation 90.909)"]
    await sim.control("POST", "/_sim/price", {"symbol": "BTCUSDT", "mark": "89"})  # the simulator liquidates it
    clock.advance(timedelta(minutes=1))
    result = await _once(path, clock)
    assert result.error is None and result.outcomes[0].snapshot is not None
    assert result.outcomes[0].snapshot.positions == ()
    assert len(sink.received) == 2
    assert sink.titles()[1].startswith("[LIQUIDATED] iso: BTCUSDT long liquidated: mark 89 is past its liquidation")
    assert sink.received[1]["type"] == "failure"


def test_the_table_names_a_failed_account_once_and_its_error_once() -> None:
    at = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
    message = "sim-006: /api/v2/mix/account/accounts: Bitget 40018 (HTTP 400): Invalid IP"
    failed = PollOutcome("sim-006", at, at, error_code="40018", error_message=message)
    assert outcomes_table([failed]).splitlines()[2] == (
        "sim-006: Bitget error 40018 on /api/v2/mix/account/accounts: Invalid IP"
    )
