"""Steady state: `bitget-monitor run` as a process of its own, with a real accounts file, against the simulator in
another process, once warmed up. Its CPU (user + system, all threads, from /proc) per signed request the simulator
served in the window, beside ccxt's async bitget client doing the same four fetches for the same accounts in this
process (warm, raw private methods, as bench.cycle measures it, but with ccxt's own rate limiter off), in the
same run.

Two scenarios: 500 classic HMAC accounts (spot + USDT-futures) every 30 s, whose full reads want about 67 signed
requests a second of the default 6000/min budget (the simulator's accounts near liquidation are re-read every
risk_poll_interval on top, which brings it to the budget), and 1000 such accounts, which want about 133 a second, so
polling stretches to what the budget allows. The simulator's marks stand still unless --tick says how often they
move (a market that moves costs the mark feed's judging more). SQLite by default, PostgreSQL with --postgres (a
fresh database is made and dropped). --profile DIR records the monitor with py-spy during each window (without
pausing it, so the figures stay the monitor's own).

ccxt is measured twice: all accounts at once (the figure the ratio uses), and one cycle paced at the monitor's rate,
one account after the other, which shows what spreading requests over time costs any client.

    .venv/bin/python -m bench.steady --seconds 60
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path

from bench.ccxt_baseline import ccxt_accounts, cpu_per_cycle
from bench.common import configure, simulator
from bench.cycle import eligible
from monitor.config import Config, load_config
from monitor.runtime import tune_gc

TARGET_RATIO = 1.0
BUDGET_PER_MINUTE = 6000  # the default ip_budget
MIX_ACCOUNTS = "/api/v2/mix/account/accounts"  # asked by every read, routine or risk (spot: every few minutes)
BASELINE_CYCLES = 5  # the median of five: one cycle alone varies by a quarter from run to run
WARMUP_LIMIT = 900.0  # seconds; a monitor that never reads every account twice is broken, not slow
CLK_TCK = os.sysconf("SC_CLK_TCK")


@dataclasses.dataclass
class Stats:
    """The simulator's request counters at one moment."""

    at: float  # monotonic seconds
    signed: int  # requests authenticated as an account (rejections are not counted by the simulator)
    public: int
    rate_limited: int
    per_path: dict[str, int]  # signed requests per path
    reads: dict[str, int]  # per account: requests to MIX_ACCOUNTS (one per read)


def sim_stats(url: str) -> Stats:
    with urllib.request.urlopen(url + "/_sim/stats", timeout=30) as answer:  # noqa: S310 (the simulator's http URL)
        data = json.load(answer)
    at = time.monotonic()
    signed = public = 0
    per_path: dict[str, int] = {}
    reads: dict[str, int] = {}
    for account, paths in data["requests"].items():
        for path, n in paths.items():
            if account == "-":
                public += n
                continue
            signed += n
            per_path[path] = per_path.get(path, 0) + n
        if account != "-":
            reads[account] = paths.get(MIX_ACCOUNTS, 0)
    return Stats(at, signed, public, data["totals"]["rate_limited"], per_path, reads)


def process_cpu(pid: int) -> float:
    """User + system seconds of a process (every thread), from /proc/PID/stat."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK  # utime, stime: fields 14 and 15 of the whole line


def process_rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/statm") as f:
        return int(f.read().split()[1]) * resource.getpagesize() / 2**20


def py_spy() -> str:
    return shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")


def load() -> str:
    return "load average " + ", ".join(f"{x:.2f}" for x in os.getloadavg())


@contextlib.contextmanager
def fresh_postgres(admin_url: str) -> Iterator[str]:
    import psycopg
    from sqlalchemy.engine import make_url

    admin = make_url(admin_url)
    conninfo = admin.set(drivername="postgresql").render_as_string(hide_password=False)
    name = f"bm_steady_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(conninfo, autocommit=True) as connection:
        connection.execute(f'CREATE DATABASE "{name}"')
    try:
        yield admin.set(drivername="postgresql+psycopg", database=name).render_as_string(hide_password=False)
    finally:
        with psycopg.connect(conninfo, autocommit=True) as connection:
            connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def keep_only(path: Path, names: set[str]) -> None:
    """Rewrite the simulator's accounts file with only the accounts named (the others stay simulated, unread)."""
    head, *blocks = path.read_text().split("[[accounts]]\n")
    kept = [b for b in blocks if b.split('"', 2)[1] in names]  # each block starts with name = "..."
    path.write_text(head + "".join("[[accounts]]\n" + b for b in kept))


