"""The store on SQLite and PostgreSQL: migrations, exact round trips, the page's queries, rollup and retention,
and the write buffer across a database outage."""

from __future__ import annotations

import asyncio
import socket
import sys
import threading
import time
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import select, text
from sqlmodel import SQLModel

import monitor.store.tables  # noqa: F401
from monitor.clock import ManualClock
from monitor.domain import (
    AccountMode,
    AccountSnapshot,
    FuturesAccount,
    KeyInfo,
    MarginMode,
    PollOutcome,
    Position,
    PositionMode,
    Side,
    SpotAsset,
    UnifiedAccount,
    UnifiedAsset,
)
from monitor.store import migrations
from monitor.store.engine import make_engine
from monitor.store.lastread import last_snapshots
from monitor.store.repository import BALANCE, EQUITY, POSITION, Store
from monitor.store.writer import SnapshotWriter
from tests import stored as readback
from tests.conftest import until

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def position(
    symbol: str = "BTCUSDT", mark: str = "60000", liq: str | None = "50000", side: Side = Side.LONG
) -> Position:
    return Position(
        product_type="USDT-FUTURES", symbol=symbol, margin_coin="USDT", side=side, position_mode=PositionMode.ONE_WAY,
        margin_mode=MarginMode.ISOLATED, size=Decimal("0.5"), entry_price=Decimal("59000"), mark_price=Decimal(mark),
        liquidation_price=Decimal(liq) if liq else None, margin=Decimal("3000"), leverage=Decimal(10),
        unrealized_pnl=Decimal("500.123456789"), margin_ratio=Decimal("0.01"),
    )  # fmt: skip


def snapshot(account: str, at: datetime, equity: str = "1000", positions: tuple[Position, ...] = ()) -> AccountSnapshot:
    return AccountSnapshot(
        account=account, taken_at=at, mode=AccountMode.CLASSIC,
        spot=(SpotAsset("USDT", Decimal("10.5"), Decimal(0), Decimal("0.25")),), spot_usdt=Decimal("10.75"),
        futures=(FuturesAccount("USDT-FUTURES", "USDT", Decimal(equity), Decimal(equity), Decimal(1), Decimal(0),
                                Decimal("-2.5"), Decimal("0.0123")),),
        positions=positions,
    )  # fmt: skip


def ok(account: str, at: datetime, **kw: Any) -> PollOutcome:
    return PollOutcome(account, at - timedelta(seconds=1), at, snapshot=snapshot(account, at, **kw), requests=5)


def test_migrations_run_up_and_down_and_match_the_tables(db_url: str) -> None:
    assert migrations.current(db_url) is None
    migrations.upgrade(db_url)
    assert migrations.current(db_url) == migrations.head()
    engine = make_engine(db_url)
    with engine.connect() as connection:
        differences = compare_metadata(
            MigrationContext.configure(connection, opts={"compare_type": True}), SQLModel.metadata
        )
    engine.dispose()
    assert differences == [], "the SQLModel tables and the migrations disagree: write a migration"
    migrations.downgrade(db_url, "base")
    assert migrations.current(db_url) is None
    engine = make_engine(db_url)
    with engine.connect() as connection:
        remaining = set(connection.dialect.get_table_names(connection)) - {"alembic_version"}
    engine.dispose()
    assert remaining == set()


def test_money_and_times_come_back_exactly(store: Store) -> None:
    at = datetime(2026, 3, 1, 12, 0, 0, 123000, tzinfo=UTC)
    p = position(mark="0.000012345678", liq="0.000011")
    store.write_polls([ok("alpha", at, equity="104823.80000001", positions=(p,))])
    latest = readback.latest(store)["alpha"]
    assert latest.taken_at == at and latest.taken_at.tzinfo is not None
    assert latest.equity_usdt == Decimal("104823.80000001") + Decimal("10.75")
    (stored,) = latest.positions
    assert stored.mark_price == Decimal("0.000012345678")
    assert stored.unrealized_pnl == Decimal("500.123456789")
    assert stored.liquidation_distance_pct == p.liquidation_distance_pct
    futures = next(b for b in latest.balances if b.product == "USDT-FUTURES")
    assert (futures.equity, futures.risk_ratio) == (Decimal("104823.80000001"), Decimal("0.0123"))


