"""Memory: the whole monitor (poller, writer, alerts, sender, web page) with many accounts configured, in
steady state, against the simulator in its own process (limits off). Prints resident memory over time.

    .venv/bin/python -m bench.memory --accounts 5000 --seconds 180
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import statistics
from pathlib import Path

from bench.common import configure, current_rss_mb, simulator
from monitor.clock import SystemClock
from monitor.config import load_config
from monitor.service import Service

TARGET_MB = 300.0


async def measure(path: Path, seconds: float) -> None:
    settings = (f'database_url = "sqlite:///{path.parent}/memory.db"\nip_budget = "1000000/min"\n'
                'poll_interval = "30s"\n')  # fmt: skip
    configure(path, settings, '[web]\nlisten = "127.0.0.1:0"\n')
    service = Service(path, load_config(path, env={}), SystemClock())
    stop = asyncio.Event()
    task = asyncio.create_task(service.run(stop))
    samples: list[tuple[float, float]] = []
    elapsed = 0.0
    while elapsed < seconds:
        await asyncio.sleep(10)
        elapsed += 10
        gc.collect()
        samples.append((elapsed, current_rss_mb()))
        status = service.poller.status() if service.poller else None
        print(f"{elapsed:5.0f} s  RSS {samples[-1][1]:6.1f} MB"
              + (f"  ({status.ok} ok of {status.accounts})" if status else ""), flush=True)  # fmt: skip
    stop.set()
    await task
    steady = [rss for at, rss in samples if at > seconds / 2]
    print(f"accounts: {len(service.config.accounts)}; steady state (second half): median "
          f"{statistics.median(steady):.0f} MB, max {max(steady):.0f} MB (target {TARGET_MB:.0f} MB)")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--accounts", type=int, default=5000)
    parser.add_argument("--seconds", type=float, default=180.0)
    args = parser.parse_args()
    with simulator(args.accounts) as path:
        asyncio.run(measure(path, args.seconds))


if __name__ == "__main__":
    main()