async def baseline(config: Config, url: str, cycles: int, pace: float) -> tuple[list[float], float]:
    """CPU seconds per cycle of ccxt's async bitget client doing the four raw private fetches of every account
    (bench.cycle's baseline, with ccxt's own rate limiter off: its leaky bucket polls every millisecond while a
    request waits for tokens, CPU that is its limiter's and not a fetch's), all at once as bench.cycle does; then
    one cycle paced like `run` (`pace` accounts a second, one after the other), for what pacing alone costs."""
    async with ccxt_accounts(config, url, rate_limit=False) as (exchanges, fetch):
        spent = await cpu_per_cycle(exchanges, fetch, cycles)
        cpu, start, tasks = time.process_time(), time.monotonic(), []
        for i, e in enumerate(exchanges):
            await asyncio.sleep(max(0.0, start + i / pace - time.monotonic()))
            tasks.append(asyncio.create_task(fetch(e)))
        await asyncio.gather(*tasks)
        paced = time.process_time() - cpu
    return spent, paced


@dataclasses.dataclass
class Result:
    accounts: int
    seconds: float
    monitor_ms: float  # CPU per signed request
    ccxt_ms: float
    ccxt_paced_ms: float
    rss_mb: float
    signed_per_s: float
    public_per_s: float
    rate_limited: int
    reads: list[int]  # reads of each account in the window
    endpoints: dict[str, int]
    load_before: str
    load_after: str


def scenario(accounts: int, interval: float, risk_interval: float | None, seconds: float, postgres: str | None,
             profile: Path | None, label: str, tick: float) -> Result:  # fmt: skip
    # About one generated account in seven is a classic HMAC live spot + USDT-futures account.
    moving = ("--no-limits", "--tick", f"{tick:g}") if tick else ()
    with simulator(accounts * 9, *moving) as path, contextlib.ExitStack() as stack:
        config = eligible(load_config(path, env={}), accounts)
        if len(config.accounts) < accounts:
            sys.exit(f"the simulator generated only {len(config.accounts)} eligible accounts of {accounts}")
        names = {a.name for a in config.accounts}
        keep_only(path, names)
        database = (stack.enter_context(fresh_postgres(postgres)) if postgres
                    else f"sqlite:///{path.parent}/steady.db")  # fmt: skip
        settings = f'database_url = "{database}"\npoll_interval = "{interval:.0f}s"\n'
        if risk_interval is not None:
            settings += f'risk_poll_interval = "{risk_interval:.0f}s"\n'
        configure(path, settings, '[web]\nlisten = "127.0.0.1:0"\n')
        url = config.monitor.bitget_url
        log = path.parent / "monitor.log"
        with log.open("w") as output:
            monitor = subprocess.Popen([sys.executable, "-m", "monitor", "run", "-c", str(path)],
                                       stdout=subprocess.DEVNULL, stderr=output)  # fmt: skip
        try:
            result = measure(monitor, url, names, seconds, log, profile, label)
        finally:
            monitor.terminate()
            try:
                monitor.wait(timeout=60)
            except subprocess.TimeoutExpired:
                monitor.kill()
                monitor.wait()
        # The baseline once the monitor has stopped, against the same simulator, for the same accounts.
        tune_gc()  # the process settings `run` uses (bench.cycle measures ccxt under them too)
        load_before = load()
        pace = max(result.signed_per_s / 4, 1.0)  # accounts a second: the monitor's rate of signed requests
        theirs, paced = asyncio.run(baseline(config, url, BASELINE_CYCLES, pace))
        requests = 4 * len(config.accounts)
        result.ccxt_ms = statistics.median(theirs) / requests * 1000
        result.ccxt_paced_ms = paced / requests * 1000
        result.load_after += f"; ccxt: {load_before} -> {load()}"
        return result