def test_naive_times_are_refused(store: Store) -> None:
    with pytest.raises(Exception, match="naive datetime"):
        store.write_polls([ok("alpha", datetime(2026, 3, 1, 12))])  # noqa: DTZ001


def test_latest_is_each_accounts_last_good_snapshot(store: Store) -> None:
    store.write_polls([ok("a", T0, equity="100"), ok("b", T0, equity="200", positions=(position(),))])
    store.write_polls([
        ok("a", T0 + timedelta(seconds=30), equity="110", positions=(position("ETHUSDT"),)),
        PollOutcome("b", T0 + timedelta(seconds=30), T0 + timedelta(seconds=31), error_code="40012", error_message="x"),
    ])  # fmt: skip
    latest = readback.latest(store)
    assert latest["a"].equity_usdt == Decimal("120.75") and [p.symbol for p in latest["a"].positions] == ["ETHUSDT"]
    assert latest["b"].taken_at == T0 and [p.symbol for p in latest["b"].positions] == ["BTCUSDT"]
    assert set(readback.latest(store, ["a"])) == {"a"}


def test_each_accounts_last_stored_read_comes_back_as_a_snapshot(store: Store) -> None:
    unified = AccountSnapshot(
        account="u", taken_at=T0, mode=AccountMode.UNIFIED, positions=(position(),),
        unified=UnifiedAccount(Decimal(5000), Decimal(5000), Decimal(12), Decimal("0.07"), None, None, None,
                               (UnifiedAsset("BTC", Decimal("0.05"), Decimal(3000), Decimal("0.05"), Decimal("0.04"),
                                             Decimal(0), Decimal("0.01")),)),
    )  # fmt: skip
    store.write_polls([ok("a", T0, equity="100"), PollOutcome("u", T0, T0, snapshot=unified)])
    store.write_polls([
        ok("a", T0 + timedelta(seconds=30), equity="110", positions=(position("ETHUSDT"), position())),
        PollOutcome("u", T0 + timedelta(seconds=30), T0 + timedelta(seconds=31), error_code="40018", error_message="x"),
    ])  # fmt: skip
    found = last_snapshots(store.engine)
    classic = ok("a", T0 + timedelta(seconds=30), equity="110", positions=(position("ETHUSDT"), position())).snapshot
    assert classic is not None and found["a"].taken_at == classic.taken_at
    assert found["a"].equity_usdt == classic.equity_usdt == Decimal("120.75")
    assert (found["a"].spot, found["a"].futures) == (classic.spot, classic.futures)
    assert sorted(found["a"].positions, key=lambda p: p.symbol) == sorted(classic.positions, key=lambda p: p.symbol)
    assert (found["u"].mode, found["u"].taken_at, found["u"].equity_usdt) == (AccountMode.UNIFIED, T0, Decimal(5000))
    assert found["u"].positions == unified.positions and found["u"].unrealized_pnl_usdt == Decimal(12)
    assert found["u"].unified is not None and [a.coin for a in found["u"].unified.assets] == ["BTC"]


def test_balances_and_positions_are_stored_every_snapshot_interval_and_on_every_change(db_url: str) -> None:
    """With snapshot_interval, a calm account's rows go in every 5 minutes; a change, or being at risk, stores
    them at once; the equity series keeps every poll; a restart stores the first poll in full."""
    migrations.upgrade(db_url)
    store = Store(db_url, snapshot_interval=timedelta(minutes=5))
    calm, bigger = (position(),), (replace(position(), size=Decimal(1)),)
    plan = {0: calm, 1: calm, 2: bigger, 3: bigger, 11: bigger, 12: bigger, 13: bigger}  # 30 s apart
    for k, positions in plan.items():
        at_risk = k == 13
        store.write_polls([replace(ok("a", T0 + timedelta(seconds=30 * k), positions=positions), at_risk=at_risk)])
    store.close()
    store = Store(db_url, snapshot_interval=timedelta(minutes=5))  # a restart: nothing known about the last rows
    store.write_polls([ok("a", T0 + timedelta(seconds=30 * 14), positions=bigger)])
    store.write_polls([ok("a", T0 + timedelta(seconds=30 * 15), positions=bigger)])
    with store.engine.connect() as connection:
        rows = {
            table.name: sorted(int((at - T0).total_seconds()) // 30 for at in connection.scalars(
                select(table.c.taken_at).distinct()
            ))
            for table in (POSITION, BALANCE, EQUITY)
        }  # fmt: skip
    # 0: first; 2: the size changed; 12: five minutes after 2; 13: at risk; 14: after the restart
    assert rows["position_snapshot"] == rows["balance_snapshot"] == [0, 2, 12, 13, 14]
    assert rows["equity_point"] == [0, 1, 2, 3, 11, 12, 13, 14, 15]
    latest = readback.latest(store)["a"]
    assert latest.taken_at == T0 + timedelta(seconds=30 * 14) and latest.positions[0].size == Decimal(1)
    store.close()


