"""Capacity of one IP: signed requests per account-minute of spot + USDT-futures classic accounts polled every
30 s (spot balances every 5 minutes, valued at the market feed in between), the accounts one IP's 6000/min then
serve with the feed's own requests taken out, and, over-subscribed (more accounts than a reduced per-IP budget
serves, simulator limits on), the share of the budget used and the 429s met, feed included.

    .venv/bin/python -m bench.capacity --accounts 200 --minutes 5 --over-accounts 400 --ip-limit 1200

Only the simulator's spot + USDT-futures classic accounts are kept (it generates every kind). The poller and the
market feed run as `run` wires them (the feed sees each read's positions and values the spot coins); the
store and the alert path are left out: they send nothing to Bitget.
"""

from __future__ import annotations

import argparse
import asyncio
from pathlib import Path
from typing import Any

import aiohttp

from bench.common import configure, simulator
from monitor.clock import SystemClock
from monitor.config import load_config
from monitor.exchange.bitget import endpoints as ep
from monitor.market.watch import MarketWatch
from monitor.poller.scheduler import Poller
from monitor.risk.odds import MarkHistory

BITGET_BUDGET = 6000  # per IP per minute
MARGIN = 0.03  # the poller keeps this far below it (IpBudget)
ACCOUNTS_TARGET = 1300
SHARE_TARGET = 0.95
KEY_CHECK = 1 / 60  # the key's permissions are read once an hour: per account-minute
WARMUP = 60.0  # seconds: every account's first read (key, mode, spot) is done, staggered over poll_interval


async def keep_classic(path: Path) -> None:
    """Cut the simulator's accounts file down to its spot + USDT-futures classic accounts."""
    url = load_config(path, env={}).monitor.bitget_url + "/_sim/state"
    async with aiohttp.ClientSession() as session, session.get(url) as response:
        state = await response.json()
    keep = {a["name"] for a in state["accounts"] if not a["unified"] and a["products"] == ["spot", "USDT-FUTURES"]}
    head, *blocks = path.read_text().split("[[accounts]]")
    kept = [b for b in blocks if b.split('name = "', 1)[1].split('"', 1)[0] in keep]
    path.write_text(head + "".join("[[accounts]]" + b for b in kept))


async def poll(path: Path, seconds: float, settings: str) -> tuple[dict[str, Any], dict[str, Any], Poller]:
    """Poll the accounts with the feed running; the simulator's stats after the warm-up and at the end."""
    await keep_classic(path)
    configure(path, settings)
    config = load_config(path, env={})
    clock = SystemClock()
    url = config.monitor.bitget_url
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=512)) as session:

        async def stats() -> dict[str, Any]:
            async with session.get(url + "/_sim/stats") as response:
                return dict(await response.json())

        poller = Poller(config, session, clock)
        market = MarketWatch(config, session, poller.ip_budget, clock, MarkHistory())
        poller.sink = lambda reading, _: market.polled(reading.name, reading.snapshot)
        poller.spot_prices = market.spot_price
        tasks = [asyncio.create_task(poller.run()), asyncio.create_task(market.run())]
        try:
            await asyncio.sleep(WARMUP)
            first = await stats()
            await asyncio.sleep(seconds)
            last = await stats()
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
    return first, last, poller


def _count(stats: dict[str, Any], names: set[str], paths: set[str]) -> int:
    return sum(n for name, by_path in stats["requests"].items() if name in names for p, n in by_path.items()
               if p in paths)  # fmt: skip


