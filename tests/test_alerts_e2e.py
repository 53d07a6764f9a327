"""End to end: `run` against the simulator; a mark moves toward liquidation and back; messages reach a sink."""

from __future__ import annotations

import asyncio
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from monitor.clock import SystemClock
from monitor.config import load_config
from monitor.service import Service
from monitor.simulator.generate import write_accounts_file
from monitor.simulator.world import load_scenario
from tests.conftest import SimFactory, Sink, until
from tests.test_simulator import SCENARIO


async def test_a_mark_crossing_the_critical_level_sends_one_critical_and_then_one_resolved_message(
    make_sim: SimFactory, sink: Sink, tmp_path: Path
) -> None:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    (tmp_path / "cross.pem").write_bytes(pem)
    (tmp_path / "scenario.toml").write_text(SCENARIO)
    sim = await make_sim(world=load_scenario(tmp_path / "scenario.toml"))
    path = tmp_path / "accounts.toml"
    write_accounts_file(sim.world, path, sim.url)
    monitor = f'database_url = "sqlite:///{tmp_path}/m.db"\npoll_interval = "1s"\nrisk_poll_interval = "200ms"\n'
    alerting = (
        f'[web]\nlisten = "127.0.0.1:0"\n[channels]\nops = ["{sink.url()}"]\n'
        '[[rules]]\nname = "liq"\ntype = "liquidation_distance"\nwarning = "5%"\ncritical = "3%"\nclear = "1%"\n'
    )
    text = path.read_text().replace("[monitor]\n", "[monitor]\n" + monitor, 1)
    path.write_text(text.replace("[[accounts]]", alerting + "[[accounts]]", 1))
    service = Service(path, load_config(path, env={}), SystemClock())
    stop = asyncio.Event()
    task = asyncio.create_task(service.run(stop))
    try:
        await until(lambda: service.engine.ready and all(s.polls for s in service.poller.accounts.values()))  # type: ignore[union-attr]
        await asyncio.sleep(1.5)
        assert sink.received == []  # 9.1 % from liquidation: fine
        await sim.control("POST", "/_sim/price", {"symbol": "BTCUSDT", "mark": "93"})  # 2.2 %
        await until(lambda: len(sink.received) >= 1)
        await asyncio.sleep(2.0)  # several more polls: no repeats, no duplicates
        assert sink.titles() == ["[CRITICAL] iso: BTCUSDT long: 2.25% from liquidation (mark 93, liquidation 90.909)"]
        await sim.control("POST", "/_sim/price", {"symbol": "BTCUSDT", "mark": "100"})
        await until(lambda: len(sink.received) >= 2)
        await asyncio.sleep(2.0)
        assert len(sink.received) == 2
        assert sink.titles()[1].startswith("[RESOLVED] iso: BTCUSDT long: 9.09% from liquidation")
    finally:
        stop.set()
        await asyncio.wait_for(task, timeout=15)