def test_account_rows_track_success_errors_keys_and_the_equity_peak(store: Store) -> None:
    key = KeyInfo(uid="42", permissions=("readonly",), ips=("1.2.3.4",))
    store.write_polls([
        ok("a", T0, equity="100"),
        ok("a", T0 + timedelta(minutes=1), equity="150"),
        ok("a", T0 + timedelta(minutes=2), equity="120"),
        PollOutcome("a", T0 + timedelta(minutes=3), T0 + timedelta(minutes=3), error_code="40725",
                    error_message="service return an error", key=key),
    ])  # fmt: skip
    from sqlalchemy import select

    from monitor.store.repository import ACCOUNT

    with store.engine.connect() as connection:
        row = connection.execute(select(ACCOUNT).where(ACCOUNT.c.name == "a")).one()
    # The high-water mark comes from the equity series (the account row no longer keeps a copy of it).
    assert readback.equity_peak(store, "a", T0) == Decimal("160.75")
    assert row.last_success_at == T0 + timedelta(minutes=2)
    assert (row.last_error_code, row.last_error_at) == ("40725", T0 + timedelta(minutes=3))
    assert (row.uid, row.permissions, row.ips) == ("42", ["readonly"], ["1.2.3.4"])
    assert readback.equity_peak(store, "a", T0 + timedelta(minutes=2)) == Decimal("130.75")


def account_row(store: Store, name: str) -> Any:
    from monitor.store.repository import ACCOUNT

    with store.engine.connect() as connection:
        return connection.execute(select(ACCOUNT).where(ACCOUNT.c.name == name)).one()


def test_the_account_row_is_rewritten_only_when_something_in_it_changes(store: Store) -> None:
    from monitor.store.snapshots import ACCOUNT_REFRESH

    store.write_polls([ok("a", T0)])
    assert account_row(store, "a").last_poll_at == T0
    # Polls that change nothing but the time of the last poll leave the row as it is ...
    store.write_polls([ok("a", T0 + timedelta(seconds=30))])
    store.write_polls([ok("a", T0 + timedelta(seconds=60))])
    row = account_row(store, "a")
    assert (row.last_poll_at, row.last_success_at) == (T0, T0)
    # ... while the poll rows say when the account last gave good data, to a process started now.
    assert store.alerts.last_success() == {"a": T0 + timedelta(seconds=60)}
    # An error is written at once, with the last success this process knew.
    failed = T0 + timedelta(seconds=90)
    store.write_polls([PollOutcome("a", failed, failed, error_code="40725", error_message="service error")])
    row = account_row(store, "a")
    assert (row.last_error_code, row.last_error_at, row.last_poll_at) == ("40725", failed, failed)
    assert row.last_success_at == T0 + timedelta(seconds=60)
    # A key checked, a mode learned: written at once.
    key = KeyInfo(uid="42", permissions=("readonly",), ips=())
    store.write_polls([replace(ok("a", T0 + timedelta(seconds=120)), key=key)])
    row = account_row(store, "a")
    assert (row.uid, row.key_checked_at) == ("42", T0 + timedelta(seconds=120))
    # And at least every ACCOUNT_REFRESH, so the row's times never lag more than that.
    later = T0 + timedelta(seconds=120) + ACCOUNT_REFRESH
    store.write_polls([ok("a", later - timedelta(seconds=1))])
    assert account_row(store, "a").last_poll_at == T0 + timedelta(seconds=120)
    store.write_polls([ok("a", later)])
    row = account_row(store, "a")
    assert (row.last_poll_at, row.last_success_at, row.last_error_code) == (later, later, "40725")