async def steady(path: Path, minutes: float) -> None:
    first, last, poller = await poll(path, 60 * minutes, 'poll_interval = "30s"\nip_budget = "1000000/min"\n')
    signed = {e.path for e in ep.ALL if e.signed}
    routine = {s.name for s in poller.accounts.values() if not s.at_risk and s.history}
    risky = {s.name for s in poller.accounts.values() if s.at_risk}
    per_minute = (_count(last, routine, signed) - _count(first, routine, signed)) / len(routine) / minutes
    at_risk = (_count(last, risky, signed) - _count(first, risky, signed)) / max(1, len(risky)) / minutes
    public = {e.path for e in ep.ALL if not e.signed}
    feed = (_count(last, {"-"}, public) - _count(first, {"-"}, public)) / minutes
    by_path: dict[str, float] = {}
    for name in routine:
        for p, n in last["requests"].get(name, {}).items():
            by_path[p] = by_path.get(p, 0) + (n - first["requests"].get(name, {}).get(p, 0)) / len(routine) / minutes
    budget = BITGET_BUDGET * (1 - MARGIN)
    cost = per_minute + KEY_CHECK
    print(f"spot + USDT-futures classic accounts: {len(poller.accounts)} ({len(routine)} read every 30 s, "
          f"{len(risky)} at risk, re-read every 5 s, left out); measured over {minutes:.0f} minutes after a "
          f"minute of warm-up")  # fmt: skip
    for p, n in sorted(by_path.items()):
        print(f"  {p}: {n:.3f} per account-minute")
    print(f"signed requests per account-minute: {per_minute:.2f} measured, {cost:.2f} with the hourly key check "
          f"= {cost / 2:.2f} per read (target <= 2.2)")  # fmt: skip
    print(f"an account at risk (re-read every 5 s, futures only): {at_risk:.1f} signed requests per account-minute")
    print(f"market feed: {feed:.0f} unsigned requests a minute for all accounts")
    accounts = (budget - feed) / cost
    print(f"accounts per IP at 30 s: ({BITGET_BUDGET} - {MARGIN:.0%} margin - {feed:.0f} feed) / {cost:.2f} = "
          f"{accounts:.0f} (target >= {ACCOUNTS_TARGET})")  # fmt: skip


async def oversubscribed(path: Path, ip_limit: int, minutes: int) -> None:
    settings = f'poll_interval = "30s"\nip_budget = "{ip_limit}/min"\n'
    first, last, poller = await poll(path, 60.0 * minutes, settings)
    rate = (last["totals"]["requests"] - first["totals"]["requests"]) / minutes
    public = {e.path for e in ep.ALL if not e.signed}
    feed = (_count(last, {"-"}, public) - _count(first, {"-"}, public)) / minutes
    status = poller.status()
    print(f"over-subscribed: {len(poller.accounts)} accounts on a per-IP budget of {ip_limit}/min (each read "
          f"every {status.effective_interval:.0f} s instead of 30 s)")  # fmt: skip
    print(f"429s from the simulator: {last['totals']['rate_limited']} (target 0), IP lock-outs: "
          f"{last['totals']['ip_lockouts']}")  # fmt: skip
    print(f"requests over {minutes} whole minutes after the first: {rate:.0f}/min = {rate / ip_limit:.1%} of the "
          f"budget (target >= {SHARE_TARGET:.0%}), the feed's {feed:.0f}/min included")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--accounts", type=int, default=200, help="spot + USDT-futures classic accounts measured")
    parser.add_argument("--minutes", type=float, default=5, help="measured after a minute of warm-up (spot: 5 min)")
    parser.add_argument("--over-accounts", type=int, default=400, help="accounts for the over-subscribed run")
    parser.add_argument("--ip-limit", type=int, default=1200, help="the over-subscribed run's requests a minute")
    parser.add_argument("--over-minutes", type=int, default=2)
    args = parser.parse_args()
    generated = args.accounts * 8 // 3  # 3 in 8 of the simulator's accounts are spot + USDT-futures classic
    with simulator(generated) as path:
        asyncio.run(steady(path, args.minutes))
    with simulator(args.over_accounts * 8 // 3, "--ip-limit", str(args.ip_limit)) as path:
        asyncio.run(oversubscribed(path, args.ip_limit, args.over_minutes))


if __name__ == "__main__":
    main()
