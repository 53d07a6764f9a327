"""End to end: `run` against the simulator; a mark moves toward liquidation and back; messages reach a sink."""

from __future__ import annotations

import asyncio
from pathlib import Path

from tests.conftest import SimFactory, Sink, until
from tests.launch import liquidation_watch, running
from tests.scenarios import TWO_ACCOUNTS


async def test_a_mark_crossing_the_critical_level_sends_one_critical_and_then_one_resolved_message(
    make_sim: SimFactory, sink: Sink, tmp_path: Path
) -> None:
    sim = await make_sim(scenario=TWO_ACCOUNTS)
    path = liquidation_watch(sim, tmp_path, sink)
    async with running(path):
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
