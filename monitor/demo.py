"""`bitget-monitor demo`: the simulator, the monitor and its web page in one process, on a temporary SQLite
database. One position drifts toward liquidation so an alert shows up within a minute, on the page and on the
console channel."""

from __future__ import annotations

import asyncio
import json
import logging
import tempfile
from decimal import Decimal
from pathlib import Path

from aiohttp import web

from monitor.clock import SystemClock
from monitor.config import load_config
from monitor.service import Service
from monitor.simulator.app import simulator_app
from monitor.simulator.generate import generate_world, write_accounts_file
from monitor.simulator.market import SimAccount, SimPosition
from monitor.simulator.server import Simulator
from monitor.simulator.world import World

log = logging.getLogger(__name__)

DRIFT_SECONDS = 40.0  # how long the chosen mark takes to get close to liquidation
DRIFT_TARGET = Decimal("0.04")  # ... this close: inside the default critical level (7 %)
DEMO_VOLATILITY = 0.00015  # sd of one second's relative move: 0.9 % an hour


async def demo(port: int, accounts: int, seed: int, stop: asyncio.Event) -> None:
    world = generate_world(accounts, seed)
    # Marks wander a little every second (about 1 % an hour, so the odds of liquidation have a volatility to
    # work from); the drift below is the one large move.
    world.market.volatility = DEMO_VOLATILITY
    sim = Simulator(world, tick=1.0)
    sim_runner = web.AppRunner(simulator_app(sim), access_log=None)
    await sim_runner.setup()
    await web.TCPSite(sim_runner, "127.0.0.1", 0).start()
    sim_url = f"http://127.0.0.1:{sim_runner.addresses[0][1]}"
    with tempfile.TemporaryDirectory(prefix="bitget-monitor-demo-") as folder:
        path = Path(folder) / "accounts.toml"
        write_accounts_file(world, path, sim_url)
        settings = (
            f'database_url = {json.dumps(f"sqlite:///{folder}/demo.db")}\npoll_interval = "5s"\n'
            f'risk_poll_interval = "2s"\n'
        )
        extra = f'[web]\nlisten = "127.0.0.1:{port}"\n[channels]\nconsole = ["console://"]\n'
        text = path.read_text().replace("[monitor]\n", "[monitor]\n" + settings, 1)
        path.write_text(text.replace("[[accounts]]", extra + "[[accounts]]", 1))
        service = Service(path, load_config(path), SystemClock())
        drift = asyncio.create_task(_drift(world), name="demo drift")
        run = asyncio.create_task(service.run(stop), name="monitor")
        try:
            while service.web_url is None and not run.done():
                await asyncio.sleep(0.05)
            if service.web_url is not None:
                print(f"bitget-monitor demo: {len(world.accounts)} simulated accounts; status page on "
                      f"{service.web_url}  (Ctrl-C to stop)", flush=True)  # fmt: skip
            await run
        finally:
            drift.cancel()
            await asyncio.gather(drift, return_exceptions=True)
            await sim_runner.cleanup()
            # A stop during start-up leaves the migration running in its thread, writing into the folder:
            # let it end before the folder goes.
            await asyncio.get_running_loop().shutdown_default_executor()


def _candidate(world: World) -> tuple[SimAccount, SimPosition, Decimal] | None:
    """A position with a liquidation price about 25 % away: far enough to start calm, near enough that the
    drift does not drag the other positions on its symbol through theirs."""
    best: tuple[Decimal, SimAccount, SimPosition, Decimal] | None = None
    for account in world.accounts.values():
        for position in account.positions:
            price = world.market.liquidation_price(account, position)
            mark = world.market.symbol(position.product_type, position.symbol).mark
            if price is None or price <= 0 or not mark:
                continue
            gap = abs(abs(mark - price) / mark - Decimal("0.25"))
            if best is None or gap < best[0]:
                best = (gap, account, position, price)
    return (best[1], best[2], best[3]) if best else None


async def _drift(world: World) -> None:
    """Move one symbol's mark from where it is to just short of a position's liquidation price."""
    found = _candidate(world)
    if found is None:
        log.warning("demo: no position with a liquidation price to drift")
        return
    account, position, liquidation = found
    symbol = world.market.symbol(position.product_type, position.symbol)
    start = symbol.mark
    side = 1 if position.side == "long" else -1
    target = liquidation * (1 + side * DRIFT_TARGET)
    log.info("demo: %s's %s %s drifts from %s toward liquidation at %s", account.name, position.symbol,
             position.side, start, liquidation)  # fmt: skip
    steps = int(DRIFT_SECONDS)
    for i in range(1, steps + 1):
        await asyncio.sleep(1)
        symbol.mark = (start + (target - start) * i / steps).quantize(symbol.tick_size)
