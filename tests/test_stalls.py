"""A stalled event loop or a suspended machine is not the exchange's fault: staleness and `unreachable`
intervals leave out the time the monitor could not have polled, while a truly unreachable account still
raises its alert."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import aiohttp

from monitor.alerts.engine import AlertEngine
from monitor.alerts.model import State
from monitor.clock import SystemClock
from monitor.config import Config, load_config
from monitor.domain import AccountMode, AccountSnapshot
from monitor.poller.scheduler import Poller
from monitor.poller.state import AccountState, Status
from monitor.service import Service
from monitor.store import migrations
from monitor.store.repository import Store
from monitor.views import AccountViews
from tests.conftest import SimFactory
from tests.test_web import accounts_file


def unreachable(engine: AlertEngine) -> dict[str, str]:
    """Accounts with an `unreachable` alert pending or firing, and its state."""
    return {
        a.account or "": str(a.state)
        for a in engine.current.values()
        if a.rule == "unreachable" and a.state in (State.PENDING, State.FIRING)
    }


async def test_a_blocked_event_loop_raises_no_unreachable_alert_for_healthy_accounts(
    make_sim: SimFactory, tmp_path: Path
) -> None:
    """The loop blocks for 6 s (as a reload reading a secret from a FIFO once did for 18 s) with polling every
    second: on waking, every healthy account's data is six intervals old, but none of that is their fault."""
    sim = await make_sim(accounts=4)
    victim = "sim-002"
    await sim.control("POST", "/_sim/faults", {"kind": "500", "count": 100_000, "account": victim})
    path = accounts_file(sim, tmp_path, rename=False)
    path.write_text(path.read_text().replace("[monitor]\n", '[monitor]\npoll_interval = "1s"\nstale_grace = "1s"\n'))
    service = Service(path, load_config(path, env={}), SystemClock())
    async with service.started() as poller:
        await service.storage_ready.wait()
        await service.engine.load()
        running = asyncio.create_task(poller.run())

        def judge() -> dict[str, str]:
            now = service.clock.now()
            service.engine.evaluate([service.views.of(r, now) for r in poller.readings()], now)
            return unreachable(service.engine)

        try:
            async with asyncio.timeout(60):  # the truly unreachable one fires after three intervals
                while judge().get(victim) != "firing":
                    await asyncio.sleep(0.2)
            healthy = [s.name for s in poller.active() if s.name != victim]
            async with asyncio.timeout(30):
                while not all(poller.accounts[n].status == Status.OK for n in healthy):
                    await asyncio.sleep(0.1)
            assert judge() == {victim: "firing"}
            time.sleep(6)  # the whole loop stands still: no poll, no watch, nothing
            assert judge() == {victim: "firing"}  # judged at once on waking, before any poll could run
            for _ in range(10):  # and while polling catches up
                await asyncio.sleep(0.2)
                assert judge() == {victim: "firing"}
            assert poller.watch.longest >= 5
        finally:
            running.cancel()
            await asyncio.gather(running, return_exceptions=True)


class SuspendableClock:
    """A clock the test moves: `advance` moves both clocks, `suspend` only the wall clock (a sleeping machine's
    monotonic clock stands still)."""

    def __init__(self) -> None:
        self.wall = datetime(2026, 5, 4, 12, 0, tzinfo=UTC)
        self.mono = 0.0

    def now(self) -> datetime:
        return self.wall

    def monotonic(self) -> float:
        return self.mono

    def advance(self, seconds: float) -> None:
        self.wall += timedelta(seconds=seconds)
        self.mono += seconds

    def suspend(self, seconds: float) -> None:
        self.wall += timedelta(seconds=seconds)


async def test_a_suspended_machine_raises_no_unreachable_alert_but_a_failing_account_still_does(
    tmp_path: Path,
) -> None:
    url = f"sqlite:///{tmp_path}/m.db"
    path = tmp_path / "accounts.toml"
    accounts = "".join(f'[[accounts]]\nname = "{n}"\napi_key = "k"\napi_secret = "s"\npassphrase = "p"\n'
                       for n in ("good", "down"))  # fmt: skip
    path.write_text(f'[monitor]\ndatabase_url = "{url}"\npoll_interval = "10s"\nstale_grace = "5s"\n{accounts}')
    config: Config = load_config(path, env={})
    await asyncio.to_thread(migrations.upgrade, url)
    clock = SuspendableClock()
    store = Store(url)
    engine = AlertEngine(config, store, clock)
    await engine.load()
    views = AccountViews(lambda: config.monitor, engine.last_success)
    async with aiohttp.ClientSession() as session:
        poller = Poller(config, session, clock)
    good, down = poller.accounts["good"], poller.accounts["down"]

    def read(state: AccountState) -> None:  # what a successful poll records
        state.snapshot = AccountSnapshot(state.name, clock.now(), AccountMode.CLASSIC)
        state.status, state.last_good_at, state.polls = Status.OK, clock.now(), state.polls + 1
        state.mark_good()

    def judge() -> dict[str, str]:
        now = clock.now()
        engine.evaluate([views.of(s.reading(), now) for s in (good, down)], now)
        return unreachable(engine)

    down.status, down.polls, down.error_code = Status.FAILING, 1, "ExchangeUnavailable"
    read(good)
    assert judge() == {}
    poller.watch.tick()  # watching from here (as `run` does)
    for _ in range(50):  # 25 s of ordinary time, read every 10 s
        clock.advance(0.5)
        poller.watch.tick()
        if clock.mono % 10 == 0:
            read(good)
    assert judge() == {}  # "down" has had no good data for two intervals so far
    clock.suspend(3600)  # the lid closes for an hour
    assert not good.stale(clock.now(), timedelta(seconds=10), timedelta(seconds=5))
    assert judge() == {}  # judged the moment the machine wakes, before the watch or any poll ran
    for _ in range(24):  # 12 s more of ordinary time: "down" reaches three intervals without good data
        clock.advance(0.5)
        poller.watch.tick()
        if clock.mono % 10 == 0:
            read(good)
    assert judge() == {"down": "firing"}
    assert poller.watch.recorded >= 3599
    store.close()