def test_a_restarted_store_writes_the_account_row_at_its_first_poll(db_url: str) -> None:
    migrations.upgrade(db_url)
    first = Store(db_url)
    first.write_polls([ok("a", T0)])
    first.write_polls([ok("a", T0 + timedelta(seconds=30))])
    first.close()
    second = Store(db_url)
    try:
        second.write_polls([ok("a", T0 + timedelta(seconds=60))])
        assert account_row(second, "a").last_poll_at == T0 + timedelta(seconds=60)
    finally:
        second.close()


def test_rollup_and_retention_keep_history_bounded_and_charts_right(store: Store) -> None:
    clock = ManualClock(T0)
    # Two accounts polled every 10 minutes for 10 days; equity climbs 1 a poll, with a dip each hour.
    for _ in range(10 * 24 * 6):
        at = clock.now()
        dip = Decimal(-50) if at.minute == 30 else Decimal(0)
        base = Decimal(1000) + Decimal((at - T0).total_seconds() / 600)
        store.write_polls([ok("a", at, equity=str(base + dip), positions=(position(),)), ok("b", at)])
        clock.advance(timedelta(minutes=10))
    report = store.maintain(clock.now(), raw_retention=timedelta(days=7), hourly_retention=timedelta(days=8))
    assert report.hours_rolled_up == 2 * 10 * 24
    assert report.hourly_rows_deleted == 2 * 2 * 24  # the two oldest days (of 10) are past 8 days
    raw_left = store.equity_series("a", T0, clock.now())
    assert raw_left[0].at >= clock.now() - timedelta(days=7)
    hourly = store.equity_series("a", T0, clock.now(), hourly=True)
    assert len(hourly) == 8 * 24
    hour = hourly[-1]
    assert hour.at == datetime(2026, 3, 11, 11, tzinfo=UTC)
    first = Decimal(1000) + Decimal((hour.at - T0).total_seconds() / 600) + Decimal("10.75")
    assert (hour.low, hour.high, hour.equity) == (first + 3 - 50, first + 5, first + 5)
    assert hour.worst_liquidation_distance_pct == position().liquidation_distance_pct
    # Running maintenance again changes nothing.
    again = store.maintain(clock.now(), raw_retention=timedelta(days=7), hourly_retention=timedelta(days=8))
    assert (again.raw_rows_deleted, again.hourly_rows_deleted) == (0, 0)
    assert len(store.equity_series("a", T0, clock.now(), hourly=True)) == 8 * 24


def test_hours_not_rolled_up_yet_are_aggregated_on_the_fly(store: Store) -> None:
    store.write_polls([ok("a", T0 + timedelta(minutes=m), equity=str(100 + m)) for m in (0, 20, 40)])
    (hour,) = store.equity_series("a", T0 - timedelta(hours=1), T0 + timedelta(hours=1), hourly=True)
    assert (hour.at, hour.low, hour.high, hour.equity) == (T0, Decimal("110.75"), Decimal("150.75"), Decimal("150.75"))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    except ConnectionError:
        pass
    finally:
        writer.close()


