"""Soak with faults: the monitor (a process of its own) against the simulator (another) while faults are
injected at random: 429 bursts, 5xx, 40725, timeouts, malformed and truncated bodies, hostile answers (a huge
exponent, a 50 MB body, a negative size, a symbol that forges lines, an unknown code), a revoked key, the
notification sink down for a while, a restart of the PostgreSQL server, a SIGHUP reload, and a `kill -9` of the
monitor followed by a restart. Prices move all along, so alerts fire and resolve.

The database is a PostgreSQL server of the soak's own (see bench.common.PrivatePostgres); where PostgreSQL's
server programs are not installed, or with --sqlite, it is SQLite and the database restart is left out.

At the end it checks and prints: every message in the outbox reached the sink exactly once (at most one
duplicate per kill), nothing is left queued, no unhandled exception was logged, no account went without good
data for longer than the faults injected into it explain, and how resident memory grew after warm-up. While
PostgreSQL is down the soak moves a mark next to a position's liquidation price: the messages created during
the outage must reach the sink during the outage (the monitor delivers them from memory), and it prints how
long they took.

    .venv/bin/python -m bench.soak --minutes 10
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import itertools
import json
import math
import random
import signal
import statistics
import sys
import tempfile
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp.test_utils import unused_port
from sqlalchemy import select

from bench.common import PrivatePostgres, configure, private_postgres, simulator, sink
from monitor.clock import SystemClock
from monitor.exchange.bitget.client import RATE_LIMIT_BACKOFF
from monitor.poller.poll import RETRY_ATTEMPTS
from monitor.store.repository import ACCOUNT, POLL, Store

CLOCK = SystemClock()
FAULTS = ("429", "500", "40725", "45001", "timeout", "malformed", "truncated",
          # hostile answers: each is refused (or, for the symbol, escaped) and retried like a malformed one
          "huge_exponent", "huge_body", "negative_size", "bidi_symbol", "hostile_error")  # fmt: skip
REQUEST_TIMEOUT, LEASE_TTL = 2.0, 5.0
# Polling as fast as the default per-IP budget (6000/min, 97 requests a second kept) allows for the number of
# accounts, at about four requests a read: the soak is about faults, not about a budget far too small.
READS_PER_SECOND = 20.0


def poll_interval(accounts: int) -> float:
    return float(max(2, math.ceil(accounts / READS_PER_SECOND)))


# What one faulty answer can cost an account: a whole attempt (a timeout, or a 429's rest) and its backoff.
FAULT_COST = REQUEST_TIMEOUT + RATE_LIMIT_BACKOFF + 1.0
# Any account may go this many of the typical gaps between good reads without good data (its own cadence
# varies with the budget: more accounts than one IP can read every poll_interval stretch every cycle), plus
# one set of retries and scheduling slack.
CADENCE_GAPS = 3
SLACK = RETRY_ATTEMPTS * 1.0 + 5.0
# What a kill -9 explains: buffered polls lost, the restart (migrations, first claim), the dead leases' TTL.
KILL_GAP = 20.0 + LEASE_TTL
RSS_GROWTH_LIMIT = 0.10  # resident memory may grow this much after warm-up
# A message created this close to the end of the database outage may arrive just after it.
OUTAGE_MARGIN = timedelta(seconds=2)
HEALTH_TIMEOUT = 10.0  # a /healthz answer slower than this counts as none


@dataclass
class Probe:
    """The monitor seen from outside: its peak memory and how fast /healthz answers."""

    peak_rss_kb: int = 0
    slowest: float = 0.0
    timeouts: int = 0

    async def watch(self, session: aiohttp.ClientSession, url: str, pid: Any) -> None:
        """Every second until cancelled; `pid()` gives the current process (it changes across restarts)."""
        while True:
            await asyncio.sleep(1)
            with contextlib.suppress(OSError):  # it may be exiting right now
                self.peak_rss_kb = max(self.peak_rss_kb, rss_kb(pid()))
            started = CLOCK.monotonic()
            try:
                async with session.get(url, timeout=aiohttp.ClientTimeout(total=HEALTH_TIMEOUT)) as answer:
                    await answer.read()
            except TimeoutError:
                self.timeouts += 1
                self.slowest = max(self.slowest, HEALTH_TIMEOUT)
            except aiohttp.ClientConnectionError:
                continue  # restarting: nothing listens yet
            else:
                self.slowest = max(self.slowest, CLOCK.monotonic() - started)


@dataclass
class Fault:
    at: datetime
    account: str
    count: int


@dataclass
class Report:
    messages: int  # in the outbox
    delivered: int  # received by the sink
    lost: int  # in the outbox, never received
    duplicates: int  # received more often than queued
    kills: int
    crashes: int  # times the monitor exited without being told to (restarted each time)
    left_queued: int
    tracebacks: int
    rss_growth: float  # as a fraction, from warm-up until just before the kill (one process)
    database: str  # "postgresql" (restarted once) or "sqlite"
    cadence: float  # seconds, the median gap between two good reads of an account (poll_interval, or longer
    # when the per-IP budget stretches the cycle)
    worst_gap: float  # seconds, the longest time an account went without good data
    worst_gap_account: str
    unexplained_gaps: int  # gaps longer than the faults injected into the account (and a kill) explain
    database_outage_survived: bool | None  # the monitor saw its writes fail and work again (None: SQLite)
    lockouts: int  # times the monitor found the IP locked out
    first_traceback: str  # the first logged traceback's last lines, if any
    longest_unexplained: list[str]  # the five longest gaps the faults do not explain, and when they began
    # The PostgreSQL outage (None on SQLite): messages created during it, those of them that did not reach the
    # sink before it ended, how long the forced alert took from the mark's move to the sink, and the longest
    # time from a message's creation to its delivery during the outage (seconds).
    outage_messages: int | None = None
    outage_late: int | None = None
    outage_alert_latency: float | None = None
    outage_longest_delivery: float | None = None
    # Probed every second from outside the monitor, through faults, outage and hostile answers alike (a
    # restart's seconds without a listener are left out): its largest resident memory, its slowest /healthz
    # answer (seconds), and probes that got no answer within HEALTH_TIMEOUT.
    peak_rss_mb: float = 0.0
    slowest_healthz: float = 0.0
    healthz_timeouts: int = 0

    @property
    def ok(self) -> bool:
        return (
            not self.lost
            and self.duplicates <= self.kills
            and not self.crashes
            and not self.left_queued
            and not self.tracebacks
            and not self.unexplained_gaps
            and self.database_outage_survived is not False
            and self.rss_growth < RSS_GROWTH_LIMIT
            and not self.healthz_timeouts
            and (self.database != "postgresql" or (bool(self.outage_messages) and not self.outage_late))
        )


def rss_kb(pid: int) -> int:
    status = Path(f"/proc/{pid}/status")
    for line in status.read_text().splitlines() if status.exists() else ():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


async def soak(
    minutes: float, accounts: int, seed: int = 7, *, sqlite: bool = False, keep_log: Path | None = None
) -> Report:
    received: list[tuple[str, str]] = []
    arrivals: list[datetime] = []  # when each of `received` arrived
    sink_down = asyncio.Event()

    async def receive(body: dict[str, Any]) -> int:
        if sink_down.is_set():
            return 503  # down on purpose
        received.append((body["title"], body["message"]))
        arrivals.append(CLOCK.now())
        return 200

    with contextlib.ExitStack() as stack:
        postgres = None if sqlite else stack.enter_context(private_postgres())
        async with sink(receive) as url:
            return await run(minutes, accounts, seed, url, received, sink_down, postgres, keep_log, arrivals)


async def run(minutes: float, accounts: int, seed: int, sink_url: str, received: list[tuple[str, str]],
              sink_down: asyncio.Event, postgres: PrivatePostgres | None,
              keep_log: Path | None, arrivals: list[datetime] | None = None) -> Report:  # fmt: skip
    arrivals = arrivals if arrivals is not None else []
    rng = random.Random(seed)
    options = ("--tick", "1", "--volatility", "0.004", "--seed", str(seed))
    with simulator(accounts, *options) as path, tempfile.TemporaryDirectory(prefix="soak-") as tmp:
        database = postgres.url if postgres is not None else f"sqlite:///{tmp}/soak.db"
        interval = poll_interval(accounts)
        port = unused_port()
        configure(path, f'database_url = "{database}"\npoll_interval = "{interval:.0f}s"\n'
                        f'risk_poll_interval = "{max(1, interval // 3):.0f}s"\n'
                        f'request_timeout = "{REQUEST_TIMEOUT:.0f}s"\n'
                        f'permanent_error_retry = "5s"\nlease_ttl = "{LEASE_TTL:.0f}s"\n',
                  f'[web]\nlisten = "127.0.0.1:{port}"\n[channels]\nsink = ["{sink_url}"]\n')  # fmt: skip
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
        kills, crashes, rss_start, rss_end, began = [], 0, 0, 0, CLOCK.now()
        outage: list[datetime] = []  # when PostgreSQL went down, and when it was started again
        moved: datetime | None = None  # when the mark was moved during the outage
        faults: list[Fault] = []
        probe = Probe()
        async with aiohttp.ClientSession() as session:
            watching = asyncio.create_task(
                probe.watch(session, f"http://127.0.0.1:{port}/healthz", lambda: process.pid)
            )
            names = [f"sim-{i + 1:03d}" for i in range(accounts)]
            elapsed = 0.0
            events = {0.25: "sink down", 0.3: "rss", 0.35: "sink up", 0.4: "database down", 0.5: "database up",
                      0.55: "reload", 0.6: "revoke", 0.7: "kill"}  # fmt: skip
            done: set[float] = set()
            while elapsed < duration:
                await asyncio.sleep(2)
                elapsed += 2
                if process.returncode is not None:  # it died on its own: a failure, but the soak goes on
                    crashes += 1
                    kills.append(CLOCK.now())  # what a restart explains is the same as after a kill
                    process = await start()
                fault = {"kind": rng.choice(FAULTS), "account": rng.choice(names), "count": rng.randint(1, 3)}
                if fault["kind"] == "timeout":
                    fault["delay"] = 3
                faults.append(Fault(CLOCK.now(), fault["account"], fault["count"]))
                await session.post(sim_url + "/_sim/faults", json=fault)
                for at, event in sorted(events.items()):
                    if at in done or elapsed < at * duration:
                        continue
                    done.add(at)
                    if event == "sink down":
                        sink_down.set()
                    elif event == "sink up":
                        sink_down.clear()
                    elif event == "database down" and postgres is not None:
                        await asyncio.to_thread(postgres.stop)
                        outage.append(CLOCK.now())
                        moved = await force_alert(session, sim_url, names[:-1])
                    elif event == "database up" and postgres is not None:
                        outage.append(CLOCK.now())
                        await asyncio.to_thread(postgres.start)
                    elif event == "reload":
                        process.send_signal(signal.SIGHUP)
                    elif event == "revoke":  # a permanent error: the account's unreachable alert must go out
                        await session.post(sim_url + f"/_sim/accounts/{names[-1]}", json={"revoked": True})
                    elif event == "rss":
                        rss_start = rss_kb(process.pid)
                    elif event == "kill":
                        rss_end = rss_kb(process.pid)
                        process.kill()
                        await process.wait()
                        kills.append(CLOCK.now())
                        process = await start()
            await session.delete(sim_url + "/_sim/faults")
            ended = CLOCK.now()
            watching.cancel()
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
        # the revoked account is unreachable by design
        gaps = good_data_gaps(store, names[:-1], began, ended)
        store.close()
        text = log.read_text()
        if keep_log is not None:
            keep_log.write_text(text)
    queued = collections.Counter((m.title, m.body) for m in outbox)
    got = collections.Counter(received)
    lost = sum(max(0, n - got[k]) for k, n in queued.items())
    duplicates = sum(max(0, n - queued[k]) for k, n in got.items())
    cadence = typical_gap(gaps)
    unexplained = [gap for gap in gaps if not explained(gap, faults, kills, cadence)]
    during = [m for m in outbox if len(outage) == 2 and outage[0] <= m.created_at <= outage[1] - OUTAGE_MARGIN]
    late = [m for m in during if m.sent_at is None or m.sent_at > outage[1]]
    first = min((at for at in arrivals if moved is not None and at >= moved), default=None)
    none = CLOCK.now()
    worst = max(gaps, key=lambda g: g[2] - g[1], default=("-", none, none))
    return Report(
        messages=len(outbox), delivered=len(received), lost=lost, duplicates=duplicates,
        kills=len(kills) - crashes, crashes=crashes,
        left_queued=sum(m.status in ("queued", "held") for m in outbox), tracebacks=text.count("Traceback"),
        rss_growth=(rss_end - rss_start) / rss_start if rss_start and rss_end else 0.0,
        database="postgresql" if postgres is not None else "sqlite",
        cadence=round(cadence, 1),
        worst_gap=round((worst[2] - worst[1]).total_seconds(), 1), worst_gap_account=worst[0],
        unexplained_gaps=len(unexplained),
        lockouts=text.count("has locked this IP out"),
        first_traceback=first_traceback(text),
        longest_unexplained=[
            f"{a}: {(end - start).total_seconds():.0f} s from {(start - began).total_seconds():.0f} s"
            for a, start, end in sorted(unexplained, key=lambda g: g[1] - g[2])[:5]
        ],
        database_outage_survived=None if postgres is None else (
            "database write failed" in text and "database writes work again" in text
        ),
        outage_messages=None if postgres is None else len(during),
        outage_late=None if postgres is None else len(late),
        outage_alert_latency=(
            round((first - moved).total_seconds(), 2) if first is not None and moved is not None else None
        ),
        outage_longest_delivery=max(
            (round((m.sent_at - m.created_at).total_seconds(), 2) for m in during if m.sent_at is not None),
            default=None,
        ),
        peak_rss_mb=round(probe.peak_rss_kb / 1024, 1),
        slowest_healthz=round(probe.slowest, 3),
        healthz_timeouts=probe.timeouts,
    )  # fmt: skip


async def force_alert(session: aiohttp.ClientSession, sim_url: str, accounts: list[str]) -> datetime | None:
    """Move a mark to 4 % from an isolated position's liquidation price (critical by the default rules) for a
    position outside every warning now, so a new alert fires: the one whose move liquidates the fewest other
    positions on its symbol. Returns when."""
    async with session.get(sim_url + "/_sim/state") as response:
        state = await response.json()
    positions = [(a["name"], p) for a in state["accounts"] for p in a["positions"]]
    candidates = []
    for name, p in positions:
        mark, liquidation = float(p["mark"]), float(p["liquidation_price"] or 0)
        if name not in accounts or p["margin_mode"] != "isolated" or liquidation <= 0 or mark <= 0:
            continue
        if abs(mark - liquidation) / mark < 0.2:  # inside (or near) the warning level: no new alert
            continue
        target = liquidation / 0.96 if p["side"] == "long" else liquidation / 1.04
        low, high = sorted((mark, target))
        broken = sum(
            1 for _, q in positions
            if (q["symbol"], q["product_type"]) == (p["symbol"], p["product_type"])
            and low <= float(q["liquidation_price"] or 0) <= high
        )  # fmt: skip
        candidates.append((broken, target, p))
    if not candidates:
        return None
    _, target, p = min(candidates, key=lambda c: c[0])
    move = {"symbol": p["symbol"], "product_type": p["product_type"], "mark": f"{target:.6g}"}
    await session.post(sim_url + "/_sim/price", json=move)
    return CLOCK.now()


def first_traceback(log: str) -> str:
    """The record that holds the log's first traceback: its first line and the end of the traceback."""
    at = log.find("Traceback")
    if at < 0:
        return ""
    lines = log[log.rfind("\n", 0, log.rfind("\n", 0, at)) + 1 :].splitlines()
    end = next((i for i, line in enumerate(lines[2:], 2) if not line.startswith((" ", "Traceback"))), len(lines))
    return "\n".join(lines[:1] + lines[max(1, end - 12) : end + 1])


