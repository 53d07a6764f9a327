"""Cycle cost: the monitor's CPU per account-cycle (requests, parsing, storing) against the simulator.

The simulator runs in its own process (limits off), so the figures are the monitor's own. Prints the median
over several cycles.

    .venv/bin/python bench/cycle.py --accounts 1000 --cycles 5
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import aiohttp

from monitor.clock import SystemClock
from monitor.config import load_config
from monitor.poller.scheduler import Poller
from monitor.store import migrations
from monitor.store.repository import Store


async def measure(config_path: Path, cycles: int, database: str) -> None:
    config = load_config(config_path, env={})
    unlimited = dataclasses.replace(config.monitor, ip_budget=(10**9, 60.0))
    config = dataclasses.replace(config, monitor=unlimited)
    migrations.upgrade(database)
    store = Store(database)
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=512)) as session:
        poller = Poller(config, session, SystemClock())
        await poller.cycle()  # warm-up: clock sync, account modes, connections
        fetch_cpu, store_cpu, walls = [], [], []
        for _ in range(cycles):
            cpu, wall = time.process_time(), time.perf_counter()
            outcomes = await poller.cycle()
            fetch_cpu.append(time.process_time() - cpu)
            walls.append(time.perf_counter() - wall)
            cpu = time.process_time()
            store.write_polls(outcomes)
            store_cpu.append(time.process_time() - cpu)
    store.close()
    n = len(config.accounts)
    fetch, write = statistics.median(fetch_cpu), statistics.median(store_cpu)
    print(f"accounts: {n}, cycles: {cycles}, requests per cycle: {sum(o.requests for o in outcomes)}")
    print(f"fetch+parse CPU per account-cycle: {fetch / n * 1000:.3f} ms (cycle wall {statistics.median(walls):.2f} s)")
    print(f"store CPU per account-cycle:       {write / n * 1000:.3f} ms ({database.split(':')[0]})")
    print(f"total CPU per account-cycle:       {(fetch + write) / n * 1000:.3f} ms")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--accounts", type=int, default=1000)
    parser.add_argument("--cycles", type=int, default=5)
    parser.add_argument("--database", help="database URL (default: a temporary SQLite file)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-cycle-") as tmp:
        accounts = Path(tmp) / "accounts.toml"
        sim = subprocess.Popen(
            [sys.executable, "-m", "monitor", "simulate", "--port", "0", "--accounts", str(args.accounts),
             "--no-limits", "--tick", "0", "--write-accounts", str(accounts)],
            stdout=subprocess.PIPE, text=True,
        )  # fmt: skip
        try:
            assert sim.stdout is not None
            sim.stdout.readline()
            asyncio.run(measure(accounts, args.cycles, args.database or f"sqlite:///{tmp}/bench.db"))
        finally:
            sim.terminate()
            sim.wait(timeout=10)


if __name__ == "__main__":
    main()
