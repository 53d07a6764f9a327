"""Rate-limit fidelity: more accounts than the per-IP budget can serve in one interval, simulator limits on
(a reduced per-IP budget keeps the run short). Counts the simulator's 429s and the achieved request rate in
the steady part of the run, against the budget.

    .venv/bin/python -m bench.ratelimit --accounts 200 --ip-limit 600 --minutes 2
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
from typing import Any

import aiohttp

from bench.common import configure, simulator
from monitor.clock import SystemClock
from monitor.config import load_config
from monitor.poller.scheduler import Poller

TARGET = 0.95  # of the budget


async def measure(path: Any, ip_limit: int, minutes: int) -> None:
    """The rate is measured over whole minutes: a sliding minute allows up to twice the budget in a minute and
    a half (a burst at each end), so only whole windows compare with the budget."""
    settings = f'ip_budget = "{ip_limit}/min"\npoll_interval = "30s"\n'
    configure(path, settings)
    config = load_config(path, env={})
    url = config.monitor.bitget_url
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=512)) as session:

        async def stats() -> dict[str, int]:
            async with session.get(url + "/_sim/stats") as response:
                totals: dict[str, int] = (await response.json())["totals"]
                return totals

        poller = Poller(config, session, SystemClock())
        task = asyncio.create_task(poller.run())
        warmup = 60.0  # one full window: the first minute may start with a burst the budget allows
        await asyncio.sleep(warmup)
        first = await stats()
        await asyncio.sleep(60.0 * minutes)
        last = await stats()
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    rate = (last["requests"] - first["requests"]) / (60.0 * minutes)
    budget = ip_limit / 60
    demand = sum(len(a.products) + 2 for a in config.accounts) / 30
    print(f"accounts: {len(config.accounts)}, demand about {demand:.0f} requests/s, per-IP budget {budget:.1f}/s")
    print(f"429s from the simulator: {last['rate_limited']} (target 0), IP lock-outs: {last['ip_lockouts']}")
    print(f"achieved rate over {minutes} whole minutes after the first: {rate:.2f}/s = {rate / budget:.1%} "
          f"of the budget (target >= {TARGET:.0%})")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--accounts", type=int, default=200)
    parser.add_argument("--ip-limit", type=int, default=600, help="the simulator's requests per minute per IP")
    parser.add_argument("--minutes", type=int, default=2, help="whole minutes measured after a minute of warm-up")
    args = parser.parse_args()
    with simulator(args.accounts, "--ip-limit", str(args.ip_limit)) as path:
        asyncio.run(measure(path, args.ip_limit, args.minutes))


if __name__ == "__main__":
    main()
