"""Web: request time for the overview and an account page with many accounts, the simulator in its own
process. Every account is read once first; with --marks, every symbol held has a day of marks (one per 10 s, as the
feed leaves it), so the pages show the odds of liquidation. Prints medians.

    .venv/bin/python -m bench.web --accounts 2000 [--marks]
"""

from __future__ import annotations

import argparse
import asyncio
import math
import random
import statistics
import time
from datetime import timedelta
from decimal import Decimal
from pathlib import Path

from aiohttp.test_utils import TestClient, TestServer

from bench.common import configure, simulator
from monitor.clock import SystemClock
from monitor.config import load_config
from monitor.readmodel import ServiceReader
from monitor.service import Service
from web.app import create_app

TARGETS = {"/": 100.0, "/accounts/sim-002": 50.0}  # ms, median


def seed_day(service: Service) -> int:
    """A day of marks (a random walk ending at the mark as read) for every symbol the accounts hold."""
    assert service.poller is not None
    now, rng = service.clock.now(), random.Random(1)
    held = {(p.product_type, p.symbol): p.mark_price for s in service.poller.active() if s.snapshot
            for p in s.snapshot.positions}  # fmt: skip
    steps = int(timedelta(hours=24) / service.mark_history.resolution)
    for (product_type, symbol), mark in held.items():
        walk = [0.0]
        for _ in range(steps):
            walk.append(walk[-1] + rng.gauss(0, 0.0005))
        service.mark_history.add_many(product_type, symbol, [
            (now - service.mark_history.resolution * (steps - i), mark * Decimal(math.exp(x - walk[-1])))
            for i, x in enumerate(walk)
        ])  # fmt: skip
    return len(held)


async def measure(path: Path, requests: int, marks: bool) -> None:
    settings = f'database_url = "sqlite:///{path.parent}/web.db"\nip_budget = "1000000/s"\n'
    configure(path, settings)
    service = Service(path, load_config(path, env={}), SystemClock())
    async with service.started() as poller:
        await poller.cycle()
        await service.storage_ready.wait()
        await service.writer.flush(60)
        await service.engine.load()
        now = service.clock.now()
        service.engine.evaluate([service.views.of(s.reading(), now) for s in poller.active()], now)
        if marks:
            print(f"mark history: {seed_day(service)} symbols, a day of marks each")
        client = TestClient(TestServer(create_app(ServiceReader(service))))
        await client.start_server()
        try:
            pages = [*TARGETS, "/?sort=equity&dir=desc&page=3", "/alerts", "/api/v1/status", "/metrics"]
            print(f"accounts: {len(poller.accounts)}, firing alerts: {len(service.engine.firing())}")
            for page in pages:
                times = []
                for _ in range(requests):
                    start = time.perf_counter()
                    response = await client.get(page)
                    await response.read()
                    times.append((time.perf_counter() - start) * 1000)
                target = f" (target {TARGETS[page]:.0f} ms)" if page in TARGETS else ""
                print(f"{page:32} {response.status}  median {statistics.median(times):6.1f} ms{target}")
        finally:
            await client.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--accounts", type=int, default=2000)
    parser.add_argument("--requests", type=int, default=9)
    parser.add_argument("--marks", action="store_true", help="a day of marks per symbol (the odds shown)")
    args = parser.parse_args()
    with simulator(args.accounts) as path:
        asyncio.run(measure(path, args.requests, args.marks))


if __name__ == "__main__":
    main()
