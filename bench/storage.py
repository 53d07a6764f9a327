"""Storage: the time to write one cycle (1000 accounts, 5 positions each) on SQLite and PostgreSQL, in full and
in the steady state, and the database growth per account per day with the default retention and snapshot
interval. No simulator: the outcomes are built here.

    .venv/bin/python -m bench.storage [--postgres postgresql://postgres@127.0.0.1/postgres]
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

from sqlalchemy import text

from monitor.domain import (
    AccountMode,
    AccountSnapshot,
    FuturesAccount,
    MarginMode,
    PollOutcome,
    Position,
    PositionMode,
    Side,
    SpotAsset,
)
from monitor.runtime import tune_gc
from monitor.store import migrations
from monitor.store.repository import Store

TARGET_MS = 100.0
POLLS_PER_DAY = 86400 // 30  # the default poll_interval
RAW_DAYS, HOURLY_DAYS = 7, 400  # the default retention
SNAPSHOT_INTERVAL = timedelta(minutes=5)  # the default


def cycle(accounts: int, at: datetime) -> list[PollOutcome]:
    outcomes = []
    for i in range(accounts):
        positions = tuple(
            Position("USDT-FUTURES", f"C{j}USDT", "USDT", Side.LONG if j % 2 else Side.SHORT, PositionMode.ONE_WAY,
                     MarginMode.CROSSED, Decimal("0.5"), Decimal("100.12"), Decimal(f"101.{i % 97:02d}"),
                     Decimal("80.5"), Decimal("50.25"), Decimal(10), Decimal("-3.41"))
            for j in range(5)
        )  # fmt: skip
        snapshot = AccountSnapshot(
            f"acct-{i:04d}", at, AccountMode.CLASSIC,
            spot=(SpotAsset("USDT", Decimal(1000 + i), Decimal(0), Decimal(0)),
                  SpotAsset("BTC", Decimal("0.05"), Decimal(0), Decimal(0))),
            spot_usdt=Decimal(4000 + i),
            futures=(FuturesAccount("USDT-FUTURES", "USDT", Decimal(5000 + i), Decimal(5000 + i), Decimal(4000),
                                    Decimal(0), Decimal("-17.05"), Decimal("0.031")),),
            positions=positions, requests=4,
        )  # fmt: skip
        outcomes.append(PollOutcome(snapshot.account, at, at, snapshot=snapshot, requests=4))
    return outcomes


def size(store: Store, url: str) -> int:
    if url.startswith("sqlite"):
        with store.engine.connect() as connection:
            connection.execute(text("PRAGMA wal_checkpoint(TRUNCATE)"))
        return Path(url.removeprefix("sqlite:///")).stat().st_size
    with store.engine.connect() as connection:
        return int(connection.execute(text("SELECT pg_database_size(current_database())")).scalar_one())


def write_cycles(
    store: Store, url: str, accounts: int, start: datetime, cycles: int
) -> tuple[list[float], list[float], float]:
    """Write `cycles` cycles 30 s apart: each one's time and this process's CPU time in it (ms; the rest is
    waiting for the database server, or SQLite's file), and the database growth per account-poll."""
    before = size(store, url)
    times, cpu = [], []
    for k in range(cycles):
        outcomes = cycle(accounts, start + timedelta(seconds=30 * k))
        wall, used = time.perf_counter(), time.process_time()
        store.write_polls(outcomes)
        times.append((time.perf_counter() - wall) * 1000)
        cpu.append((time.process_time() - used) * 1000)
    return times, cpu, (size(store, url) - before) / (cycles * accounts)


def measure(url: str, accounts: int, cycles: int) -> None:
    """A full cycle (every balance and position row, as after a restart or when everything changed) against
    the target, then the steady state with the default snapshot_interval: its mean cost per cycle and the
    growth it implies."""
    migrations.upgrade(url)
    start = datetime(2026, 1, 1, tzinfo=UTC)
    store = Store(url)  # snapshot_interval 0: every poll stores every row
    store.write_polls(cycle(accounts, start - timedelta(seconds=30)))  # warm-up: account rows, caches
    tune_gc()  # as in the service, whose writer runs in the same process
    full, full_cpu, full_per_poll = write_cycles(store, url, accounts, start, cycles)
    store.close()
    store = Store(url, snapshot_interval=SNAPSHOT_INTERVAL)
    steady_cycles = int(SNAPSHOT_INTERVAL.total_seconds()) // 30  # one interval: one full cycle, the rest thin
    start += timedelta(seconds=30 * cycles)
    steady, _, per_poll = write_cycles(store, url, accounts, start, steady_cycles)
    store.maintain(start + timedelta(days=RAW_DAYS + 1), timedelta(days=RAW_DAYS), timedelta(days=HOURLY_DAYS))
    store.close()
    kind = url.split(":")[0].split("+")[0]
    raw_day = per_poll * POLLS_PER_DAY
    print(f"{kind:10} one full cycle of {accounts} accounts x 5 positions: median {statistics.median(full):.0f} ms "
          f"(target {TARGET_MS:.0f} ms), of which this process's CPU {statistics.median(full_cpu):.0f} ms; "
          f"{full_per_poll / 1024:.1f} KB per account-poll")  # fmt: skip
    print(f"{'':10} steady state, snapshot_interval {SNAPSHOT_INTERVAL.seconds // 60} min: "
          f"mean {statistics.mean(steady):.0f} ms per cycle (median {statistics.median(steady):.0f} ms)")  # fmt: skip
    print(f"{'':10} growth: {per_poll / 1024:.2f} KB per account-poll = {raw_day / 2**20:.1f} MB per account per day "
          f"(poll_interval 30 s); steady state with {RAW_DAYS} d raw: {raw_day * RAW_DAYS / 2**20:.0f} MB "
          "per account, plus hourly rollups (a few KB per account per day)")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--accounts", type=int, default=1000)
    parser.add_argument("--cycles", type=int, default=5)
    parser.add_argument(
        "--postgres",
        default=os.environ.get("MONITOR_TEST_POSTGRES_URL"),
        help="an admin URL: a fresh database is made and dropped (default: $MONITOR_TEST_POSTGRES_URL)",
    )
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-storage-") as tmp:
        measure(f"sqlite:///{tmp}/bench.db", args.accounts, args.cycles)
    if not args.postgres:
        print("postgresql: skipped (pass --postgres or set MONITOR_TEST_POSTGRES_URL)")
        return
    import psycopg
    from sqlalchemy.engine import make_url

    admin = make_url(args.postgres)
    conninfo = admin.set(drivername="postgresql").render_as_string(hide_password=False)
    name = f"bm_bench_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(conninfo, autocommit=True) as connection:
        connection.execute(f'CREATE DATABASE "{name}"')
    try:
        measure(admin.set(drivername="postgresql+psycopg", database=name).render_as_string(hide_password=False),
                args.accounts, args.cycles)  # fmt: skip
    finally:
        with psycopg.connect(conninfo, autocommit=True) as connection:
            connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


if __name__ == "__main__":
    main()
