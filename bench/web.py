"""Web: request time for the overview and an account page with many accounts, the simulator in its own
process. Every account is read once first. Prints medians.

    .venv/bin/python -m bench.web --accounts 2000
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
from pathlib import Path

from aiohttp.test_utils import TestClient, TestServer

from bench.common import configure, simulator
from monitor.clock import SystemClock
from monitor.config import load_config
from monitor.readmodel import ServiceReader
from monitor.service import Service
from web.app import create_app

TARGETS = {"/": 100.0, "/accounts/sim-002": 50.0}  # ms, median


async def measure(path: Path, requests: int) -> None:
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
    args = parser.parse_args()
    with simulator(args.accounts) as path:
        asyncio.run(measure(path, args.requests))


if __name__ == "__main__":
    main()