async def test_snapshots_queued_while_the_database_is_unreachable_are_all_written_later(
    db_url: str, tmp_path: Path
) -> None:
    """The database first refuses connections, then accepts: nothing queued in between is lost."""
    from sqlalchemy.engine import make_url

    migrations.upgrade(db_url)
    url = make_url(db_url)
    if url.get_backend_name() == "sqlite":
        # Unreachable: the database lives in a directory that is not there yet.
        hidden = tmp_path / "not-yet"
        target = f"sqlite:///{hidden}/monitor.db"
        reachable = lambda: (hidden.mkdir(), Path(str(url.database)).rename(hidden / "monitor.db"))  # noqa: E731
        server = None
    else:
        # Unreachable: a loopback port that refuses, until a proxy to the real server starts listening on it.
        port = _free_port()
        target = url.set(host="127.0.0.1", port=port).render_as_string(hide_password=False)

        async def proxy(client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter) -> None:
            server_reader, server_writer = await asyncio.open_connection(url.host or "127.0.0.1", url.port or 5432)
            await asyncio.gather(_pipe(client_reader, server_writer), _pipe(server_reader, client_writer))

        server = None

        async def start() -> None:
            nonlocal server
            server = await asyncio.start_server(proxy, "127.0.0.1", port)

    store = Store(target)
    writer = SnapshotWriter(store, retry_min=0.05, retry_max=0.2)
    task = asyncio.create_task(writer.run())
    try:
        outcomes = [ok(f"acct-{i % 7}", T0 + timedelta(seconds=i)) for i in range(50)]
        for o in outcomes[:30]:
            writer.submit(o)
        await asyncio.sleep(0.5)
        assert not writer.healthy and writer.written == 0 and writer.pending == 30
        for o in outcomes[30:]:
            writer.submit(o)
        if url.get_backend_name() == "sqlite":
            reachable()
        else:
            await start()
        assert await writer.flush(timeout=30)
        assert writer.healthy and writer.written == 50 and writer.dropped == 0
        # Reads go through the proxy, which this event loop serves: run them in a thread.
        latest = await asyncio.to_thread(readback.latest, store)
        assert {name: s.taken_at for name, s in latest.items()} == {
            f"acct-{i}": max(o.finished_at for o in outcomes if o.account == f"acct-{i}") for i in range(7)
        }
        series = [
            await asyncio.to_thread(store.equity_series, f"acct-{i}", T0, T0 + timedelta(hours=1)) for i in range(7)
        ]
        assert sum(len(s) for s in series) == 50
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        store.close()
        if server is not None:
            server.close()


async def test_the_writer_gathers_the_results_of_an_interval_and_a_flush_writes_them_at_once(tmp_path: Path) -> None:
    from tests.conftest import until

    store = Store(f"sqlite:///{tmp_path}/monitor.db")
    migrations.upgrade(f"sqlite:///{tmp_path}/monitor.db")
    writer = SnapshotWriter(store, interval=3600)
    task = asyncio.create_task(writer.run())
    try:
        writer.submit(ok("a", T0))
        await until(lambda: writer.written == 1)  # the first result after a quiet spell goes at once
        for i in range(1, 11):
            writer.submit(ok(f"acct-{i}", T0 + timedelta(seconds=i)))
        await asyncio.sleep(0.3)
        assert (writer.written, writer.pending) == (1, 10)  # the next ones wait for the interval, together
        assert await writer.flush(timeout=10)  # shutdown: no waiting for the interval
        assert (writer.written, writer.pending) == (11, 0)
        latest = await asyncio.to_thread(readback.latest, store)
        assert set(latest) == {"a", *(f"acct-{i}" for i in range(1, 11))}
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        store.close()


async def test_a_full_buffer_drops_the_oldest_snapshots_and_counts_them(tmp_path: Path) -> None:
    target = f"sqlite:///{tmp_path}/later/monitor.db"
    store = Store(target)
    writer = SnapshotWriter(store, limit=5, retry_min=0.05, retry_max=0.1)
    task = asyncio.create_task(writer.run())
    try:
        for i in range(8):
            writer.submit(ok("a", T0 + timedelta(minutes=i)))
            await asyncio.sleep(0.02)
        await until(lambda: writer.pending == 5, 10)  # a write attempt under way holds its batch out of the queue
        assert writer.dropped == 3 and writer.pending == 5
        (tmp_path / "later").mkdir()
        migrations.upgrade(target)
        assert await writer.flush(timeout=10)
        series = store.equity_series("a", T0, T0 + timedelta(hours=1))
        assert [s.at for s in series] == [T0 + timedelta(minutes=i) for i in range(3, 8)]
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        store.close()


async def test_the_db_commands_migrate_and_report(db_url: str) -> None:
    async def db(*args: str) -> tuple[int, str]:
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "monitor", "db", "--database-url", db_url, *args,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        out, _ = await process.communicate()
        assert process.returncode is not None
        return process.returncode, out.decode()

    code, out = await db("current")
    assert code == 0 and "revision none (empty), behind" in out
    code, out = await db("upgrade")
    assert code == 0 and f"revision {migrations.head()}, up to date" in out
    code, out = await db("downgrade", "base")
    assert code == 0 and "revision none (empty)" in out