def good_data_gaps(
    store: Store, accounts: list[str], began: datetime, ended: datetime
) -> list[tuple[str, datetime, datetime]]:
    """Every stretch without a good read of an account, as the database recorded them: from the start to its
    first good read, between two, and from its last to the end of the faults (an account never read is one
    stretch from start to end)."""
    query = select(ACCOUNT.c.name, POLL.c.finished_at).join(POLL, POLL.c.account_id == ACCOUNT.c.id).where(POLL.c.ok)
    reads: dict[str, list[datetime]] = {name: [began, ended] for name in accounts}
    with store.engine.connect() as connection:
        for name, at in connection.execute(query):
            if name in reads:
                reads[name].append(at)
    return [(a, t1, t2) for a, times in reads.items() for t1, t2 in itertools.pairwise(sorted(times))]


def typical_gap(gaps: list[tuple[str, datetime, datetime]]) -> float:
    """The median gap between good reads: the cadence the budget allowed in this run."""
    return statistics.median([(end - start).total_seconds() for _, start, end in gaps]) if gaps else 0.0


def explained(gap: tuple[str, datetime, datetime], faults: list[Fault], kills: list[datetime], cadence: float) -> bool:
    """Whether the faults injected into the account during the gap (and a kill within it) account for it."""
    account, start, end = gap
    allowed = CADENCE_GAPS * cadence + SLACK
    allowed += sum(
        f.count * FAULT_COST for f in faults if f.account == account and start - timedelta(seconds=10) <= f.at <= end
    )
    allowed += sum(KILL_GAP for k in kills if start <= k <= end)
    return (end - start).total_seconds() <= allowed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--accounts", type=int, default=300)
    parser.add_argument("--sqlite", action="store_true", help="run on SQLite (no database restart)")
    parser.add_argument("--keep-log", type=Path, help="copy the monitor's log here")
    args = parser.parse_args()
    report = asyncio.run(soak(args.minutes, args.accounts, sqlite=args.sqlite, keep_log=args.keep_log))
    print(json.dumps(report.__dict__, indent=2))
    print(f"{'OK' if report.ok else 'FAILED'}: {report.messages} messages queued, {report.delivered} received, "
          f"{report.lost} lost, {report.duplicates} duplicates after {report.kills} kill(s), {report.crashes} "
          f"crashes, {report.left_queued} left queued, {report.tracebacks} tracebacks, "
          f"RSS {report.rss_growth:+.1%} after warm-up (target under {RSS_GROWTH_LIMIT:+.0%}); {report.database}; "
          f"good reads every {report.cadence:.0f} s (median), longest without: {report.worst_gap:.0f} s "
          f"({report.worst_gap_account}), {report.unexplained_gaps} gaps longer than their faults explain; "
          f"database outage: {report.outage_messages} messages created, {report.outage_late} not delivered during "
          f"it, the forced alert reached the sink in {report.outage_alert_latency} s, the slowest message took "
          f"{report.outage_longest_delivery} s; peak RSS {report.peak_rss_mb} MB, slowest /healthz "
          f"{report.slowest_healthz} s ({report.healthz_timeouts} unanswered in {HEALTH_TIMEOUT:.0f} s)")  # fmt: skip
    raise SystemExit(0 if report.ok else 1)


if __name__ == "__main__":
    main()
