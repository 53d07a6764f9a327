"""Cycle cost: the monitor's CPU per account-cycle (all requests, parsing, storing, rule evaluation) against the
simulator in its own process, and a baseline doing only the same fetches with ccxt's async bitget client.

Accounts are classic HMAC accounts with spot and USDT-futures and a few positions each (the kind ccxt reads
the same way). Prints medians over several cycles.

    .venv/bin/python -m bench.cycle --accounts 1000 --cycles 5
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import statistics
import time

import aiohttp

from bench.ccxt_baseline import ccxt_accounts, cpu_per_cycle
from bench.common import simulator
from monitor.alerts.engine import AlertEngine
from monitor.clock import SystemClock
from monitor.config import Config, load_config
from monitor.poller.scheduler import Poller
from monitor.runtime import tune_gc
from monitor.store import migrations
from monitor.store.repository import Store
from monitor.views import AccountViews

TARGET_MS = 1.0


def eligible(config: Config, wanted: int) -> Config:
    """Classic HMAC live accounts with spot and USDT-futures: what both clients read alike."""
    accounts = [a for a in config.accounts if a.key_type == "hmac" and not a.demo and "unified" not in a.tags
                and a.products == ("spot", "USDT-FUTURES")][:wanted]  # fmt: skip
    monitor = dataclasses.replace(config.monitor, ip_budget=(10**9, 60.0))
    return dataclasses.replace(config, accounts=tuple(accounts), monitor=monitor)


async def ours(config: Config, cycles: int, database: str) -> tuple[list[float], int]:
    migrations.upgrade(database)
    # The default snapshot_interval: the warm-up stores full rows, the measured cycles what a steady cycle
    # stores (every 10th cycle at 30 s stores full rows again, about 0.02 ms per account-cycle amortized).
    store = Store(database, snapshot_interval=config.storage.snapshot_interval)
    clock = SystemClock()
    engine = AlertEngine(config, store, clock)
    await engine.load()
    views = AccountViews(lambda: config.monitor, engine.last_success)
    cpu_per_cycle = []
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=512)) as session:
        poller = Poller(config, session, clock)
        tune_gc()  # as the service does once its poller is built; the baseline below runs under it too
        store.write_polls(await poller.cycle())  # warm-up: clock sync, modes, key permissions, connections
        for _ in range(cycles):
            cpu = time.process_time()
            outcomes = await poller.cycle()
            store.write_polls(outcomes)
            now = clock.now()
            engine.evaluate([views.of(s.reading(), now) for s in poller.active()], now, portfolio=True)
            await engine.flush()
            cpu_per_cycle.append(time.process_time() - cpu)
    store.close()
    return cpu_per_cycle, sum(o.requests for o in outcomes)


async def baseline(config: Config, url: str, cycles: int) -> list[float]:
    async with ccxt_accounts(config, url, rate_limit=True) as (exchanges, fetch):
        return await cpu_per_cycle(exchanges, fetch, cycles)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--accounts", type=int, default=1000)
    parser.add_argument("--cycles", type=int, default=5)
    parser.add_argument("--database", help="database URL (default: a temporary SQLite file)")
    args = parser.parse_args()
    # About one generated account in eight is a classic HMAC live spot + USDT-futures account.
    with simulator(args.accounts * 8) as path:
        config = eligible(load_config(path, env={}), args.accounts)
        url = config.monitor.bitget_url
        n = len(config.accounts)
        database = args.database or f"sqlite:///{path.parent}/bench.db"
        mine, requests = asyncio.run(ours(config, args.cycles, database))
        theirs = asyncio.run(baseline(config, url, args.cycles))
    ours_ms = statistics.median(mine) / n * 1000
    ccxt_ms = statistics.median(theirs) / n * 1000
    print(f"accounts: {n}, cycles: {args.cycles}, requests per account-cycle: {requests / n:.1f}")
    print(f"monitor, full cycle (fetch, parse, store on {database.split(':')[0]}, rules): "
          f"{ours_ms:.3f} ms CPU per account-cycle (target {TARGET_MS} ms)")  # fmt: skip
    print(f"ccxt async bitget, the same fetches only:      {ccxt_ms:.3f} ms CPU per account-cycle")
    print(f"ratio monitor / ccxt: {ours_ms / ccxt_ms:.2f} (target <= 1)")


if __name__ == "__main__":
    main()