def test_leases_split_accounts_evenly_and_a_dead_nodes_expire(store: Store) -> None:
    names = [f"acct-{i:02d}" for i in range(10)]
    ttl = timedelta(seconds=30)
    a = store.claim("node-a", names, T0, ttl)
    assert a == set(names)  # alone: everything
    b = store.claim("node-b", names, T0 + timedelta(seconds=1), ttl)
    assert b == set()  # nothing free yet
    a = store.claim("node-a", names, T0 + timedelta(seconds=10), ttl)
    assert len(a) == 5  # a sees b alive and gives back half
    b = store.claim("node-b", names, T0 + timedelta(seconds=11), ttl)
    assert len(b) == 5 and a.isdisjoint(b) and a | b == set(names)
    # b dies (no more heartbeats or renewals): after the TTL, a takes everything over
    a = store.claim("node-a", names, T0 + timedelta(seconds=25), ttl)
    assert len(a) == 5
    a = store.claim("node-a", names, T0 + timedelta(seconds=45), ttl)
    assert a == set(names)


def test_a_released_node_hands_its_accounts_over_at_once(store: Store) -> None:
    names = ["x", "y"]
    ttl = timedelta(seconds=30)
    store.claim("node-a", names, T0, ttl)
    store.claim("node-b", names, T0, ttl)
    store.claim("node-a", names, T0, ttl)
    assert len(store.claim("node-b", names, T0, ttl)) == 1
    store.release("node-b", T0)
    assert store.claim("node-a", names, T0 + timedelta(seconds=1), ttl) == {"x", "y"}


async def test_a_result_the_database_refuses_is_dropped_alone(store: Store, caplog: Any) -> None:
    writer = SnapshotWriter(store)
    task = asyncio.create_task(writer.run())
    try:
        naive = datetime(2026, 3, 1, 12, 5)  # noqa: DTZ001  (refused by the column type)
        writer.submit(ok("a", T0))
        writer.submit(PollOutcome("a", naive, naive, error_code="x", error_message="bad time"))
        writer.submit(ok("a", T0 + timedelta(minutes=10)))
        assert await writer.flush(timeout=10)
        assert (writer.written, writer.dropped, writer.healthy) == (2, 1, True)
        series = await asyncio.to_thread(store.equity_series, "a", T0, T0 + timedelta(hours=1))
        assert [s.at for s in series] == [T0, T0 + timedelta(minutes=10)]
        assert "a poll result the database refuses was dropped" in caplog.text
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


async def test_a_money_value_that_is_not_finite_is_refused_in_the_middle_of_a_bulk_write(store: Store) -> None:
    """The position rows are converted as they are sent (a COPY on PostgreSQL, already under way when a NaN
    comes): the write is refused as a whole, and the writer then stores the other results of its batch."""
    writer = SnapshotWriter(store)
    task = asyncio.create_task(writer.run())
    try:
        many = tuple(position(symbol=f"S{i}USDT") for i in range(600))  # more than one chunk of rows
        writer.submit(ok("a", T0, positions=many))
        writer.submit(ok("a", T0 + timedelta(minutes=5), positions=(*many, position(mark="NaN"))))
        writer.submit(ok("a", T0 + timedelta(minutes=10), positions=many))
        assert await writer.flush(timeout=10)
        assert (writer.written, writer.dropped, writer.healthy) == (2, 1, True)
        series = await asyncio.to_thread(store.equity_series, "a", T0, T0 + timedelta(hours=1))
        assert [s.at for s in series] == [T0, T0 + timedelta(minutes=10)]
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


