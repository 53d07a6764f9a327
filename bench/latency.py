"""Alert latency: from the simulator moving the marks across the critical level to the message reaching a local
sink, with 500 accounts, poll_interval 30 s and risk_poll_interval 5 s, for at least 20 long positions already
in warning and at least 20 far from any level (every symbol moves at once, as often as it takes). The market
feed reads the marks every second and re-judges every position on them; a crossing asks for a confirming read of
its account at once, so positions in warning (re-read at the risk interval) and the others (read every 30 s)
should hear equally fast.

    .venv/bin/python -m bench.latency --accounts 500
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

import aiohttp

from bench.common import configure, simulator, sink
from monitor.clock import SystemClock
from monitor.config import load_config
from monitor.domain import MarginMode, Side
from monitor.service import Service

GROUP = 20  # positions measured in each group, at least
WARNING = Decimal(15)  # the default liquidation rule's warning level (percent) ...
CRITICAL = Decimal(7)  # ... and its critical level
MOVES = 6  # the most moves made for one group
# Where the mark moves to, as a fraction of the starting mark: down for longs, up for shorts.
BANDS = {"in warning": ((Decimal("0.90"), Decimal("0.98")), (Decimal("1.02"), Decimal("1.10"))),
         "far from it": ((Decimal("0.45"), Decimal("0.80")), (Decimal("1.20"), Decimal("1.55")))}  # fmt: skip


@dataclass(frozen=True)
class Held:
    """A position as the monitor read it before the moves."""

    account: str
    product_type: str
    symbol: str
    side: Side
    liquidation: Decimal
    mark: Decimal
    predictable: bool  # its liquidation price stays put when its mark moves (isolated, or crossed alone)

    def distance(self, mark: Decimal) -> Decimal:
        gap = mark - self.liquidation if self.side is Side.LONG else self.liquidation - mark
        return gap / mark * 100

    def crosses(self, fraction: Decimal) -> bool:
        """Whether moving its mark to `fraction` of the start takes it from outside the critical level to inside,
        short of its liquidation price."""
        return self.distance(self.mark) > CRITICAL and 0 < self.distance(self.mark * fraction) < CRITICAL

    def liquidated(self, fraction: Decimal) -> bool:
        return self.distance(self.mark * fraction) <= 0


def p95(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(0.95 * len(ordered)))]


async def measure(path: Path, wait: float) -> None:
    arrivals: dict[tuple[str, str, str], float] = {}  # (account, symbol, side) -> when its critical message came
    groups: dict[str, list[float]] = {"in warning": [], "far from it": []}
    missing = {name: 0 for name in groups}

    async def receive(body: dict[str, Any]) -> int:
        account, *lines = body["message"].split("\n")
        account = account.split(" (", 1)[0]
        for line in lines:  # one line per alert of the account
            if line.startswith("CRITICAL liquidation: "):
                symbol, side = line.removeprefix("CRITICAL liquidation: ").split(" ", 2)[:2]
                arrivals.setdefault((account, symbol, side.rstrip(":")), time.monotonic())
        return 200

    async with sink(receive) as url:
        moves = await run(path, wait, url, arrivals, groups, missing)
    print(f"accounts: {len(load_config(path, env={}).accounts)}; positions moved across the critical level "
          f"({CRITICAL} %) by {moves} moves of marks (each moving only symbols it liquidates nothing on, but for "
          f"the positions already within {CRITICAL} %); messages missing after {wait:.0f} s: "
          f"{sum(missing.values())}")  # fmt: skip
    for label, group in groups.items():
        if group:
            print(f"{label + ':':13s}p50 {statistics.median(group):.1f} s, p95 {p95(group):.1f} s, max "
                  f"{max(group):.1f} s over {len(group)} positions ({missing[label]} missing; target p95 <= 2 s, "
                  f"at least {GROUP} positions)")  # fmt: skip


def _held(service: Service) -> list[Held]:
    found = []
    assert service.poller is not None
    for state in service.poller.accounts.values():
        snapshot = state.snapshot
        if snapshot is None:
            continue
        union = {f.product_type for f in snapshot.futures if f.asset_mode == "union"}
        for p in snapshot.positions:
            if p.liquidation_price:
                # A crossed position's price moves with the other crossed positions of its coin (and, pooled, with
                # every coin): predictable only alone on its coin, in a classic single-asset account.
                alone = not any(o.margin_mode is MarginMode.CROSSED and o.symbol != p.symbol
                                and (o.product_type, o.margin_coin) == (p.product_type, p.margin_coin)
                                for o in snapshot.positions)  # fmt: skip
                classic = snapshot.unified is None and p.product_type not in union
                predictable = p.margin_mode is MarginMode.ISOLATED or (alone and classic)
                found.append(Held(state.name, p.product_type, p.symbol, p.side, p.liquidation_price, p.mark_price,
                                  predictable))  # fmt: skip
    return found


def _plan(held: list[Held], candidates: list[Held], band: tuple[Decimal, Decimal]) -> tuple[Decimal, set[str]]:
    """The move (a fraction of the starting marks, within `band`) and the symbols it moves that take the most
    candidates across, moving no symbol on which it would liquidate a position not already critical."""
    best: tuple[int, Decimal, set[str]] = (-1, band[0], set())
    for i in range(61):
        fraction = band[0] + (band[1] - band[0]) * i / 60
        spared = {h.symbol for h in held if h.liquidated(fraction) and h.distance(h.mark) > CRITICAL}
        symbols = {h.symbol for h in held} - spared
        count = sum(1 for c in candidates if c.symbol in symbols and c.crosses(fraction))
        if count > best[0]:
            best = (count, fraction.quantize(Decimal("0.001")), symbols)
    return best[1], best[2]


async def run(path: Path, wait: float, sink_url: str, arrivals: dict[tuple[str, str, str], float],
              groups: dict[str, list[float]], missing: dict[str, int]) -> int:  # fmt: skip
    """The monitor against the simulator; moves of marks, timing each crossing position's message. Returns the
    number of moves made."""
    settings = (f'database_url = "sqlite:///{path.parent}/latency.db"\npoll_interval = "30s"\n'
                'risk_poll_interval = "5s"\nip_budget = "1000000/min"\n')  # fmt: skip
    extra = f'[web]\nlisten = "127.0.0.1:0"\n[channels]\nsink = ["{sink_url}"]\n'
    configure(path, settings, extra)
    config = load_config(path, env={})
    service = Service(path, config, SystemClock())
    stop = asyncio.Event()
    task = asyncio.create_task(service.run(stop))
    moves = 0
    try:
        while service.poller is None or not all(s.polls for s in service.poller.accounts.values()):
            await asyncio.sleep(0.5)
        await asyncio.sleep(10)  # the first alerts are out; the sender is idle again
        held = _held(service)
        start = {(h.product_type, h.symbol): h.mark for h in held}
        pool = {
            "in warning": [h for h in held if h.predictable and h.distance(h.mark) <= WARNING],  # risk cadence
            "far from it": [h for h in held if h.predictable and h.distance(h.mark) > WARNING + 2],  # 30 s
        }
        async with aiohttp.ClientSession() as session:

            async def move(fraction: Decimal, symbols: set[str]) -> None:
                for (product_type, symbol), mark in start.items():
                    if symbol in symbols:
                        payload = {"symbol": symbol, "product_type": product_type,
                                   "mark": str((mark * fraction).quantize(Decimal("0.0001")))}  # fmt: skip
                        async with session.post(config.monitor.bitget_url + "/_sim/price", json=payload) as r:
                            assert r.status == 200, await r.text()

            for label in groups:
                for i in range(MOVES):
                    if len(groups[label]) >= GROUP:
                        break
                    down, up = BANDS[label]
                    side, band = (Side.LONG, down) if i % 2 == 0 else (Side.SHORT, up)
                    candidates = [h for h in pool[label] if h.side is side]
                    fraction, symbols = _plan(held, candidates, band)
                    crossing = {(h.account, h.symbol, str(h.side)) for h in candidates
                                if h.symbol in symbols and h.crosses(fraction)}  # fmt: skip
                    if not crossing:
                        continue
                    arrivals.clear()
                    moved_at = time.monotonic()
                    await move(fraction, symbols)
                    moves += 1
                    await asyncio.sleep(wait)
                    groups[label].extend(arrivals[k] - moved_at for k in crossing if k in arrivals)
                    missing[label] += len(crossing - set(arrivals))
                    pool[label] = [h for h in pool[label] if (h.account, h.symbol, str(h.side)) not in crossing]
                    held = [h for h in held if not (h.symbol in symbols and h.liquidated(fraction))]
                    await move(Decimal(1), symbols)  # back, and a poll interval for every account to read it
                    await asyncio.sleep(40)
    finally:
        stop.set()
        await task
    return moves


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--accounts", type=int, default=500)
    parser.add_argument("--wait", type=float, default=15.0, help="seconds to wait for messages after a move")
    args = parser.parse_args()
    with simulator(args.accounts) as path:
        asyncio.run(measure(path, args.wait))


if __name__ == "__main__":
    main()
