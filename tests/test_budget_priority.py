"""Risk first under a full per-IP budget: confirming reads and the re-reads of an account near liquidation go
ahead of routine reads, which stretch instead; nothing meets a 429 (simulator limits on, a small budget)."""

from __future__ import annotations

import asyncio
import statistics
from pathlib import Path

from monitor.clock import SystemClock
from monitor.poller.scheduler import Poller
from tests.conftest import SimFactory, until
from tests.test_poller import _config

RUN = 6.0  # seconds of polling at a full budget
RISK_INTERVAL = 0.5
POLL_INTERVAL = 1.0


async def test_at_a_full_ip_budget_risk_and_confirming_reads_keep_their_cadence_and_routine_reads_stretch(
    make_sim: SimFactory, tmp_path: Path
) -> None:
    sim = await make_sim(accounts=16, ip_per_minute=15, ip_window=1.0, lockout=60)  # 15 requests a second
    config = _config(sim, tmp_path, ip_budget="15/s", poll_interval=f"{POLL_INTERVAL}s",
                     risk_poll_interval=f"{RISK_INTERVAL}s")  # fmt: skip
    poller = Poller(config, sim.session, SystemClock())
    await poller.cycle()
    risky = [s.name for s in poller.accounts.values() if s.at_risk]
    assert 1 <= len(risky) <= 2  # the simulator's accounts near liquidation: their re-reads fit in the budget
    routine = [s for s in poller.accounts.values() if not s.at_risk]
    before = {s.name: s.polls for s in poller.accounts.values()}
    poller.start(stagger=False)
    try:
        await asyncio.sleep(RUN / 2)
        # A confirming read, asked while every routine account waits in the queue, is read before most of them.
        confirmed = routine[-1]
        polls, others = confirmed.polls, sum(s.polls for s in routine if s is not confirmed)
        assert poller.read_now(confirmed.name)
        await until(lambda: confirmed.polls > polls)
        overtaken = sum(s.polls for s in routine if s is not confirmed) - others
        await asyncio.sleep(RUN / 2)
    finally:
        await poller.stop()
    polls = {name: s.polls - before[name] for name, s in poller.accounts.items()}
    routine_polls = statistics.median(polls[s.name] for s in routine)
    # The accounts near liquidation are re-read at least at half their cadence ...
    assert min(polls[name] for name in risky) >= RUN / RISK_INTERVAL / 2, polls
    # ... while the routine reads stretch: fewer than half of what poll_interval asks for fit in the budget.
    assert routine_polls < RUN / POLL_INTERVAL / 2, polls
    assert overtaken < len(routine) / 2, overtaken
    assert sum(sim.sim.rate_limited.values()) == 0 and sim.sim.ip_limiter.lockouts == 0
