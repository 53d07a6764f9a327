"""`bitget-monitor demo`: the simulator, the monitor and its web page in one process, on a temporary SQLite
database. One position drifts into liquidation within a minute (warning, critical, liquidated, on the page and on
the console channel); the crash that takes it liquidates nobody else, and the positions near their liquidation
from the start (some generated accounts are risky) show warnings."""

from __future__ import annotations

import asyncio
import json
import logging
import tempfile
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path

from aiohttp import web

from monitor.clock import SystemClock
from monitor.config import load_config
from monitor.rules.model import DEFAULT_RULES, RuleType
from monitor.service import Service
from monitor.simulator.app import simulator_app
from monitor.simulator.generate import generate_world, write_accounts_file
from monitor.simulator.market import SimAccount, SimPosition
from monitor.simulator.server import Simulator
from monitor.simulator.world import World

log = logging.getLogger(__name__)

DRIFT_SECONDS = 40.0  # how long the chosen mark takes to get past the chosen position's liquidation price
DRIFT_PAST = Decimal("0.01")  # ... this far past it (a fraction of the price): the position is liquidated
CALM = Decimal("0.25")  # the distance from liquidation the chosen position best starts at
# The default rules' warning distance, as a fraction: the chosen position starts outside it (calm).
WARNING: Decimal = next(r.warning for r in DEFAULT_RULES if r.type is RuleType.LIQUIDATION_DISTANCE) / 100
SPARE = Decimal("0.03")  # every other position on the symbol ends at least this far from its liquidation
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


@dataclass(frozen=True, slots=True)
class Drift:
    """The demo's one large move: the mark of `position`'s symbol from `start` to `target`, a little past the
    position's liquidation price and short of every other position's on that symbol."""

    account: SimAccount
    position: SimPosition
    liquidation: Decimal
    start: Decimal
    target: Decimal

    def marks(self, steps: int, tick: Decimal) -> list[Decimal]:
        """The mark after each of `steps` even steps (the last one is `target`)."""
        return [(self.start + (self.target - self.start) * i / steps).quantize(tick) for i in range(1, steps + 1)]


def plan(world: World) -> Drift | None:
    """The drift that liquidates one position alone, of the position starting nearest CALM from its liquidation
    (and past the warning level, so its alert starts calm): an isolated position or the only one of its cross
    pool (a cross pool is liquidated as a whole), with every other position on its symbol, in any account,
    ending at least SPARE from its own liquidation price. None when no position qualifies (a world too small)."""
    market = world.market
    best: tuple[Decimal, Drift] | None = None
    for account in world.accounts.values():
        for position in account.positions:
            if position.margin_mode == "crossed" and _pool_size(account, position) > 1:
                continue
            liquidation = market.liquidation_price(account, position)
            mark = market.mark(position)
            if liquidation <= 0 or not mark:
                continue
            distance = (mark - liquidation) / mark * position.direction
            target = liquidation * (1 - position.direction * DRIFT_PAST)
            if distance <= WARNING or not _spares_the_others(world, position, target):
                continue
            drift = Drift(account, position, liquidation, mark, target)
            if best is None or abs(distance - CALM) < best[0]:
                best = (abs(distance - CALM), drift)
    return best[1] if best else None


def _pool_size(account: SimAccount, p: SimPosition) -> int:
    """How many positions share p's cross pool (p's account, product type and margin coin, crossed)."""
    pool = (p.product_type, p.margin_coin)
    return sum(1 for x in account.positions if x.margin_mode == "crossed" and (x.product_type, x.margin_coin) == pool)


def _spares_the_others(world: World, chosen: SimPosition, target: Decimal) -> bool:
    """Whether every other position on the chosen one's symbol is at least SPARE from its liquidation price
    with the mark at `target`. A position's liquidation price does not depend on its own symbol's mark (the
    simulator's arithmetic), and an isolated position's liquidation leaves its account's cross pool as it was."""
    for account in world.accounts.values():
        for other in account.positions:
            if other is chosen or (other.product_type, other.symbol) != (chosen.product_type, chosen.symbol):
                continue
            liquidation = world.market.liquidation_price(account, other)
            if liquidation > 0 and (target - liquidation) / target * other.direction < SPARE:
                return False
    return True


async def _drift(world: World) -> None:
    """Move one symbol's mark from where it is to a little past one position's liquidation price (plan)."""
    drift = plan(world)
    if drift is None:
        log.warning("demo: no position can be liquidated alone; the marks only wander")
        return
    position = drift.position
    symbol = world.market.symbol(position.product_type, position.symbol)
    log.info("demo: %s's %s %s drifts from %s past its liquidation at %s", drift.account.name, position.symbol,
             position.side, drift.start, drift.liquidation)  # fmt: skip
    for mark in drift.marks(int(DRIFT_SECONDS), symbol.tick_size):
        await asyncio.sleep(1)
        symbol.mark = mark
