"""Soak with faults: the monitor (a process of its own) against the simulator (another) while faults are
injected at random: 429 bursts, 5xx, 40725, timeouts, malformed and truncated bodies, a revoked key, the
notification sink down for a while, a SIGHUP reload, and a `kill -9` of the monitor followed by a restart
(SQLite: a PostgreSQL restart is not part of it yet). Prices move all along,
so alerts fire and resolve. At the end it checks and prints: every message in the outbox reached the sink
exactly once (at most one duplicate per kill), nothing is left queued, no unhandled exception was logged, and
how resident memory grew after warm-up.

    .venv/bin/python -m bench.soak --minutes 10
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import json
import random
import signal
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp

from bench.common import configure, simulator, sink
from monitor.store.repository import Store

FAULTS = ("429", "500", "40725", "45001", "timeout", "malformed", "truncated")


@dataclass
class Report:
    messages: int  # in the outbox
    delivered: int  # received by the sink
    lost: int  # in the outbox, never received
    duplicates: int  # received more often than queued
    kills: int
    left_queued: int
    tracebacks: int
    rss_growth: float  # after warm-up, as a fraction

    @property
    def ok(self) -> bool:
        return not self.lost and self.duplicates <= self.kills and not self.left_queued and not self.tracebacks


def rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


async def soak(minutes: float, accounts: int, seed: int = 7) -> Report:
    received: list[tuple[str, str]] = []
    sink_down = asyncio.Event()

    async def receive(body: dict[str, Any]) -> int:
        if sink_down.is_set():
            return 503  # down on purpose
        received.append((body["title"], body["message"]))
        return 200

    async with sink(receive) as url:
        return await run(minutes, accounts, seed, url, received, sink_down)


async def run(minutes: float, accounts: int, seed: int, sink_url: str, received: list[tuple[str, str]],
              sink_down: asyncio.Event) -> Report:  # fmt: skip
    rng = random.Random(seed)
    options = ("--tick", "1", "--volatility", "0.004", "--seed", str(seed))
    with simulator(accounts, *options) as path, tempfile.TemporaryDirectory(prefix="soak-") as tmp:
        database = f"sqlite:///{tmp}/soak.db"
        configure(path, f'database_url = "{database}"\npoll_interval = "2s"\nrisk_poll_interval = "1s"\n'
                        'request_timeout = "2s"\npermanent_error_retry = "5s"\n',
                  f'[web]\nlisten = "127.0.0.1:0"\n[channels]\nsink = ["{sink_url}"]\n')  # fmt: skip
        sim_url = next(line.split('"')[1] for line in path.read_text().splitlines() if line.startswith("bitget_url"))
        log = Path(tmp) / "monitor.log"

        async def start() -> asyncio.subprocess.Process:
            with log.open("a") as output:  # the child has its own copy of the descriptor
                return await asyncio.create_subprocess_exec(
                    sys.executable, "-m", "monitor", "run", "-c", str(path), stderr=output,
                    stdout=asyncio.subprocess.DEVNULL,
                )  # fmt: skip

        process = await start()
        duration = minutes * 60
        kills, rss_start = 0, 0
        async with aiohttp.ClientSession() as session:
            names = [f"sim-{i + 1:03d}" for i in range(accounts)]
            elapsed = 0.0
            events = {0.25: "sink down", 0.3: "rss", 0.35: "sink up", 0.45: "reload", 0.5: "revoke", 0.6: "kill"}
            done: set[float] = set()
            while elapsed < duration:
                await asyncio.sleep(2)
                elapsed += 2
                fault = {"kind": rng.choice(FAULTS), "account": rng.choice(names), "count": rng.randint(1, 3)}
                if fault["kind"] == "timeout":
                    fault["delay"] = 3
                await session.post(sim_url + "/_sim/faults", json=fault)
                for at, event in sorted(events.items()):
                    if at in done or elapsed < at * duration:
                        continue
                    done.add(at)
                    if event == "sink down":
                        sink_down.set()
                    elif event == "sink up":
                        sink_down.clear()
                    elif event == "reload":
                        process.send_signal(signal.SIGHUP)
                    elif event == "revoke":  # a permanent error: the account's unreachable alert must go out
                        await session.post(sim_url + f"/_sim/accounts/{names[-1]}", json={"revoked": True})
                    elif event == "rss":
                        rss_start = rss_kb(process.pid)
                    elif event == "kill":
                        process.kill()
                        await process.wait()
                        kills += 1
                        process = await start()
            rss_end = rss_kb(process.pid)
            await session.delete(sim_url + "/_sim/faults")
        # Faults over: give retries time to deliver everything, then stop cleanly.
        store = Store(database)
        for _ in range(120):
            await asyncio.sleep(1)
            counts = store.alerts.outbox_counts()
            if not counts.get("queued") and not counts.get("held"):
                break
        process.send_signal(signal.SIGTERM)
        await asyncio.wait_for(process.wait(), 30)
        outbox = store.alerts.outbox(limit=1_000_000)
        store.close()
        text = log.read_text()
    queued = collections.Counter((m.title, m.body) for m in outbox)
    got = collections.Counter(received)
    lost = sum(max(0, n - got[k]) for k, n in queued.items())
    duplicates = sum(max(0, n - queued[k]) for k, n in got.items())
    return Report(
        messages=len(outbox), delivered=len(received), lost=lost, duplicates=duplicates, kills=kills,
        left_queued=sum(m.status in ("queued", "held") for m in outbox), tracebacks=text.count("Traceback"),
        rss_growth=(rss_end - rss_start) / rss_start if rss_start else 0.0,
    )  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--accounts", type=int, default=300)
    args = parser.parse_args()
    report = asyncio.run(soak(args.minutes, args.accounts))
    print(json.dumps(report.__dict__, indent=2))
    print(f"{'OK' if report.ok else 'FAILED'}: {report.messages} messages queued, {report.delivered} received, "
          f"{report.lost} lost, {report.duplicates} duplicates after {report.kills} kill(s), {report.left_queued} "
          f"left queued, {report.tracebacks} tracebacks, RSS {report.rss_growth:+.1%} after warm-up "
          "(target under +10 %)")  # fmt: skip
    raise SystemExit(0 if report.ok else 1)


if __name__ == "__main__":
    main()