async def test_a_result_postgresql_refuses_in_a_bulk_write_is_dropped_alone(
    store: Store, db_url: str, caplog: Any
) -> None:
    """Bulk writes talk to psycopg directly (COPY): a value the server refuses there must still read as refused
    data, so the writer isolates that result instead of stopping, and says which account it was."""
    if not db_url.startswith("postgresql"):
        pytest.skip("SQLite stores any decimal as text: nothing to refuse")
    writer = SnapshotWriter(store)
    task = asyncio.create_task(writer.run())
    try:
        writer.submit(ok("a", T0, positions=(position(),)))
        writer.submit(ok("a", T0 + timedelta(minutes=5), positions=(position(mark="1e200000"),)))  # past NUMERIC
        writer.submit(ok("a", T0 + timedelta(minutes=10), positions=(position(),)))
        assert await writer.flush(timeout=10)
        assert (writer.written, writer.dropped, writer.healthy) == (2, 1, True)
        assert writer.refused == {"a": 1} and writer.refusals == {}  # the next result was stored: error cleared
        series = await asyncio.to_thread(store.equity_series, "a", T0, T0 + timedelta(hours=1))
        assert [s.at for s in series] == [T0, T0 + timedelta(minutes=10)]
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


def test_the_peak_since_a_moment_ignores_earlier_points_of_its_hour(store: Store) -> None:
    store.write_polls([ok("a", T0, equity="5000"), ok("a", T0 + timedelta(minutes=30), equity="100")])
    store.maintain(T0 + timedelta(hours=2), raw_retention=timedelta(days=7), hourly_retention=timedelta(days=30))
    assert readback.equity_peak(store, "a", T0 + timedelta(minutes=20)) == Decimal("110.75")
    assert readback.equity_peak(store, "a", T0) == Decimal("5010.75")


def test_hourly_maintenance_with_a_short_raw_retention_keeps_every_hour(store: Store) -> None:
    clock = ManualClock(T0)
    for hour in range(12):
        store.write_polls([ok("a", clock.now() + timedelta(minutes=m), equity=str(100 + hour)) for m in (0, 30)])
        clock.advance(timedelta(hours=1))
        store.maintain(clock.now(), raw_retention=timedelta(hours=1), hourly_retention=timedelta(days=30))
    hours = store.equity_series("a", T0, clock.now(), hourly=True)
    assert [h.at for h in hours] == [T0 + timedelta(hours=h) for h in range(12)]
    assert [h.equity for h in hours] == [Decimal(100 + h) + Decimal("10.75") for h in range(12)]


async def test_over_long_exchange_strings_are_clipped_to_their_columns_instead_of_failing_the_write(
    store: Store, db_url: str
) -> None:
    """PostgreSQL refused a 33-character code in varchar(32) and every poll of that account was dropped."""
    failed = PollOutcome("a", T0, T0, error_code="4" * 500, error_message="m\x00" * 5000, requests=1)
    long_symbol = position("S" * 300)
    writer = SnapshotWriter(store)
    task = asyncio.create_task(writer.run())
    try:
        writer.submit(failed)
        writer.submit(ok("a", T0 + timedelta(minutes=5), positions=(long_symbol,)))
        assert await writer.flush(timeout=10)
        assert (writer.written, writer.dropped, writer.refused) == (2, 0, {})
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    latest = (await asyncio.to_thread(readback.latest, store, ["a"]))["a"]
    symbol = latest.positions[0].symbol
    assert len(symbol) == 64 and symbol.startswith("SSS") and symbol.endswith("…")
    with store.engine.connect() as connection:
        code, message = connection.execute(text("SELECT last_error_code, last_error_message FROM account")).one()
    assert len(code) == 32 and 500 <= len(message) <= 1000 and "\x00" not in message


def test_closing_waits_for_a_call_still_running_in_a_worker_thread(db_url: str) -> None:
    """At shutdown a cancelled task's database call may still run in its thread: close() lets it finish and
    return its connection before the pool goes, so no connection is left open behind a disposed pool."""
    migrations.upgrade(db_url)
    store = Store(db_url)
    held = threading.Event()

    def slow_call() -> None:
        with store.engine.connect() as connection:
            held.set()
            time.sleep(0.3)
            connection.execute(select(1))

    worker = threading.Thread(target=slow_call)
    worker.start()
    assert held.wait(5)
    store.close()
    assert not worker.is_alive()  # close() waited for it
    assert store.engine.pool.checkedout() == 0  # type: ignore[attr-defined]
    worker.join()
