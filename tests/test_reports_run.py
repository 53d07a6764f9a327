"""Scheduled reports inside `run`: a report due while the process was down goes out when it starts, once, through
the real sender to chat (short form) and email (long form); with several processes on one PostgreSQL database
exactly one sends it; quiet hours hold a report back until they end."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from monitor.clock import ManualClock, SystemClock
from monitor.config import load_config
from monitor.reports.scheduler import ReportScheduler
from monitor.service import Service
from monitor.store import migrations, reportsent
from monitor.store.repository import Store
from tests.conftest import Mailbox, Sim, SimFactory, Sink, until
from tests.launch import accounts_file, running
from tests.test_reports import ok


def monitored(sim: Sim, tmp_path: Path, db_url: str, channels: str, report: str) -> Path:
    return accounts_file(sim, tmp_path, 'poll_interval = "1s"\nlease_ttl = "3s"\n', channels + report, db_url)


def reports_in(sink: Sink) -> list[dict[str, Any]]:
    return [r for r in sink.received if r["title"].startswith("daily: ")]


def mails(smtp: Mailbox) -> list[Any]:
    return [m for m in smtp.messages if str(m["Subject"]).startswith("daily: ")]


def seed_reads(db_url: str, sim: Sim, at: datetime) -> None:
    """What an earlier process stored before it went down: one read of every account at `at` (a report whose
    period holds nothing at all is not sent)."""
    migrations.upgrade(db_url)
    store = Store(db_url)
    try:
        store.write_polls([ok(name, at, "1000") for name in sim.world.accounts])
    finally:
        store.close()


def daily_due_minutes_ago(minutes: int) -> str:
    """A daily report whose due time was a few minutes ago (so it was due while no process ran)."""
    due = SystemClock().now() - timedelta(minutes=minutes)
    return f'[[reports]]\nname = "daily"\nschedule = "daily {due:%H:%M}"\ntimezone = "UTC"\n'


async def test_a_report_due_while_the_process_was_down_is_sent_once_when_it_starts_to_chat_and_email(
    make_sim: SimFactory, sink: Sink, smtp: Mailbox, tmp_path: Path, db_url: str
) -> None:
    sim = await make_sim(limits=False)
    channels = f'[channels]\nchat = ["{sink.url()}"]\nmail = ["{smtp.url()}"]\n'
    path = monitored(sim, tmp_path, db_url, channels, daily_due_minutes_ago(5))
    seed_reads(db_url, sim, SystemClock().now() - timedelta(minutes=10))
    shared = db_url.startswith("postgresql")
    processes = 2 if shared else 1  # several processes share only PostgreSQL

    async def start(n: int) -> tuple[list[Service], asyncio.Event, list[asyncio.Task[None]]]:
        services = []
        for i in range(n):
            service = Service(path, load_config(path, env={}), SystemClock())
            service.node = service.sender.node = service.reports.node = f"node-{i}"  # two processes, one host
            services.append(service)
        stop = asyncio.Event()
        return services, stop, [asyncio.create_task(s.run(stop)) for s in services]

    services, stop, tasks = await start(processes)
    try:
        await until(lambda: len(reports_in(sink)) >= 1 and len(mails(smtp)) >= 1)
        await asyncio.sleep(2.0)  # the other process's pass, and the sender's next ones: nothing more
    finally:
        stop.set()
        await asyncio.wait_for(asyncio.gather(*tasks), timeout=30)
    assert sum(s.reports.sent for s in services) == 1
    (chat,) = reports_in(sink)  # alerts of the default rules about the simulator's accounts go there too
    assert chat["title"].startswith(f"daily: {len(sim.world.accounts)} accounts")
    assert len(chat["message"]) <= 4096
    (mail,) = mails(smtp)
    (body,) = [p.get_payload(decode=True).decode() for p in mail.walk() if p.get_content_type() == "text/plain"]
    assert "Period: " in body and "(UTC)" in body
    assert "Period: " not in chat["message"]  # the short form went to chat, the long one to email

    services, stop, tasks = await start(1)  # a restart within the same period: the report is stored as sent
    try:
        await until(lambda: services[0].storage_ready.is_set() and services[0].engine.ready)
        await asyncio.sleep(1.5)
    finally:
        stop.set()
        await asyncio.wait_for(asyncio.gather(*tasks), timeout=30)
    assert services[0].reports.sent == 0
    assert len(reports_in(sink)) == 1 and len(mails(smtp)) == 1


async def test_a_report_waits_for_its_channels_quiet_hours_and_then_goes_out(
    make_sim: SimFactory, sink: Sink, tmp_path: Path
) -> None:
    sim = await make_sim(limits=False)
    db_url = f"sqlite:///{tmp_path}/m.db"
    channels = f'[channels.chat]\nurls = ["{sink.url()}"]\nquiet_hours = "08:00-09:00"\ntimezone = "UTC"\n'
    report = '[[reports]]\nname = "daily"\nschedule = "daily 07:30"\ntimezone = "UTC"\n'
    config = load_config(monitored(sim, tmp_path, db_url, channels, report), env={})
    seed_reads(db_url, sim, datetime(2026, 3, 2, 7, tzinfo=UTC))
    store = Store(db_url)
    clock = ManualClock(datetime(2026, 3, 2, 8, 10, tzinfo=UTC))  # due at 07:30, the channel quiet until 09:00
    woken: list[int] = []
    scheduler = ReportScheduler(lambda: config, store, clock, "node-a", lambda: woken.append(1))
    try:
        assert await scheduler.send_due() == []
        assert reportsent.last_sent(store.engine) == {}
        clock.advance(timedelta(minutes=50))  # 09:00: quiet hours over, 1.5 h late: well within half a day
        assert await scheduler.send_due() == ["daily"]
        assert woken == [1]
        assert await scheduler.send_due() == []  # stored: never twice
        assert reportsent.last_sent(store.engine) == {"daily": datetime(2026, 3, 2, 7, 30, tzinfo=UTC)}
    finally:
        store.close()


def test_the_scheduler_sleeps_until_the_next_due_time_but_never_more_than_a_minute() -> None:
    from types import SimpleNamespace

    from monitor.config import values
    from monitor.config.model import ReportConfig

    now = datetime(2026, 3, 2, 7, 29, 50, tzinfo=UTC)
    config = SimpleNamespace(reports=(ReportConfig("r", values.schedule("daily 07:30")),))
    scheduler = ReportScheduler(lambda: config, None, ManualClock(now), "n", lambda: None)  # type: ignore[arg-type, return-value]
    assert scheduler.pause(now) == 10.0
    assert scheduler.pause(now + timedelta(seconds=20)) == 60.0


async def test_a_report_added_by_a_reload_is_sent_by_the_running_process(
    make_sim: SimFactory, sink: Sink, tmp_path: Path
) -> None:
    sim = await make_sim(limits=False)
    db_url = f"sqlite:///{tmp_path}/m.db"
    channels = f'[channels]\nchat = ["{sink.url()}"]\n'
    path = monitored(sim, tmp_path, db_url, channels, "")
    seed_reads(db_url, sim, SystemClock().now() - timedelta(minutes=10))
    async with running(path) as service:
        await asyncio.sleep(1.0)
        assert reports_in(sink) == []
        text = path.read_text().replace("[[accounts]]", daily_due_minutes_ago(5) + "[[accounts]]", 1)
        path.write_text(text)
        assert await service.reload()
        await until(lambda: len(reports_in(sink)) == 1)  # the reload wakes the scheduler: no minute's wait


async def test_a_report_for_a_period_with_nothing_stored_is_not_sent(
    make_sim: SimFactory, sink: Sink, tmp_path: Path
) -> None:
    """A first start: the period ended before the monitor ever read anything. "equity 0.00, no data" for every
    account would alarm and tell nothing; the period counts as done, so it is not sent later either."""
    sim = await make_sim(limits=False)
    db_url = f"sqlite:///{tmp_path}/m.db"
    path = monitored(sim, tmp_path, db_url, f'[channels]\nchat = ["{sink.url()}"]\n', daily_due_minutes_ago(5))
    migrations.upgrade(db_url)
    store = Store(db_url)
    try:
        scheduler = ReportScheduler(lambda: load_config(path, env={}), store, SystemClock(), "node-a", lambda: None)
        assert await scheduler.send_due() == []
        assert "daily" in reportsent.last_sent(store.engine)
        assert await scheduler.send_due() == []
    finally:
        store.close()
    assert reports_in(sink) == []