def measure(monitor: subprocess.Popen[bytes], url: str, names: set[str], seconds: float, log: Path,
            profile: Path | None, label: str) -> Result:  # fmt: skip
    def alive() -> None:
        if monitor.poll() is not None:
            sys.exit(f"the monitor exited ({monitor.returncode}); its log ends:\n" + log.read_text()[-3000:])

    # Warm-up: every account read at least twice (the first read, a full one, also syncs clocks, learns modes and
    # key permissions), then one more interval's worth of time for the stores and rules to settle.
    started = time.monotonic()
    while True:
        time.sleep(5)
        alive()
        reads = sim_stats(url).reads
        done = sum(1 for n in names if reads.get(n, 0) >= 2)
        if done == len(names):
            break
        if time.monotonic() - started > WARMUP_LIMIT:
            sys.exit(f"warm-up: only {done} of {len(names)} accounts were read twice in {WARMUP_LIMIT:.0f} s")
    print(f"  warmed up in {time.monotonic() - started:.0f} s", flush=True)
    time.sleep(10)
    spy = None
    if profile is not None:
        out = profile / f"steady-{label}.txt"
        spy = subprocess.Popen([py_spy(), "record", "--pid", str(monitor.pid), "--duration", str(int(seconds)),
                                "--rate", "100", "--nonblocking", "--format", "raw", "--output", str(out),
                                "--threads"],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    load_before = load()
    before, cpu_before = sim_stats(url), process_cpu(monitor.pid)
    time.sleep(seconds)
    after, cpu_after = sim_stats(url), process_cpu(monitor.pid)
    load_after = load()
    alive()
    # A monitor that cannot store (a database not ready, writes failing) polls on and buffers: cheaper, and not
    # what is meant to be measured. Say so loudly.
    errors = [line for line in log.read_text().splitlines() if " ERROR " in line or " CRITICAL " in line]
    if errors:
        print(f"  WARNING: the monitor logged {len(errors)} errors, the figures are not a healthy run's; the first:\n"
              f"  {errors[0][:300]}", flush=True)  # fmt: skip
    if spy is not None:
        spy.wait(timeout=seconds + 60)
    elapsed = after.at - before.at
    signed = after.signed - before.signed
    reads = [after.reads.get(n, 0) - before.reads.get(n, 0) for n in names]
    endpoints = {p: n - before.per_path.get(p, 0) for p, n in after.per_path.items() if n > before.per_path.get(p, 0)}
    return Result(
        accounts=len(names), seconds=elapsed, monitor_ms=(cpu_after - cpu_before) / max(signed, 1) * 1000,
        ccxt_ms=0.0, ccxt_paced_ms=0.0, rss_mb=process_rss_mb(monitor.pid), signed_per_s=signed / elapsed,
        public_per_s=(after.public - before.public) / elapsed, rate_limited=after.rate_limited - before.rate_limited,
        reads=reads, endpoints=endpoints, load_before=load_before, load_after=load_after,
    )  # fmt: skip


def report(name: str, interval: float, r: Result) -> None:
    budget = BUDGET_PER_MINUTE / 60
    ratio = r.monitor_ms / r.ccxt_ms
    print(f"{name}: {r.accounts} classic HMAC accounts (spot + USDT-futures), poll_interval {interval:.0f} s, "
          f"{r.seconds:.0f} s at steady state")  # fmt: skip
    print(f"  monitor `run` (own process): {r.monitor_ms:.3f} ms CPU per signed request; RSS {r.rss_mb:.0f} MB")
    print(f"  ccxt async bitget, the same 4 fetches only: {r.ccxt_ms:.3f} ms CPU per request (all at once; "
          f"paced like `run`, for comparison: {r.ccxt_paced_ms:.3f} ms)")  # fmt: skip
    print(f"  ratio monitor / ccxt: {ratio:.2f} (target <= {TARGET_RATIO:.0f})")
    total = r.signed_per_s + r.public_per_s
    print(f"  requests: {r.signed_per_s:.1f}/s signed + {r.public_per_s:.1f}/s public = {total:.1f}/s, "
          f"{total / budget:.0%} of the {budget:.0f}/s budget; 429s: {r.rate_limited}")  # fmt: skip
    routine = statistics.median(r.reads)
    risky = sum(1 for n in r.reads if n > 1.5 * routine)
    print(f"  reads per account: median {routine:.0f} (poll_interval would give {r.seconds / interval:.1f}); "
          f"{risky} accounts read more often (near liquidation: every risk_poll_interval)")  # fmt: skip
    mix = ", ".join(f"{p.rsplit('/', 2)[-2]}/{p.rsplit('/', 1)[-1]} {n}" for p, n in sorted(r.endpoints.items()))
    print(f"  signed requests by endpoint: {mix}")
    print(f"  {r.load_before} -> {r.load_after}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--accounts", type=int, default=500, help="accounts below the budget")
    parser.add_argument("--budget-accounts", type=int, default=1000, help="accounts at the full budget")
    parser.add_argument("--interval", type=float, default=30.0, help="poll_interval, seconds")
    parser.add_argument("--risk-interval", type=float, help="risk_poll_interval, seconds (default: the monitor's)")
    parser.add_argument("--seconds", type=float, default=60.0, help="the measured window at steady state")
    parser.add_argument("--only", choices=("below", "budget"), help="run one scenario only")
    parser.add_argument("--tick", type=float, default=0.0,
                        help="seconds between the simulator's price moves (default 0: marks stand still)")  # fmt: skip
    parser.add_argument("--postgres", help="an admin URL: a fresh database is made and dropped (default: SQLite)")
    parser.add_argument("--profile", type=Path, help="record the monitor with py-spy (raw format) into this folder")
    args = parser.parse_args()
    if args.profile and not Path(py_spy()).exists():
        sys.exit("--profile needs py-spy: .venv/bin/pip install py-spy")
    if args.profile:
        args.profile.mkdir(parents=True, exist_ok=True)
    if args.seconds < 60:
        print(f"note: {args.seconds:.0f} s is shorter than the 60 s the figures are meant for")
    marks = f"moving every {args.tick:g} s" if args.tick else "standing still"
    print(f"database: {'postgresql' if args.postgres else 'sqlite'}; the simulator's marks {marks}", flush=True)
    runs = [
        ("(a) full reads below the budget", args.accounts, "below"),
        ("(b) beyond the budget, polling stretches", args.budget_accounts, "budget"),
    ]
    for name, accounts, label in runs:
        if args.only and args.only != label:
            continue
        result = scenario(accounts, args.interval, args.risk_interval, args.seconds, args.postgres, args.profile, label,
                          args.tick)  # fmt: skip
        report(name, args.interval, result)


if __name__ == "__main__":
    main()
