"""The liquidation_probability rule end to end: the monitor reads a position from the simulator, holds the rule
while its symbol has too little mark history, and fires once the simulator's own random walk (a known
volatility per step) has given it enough, with the chance the formula gives for that volatility."""

from __future__ import annotations

import asyncio
import math
from datetime import timedelta
from decimal import Decimal
from pathlib import Path

from monitor.alerts.model import State
from monitor.clock import SystemClock
from monitor.risk.odds import hit_probability
from tests.conftest import SimFactory, Sink, until
from tests.launch import accounts_file, running
from tests.scenarios import ONE_POSITION

STEP_VOLATILITY = 0.002  # the simulator's standard deviation of one step's log move
STEP = timedelta(seconds=10)  # the time each step stands for (the history keeps one mark per 10 s)
STEPS = 120  # 20 minutes of history: enough (30 samples over 10 minutes are needed)


async def test_a_position_fires_once_its_symbol_has_enough_mark_history_and_holds_before(
    make_sim: SimFactory, sink: Sink, tmp_path: Path
) -> None:
    scenario = ONE_POSITION.replace("volatility = 0", f"volatility = {STEP_VOLATILITY}")
    sim = await make_sim(scenario=scenario, limits=False)
    odds = (
        '[[rules]]\nname = "odds"\ntype = "liquidation_probability"\nwarning = "5%"\ncritical = "20%"\n'
        'horizon = "24h"\n'
    )
    path = accounts_file(sim, tmp_path, 'poll_interval = "1s"\n', f'[channels]\nchat = ["{sink.url()}"]\n{odds}')
    async with running(path) as service:
        await asyncio.sleep(2.0)  # several judgements: a few seconds of marks say nothing yet, the rule holds
        assert sink.received == []
        assert not [a for a in service.engine.current.values() if a.state in (State.FIRING, State.PENDING)]

        # The simulator's walk, one step per 10 s of history ending now, pushed as a mark feed (or a restart's
        # seeding from stored marks) would.
        now = SystemClock().now()
        samples = []
        for i in range(STEPS):
            await sim.control("POST", "/_sim/step", {"steps": 1})
            state = await sim.control("GET", "/_sim/state")
            samples.append((now - (STEPS - 1 - i) * STEP, Decimal(state["marks"]["USDT-FUTURES:BTCUSDT"])))
        service.mark_history.add_many("USDT-FUTURES", "BTCUSDT", samples)

        await until(lambda: any(r["title"].startswith("[CRITICAL] iso: BTCUSDT long: ") for r in sink.received))
        (alert,) = [a for a in service.engine.current.values() if a.state is State.FIRING]
        assert "chance of liquidation within 24h" in alert.summary
        state = await sim.control("GET", "/_sim/state")
        (position,) = state["accounts"][0]["positions"]
        sigma = STEP_VOLATILITY / math.sqrt(STEP.total_seconds())
        expected = hit_probability(Decimal(position["mark"]), Decimal(position["liquidation_price"]), sigma,
                                   timedelta(hours=24)) * 100  # fmt: skip
        # The estimate from 120 steps is within about 15 % of the true volatility (its standard error is 6.5 %).
        low = hit_probability(Decimal(position["mark"]), Decimal(position["liquidation_price"]), sigma * 0.85,
                              timedelta(hours=24)) * 100  # fmt: skip
        high = hit_probability(Decimal(position["mark"]), Decimal(position["liquidation_price"]), sigma * 1.15,
                               timedelta(hours=24)) * 100  # fmt: skip
        assert alert.value is not None
        assert low <= float(alert.value) <= high, (alert.value, expected)


async def test_after_a_restart_the_mark_history_is_seeded_from_the_stored_position_marks(tmp_path: Path) -> None:
    import random
    from dataclasses import replace
    from datetime import UTC, datetime

    from monitor.domain import PollOutcome
    from monitor.risk.odds import MarkHistory
    from monitor.store import migrations
    from monitor.store.repository import Store
    from monitor.views import AccountViews
    from tests.test_reports import ok

    url = f"sqlite:///{tmp_path}/m.db"
    migrations.upgrade(url)
    store = Store(url, snapshot_interval=timedelta(0))  # every read's positions stored
    rng = random.Random(7)
    start, step, sigma_step = datetime(2026, 3, 2, 8, 0, tzinfo=UTC), timedelta(minutes=1), 0.003
    mark = 60000.0
    try:
        for i in range(240):  # four hours of reads, one a minute
            mark *= math.exp(rng.gauss(0.0, sigma_step))
            outcome = ok("alpha", start + i * step, "1000", liq="50000")
            assert outcome.snapshot is not None
            moved = replace(outcome.snapshot.positions[0], mark_price=Decimal(f"{mark:.2f}"))
            snapshot = replace(outcome.snapshot, positions=(moved,))
            store.write_polls([PollOutcome("alpha", outcome.started_at, outcome.finished_at, snapshot=snapshot)])
        now = start + 240 * step
        history = MarkHistory()
        views = AccountViews(lambda: None, {}, history)  # type: ignore[arg-type, return-value]  # settings unread
        assert await views.seed_marks(store, now) == 1
        assert len(history.samples("USDT-FUTURES", "BTCUSDT")) == 240
        estimate = history.volatility("USDT-FUTURES", "BTCUSDT", now)
        assert estimate is not None
        true = sigma_step / math.sqrt(step.total_seconds())
        assert abs(estimate / true - 1) < 0.15  # 240 returns: a standard error of about 4.6 %
        assert await AccountViews(lambda: None, {}, None).seed_marks(store, now) == 0  # type: ignore[arg-type, return-value]
    finally:
        store.close()
