"""One account's absurd data, a database that refuses one account's results, and a SQLite file deleted under
the monitor: the page, the API, the metrics and /readyz keep answering for everything else, and say what is
wrong where it is wrong."""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import AsyncIterator, Callable
from dataclasses import replace
from decimal import Decimal
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from prometheus_client.parser import text_string_to_metric_families

from monitor.clock import SystemClock
from monitor.config import load_config
from monitor.domain import (
    AccountMode,
    AccountSnapshot,
    FuturesAccount,
    MarginMode,
    PollOutcome,
    Position,
    PositionMode,
    Side,
)
from monitor.poller.state import INVALID_SNAPSHOT, Status
from monitor.readmodel import ServiceReader
from monitor.service import Service
from tests.conftest import Sim, SimFactory
from tests.test_web import accounts_file
from web.app import create_app

D = Decimal
PATHS = ("/", "/alerts", "/api/v1/status", "/metrics", "/readyz")


async def until(condition: Callable[[], bool], timeout: float = 10.0) -> None:
    async with asyncio.timeout(timeout):
        while not condition():
            await asyncio.sleep(0.01)


@pytest.fixture
async def served(make_sim: SimFactory, tmp_path: Path, aiohttp_client: Any) -> AsyncIterator[Any]:
    """A service that has read every account once, its poller running (an hour between reads, so nothing is
    read again during a test), and a client for its web app."""

    async def start(
        accounts: int = 6, database: str | None = None, bitget_url: str | None = None, sim: Sim | None = None
    ) -> tuple[Any, Service, Sim]:
        sim = sim or await make_sim(accounts=accounts)
        path = accounts_file(sim, tmp_path, rename=False)
        text = path.read_text().replace("[monitor]\n", '[monitor]\npoll_interval = "1h"\n', 1)
        if database is not None:
            text = re.sub(r'database_url = "[^"]*"', f'database_url = "{database}"', text, count=1)
        if bitget_url is not None:
            text = text.replace(sim.url, bitget_url)
        path.write_text(text)
        service = Service(path, load_config(path, env={}), SystemClock())
        context = service.started()
        poller = await context.__aenter__()
        contexts.append(context)
        await poller.cycle()
        await service.storage_ready.wait()
        tasks.append(asyncio.create_task(poller.run()))
        await until(lambda: poller.running)
        client = await aiohttp_client(create_app(ServiceReader(service)))
        return client, service, sim

    contexts: list[Any] = []
    tasks: list[asyncio.Task[None]] = []
    yield start
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    for context in contexts:
        await context.__aexit__(None, None, None)


def absurd_snapshot(name: str, value: Decimal) -> AccountSnapshot:
    position = Position("USDT-FUTURES", "BTCUSDT", "USDT", Side.LONG, PositionMode.ONE_WAY, MarginMode.ISOLATED,
                        D(1), D(100), value, D(90), D(10), D(10), D(0))  # fmt: skip
    futures = FuturesAccount("USDT-FUTURES", "USDT", value, value, D(0), D(0), D(0), value)
    return AccountSnapshot(name, SystemClock().now(), AccountMode.CLASSIC, futures=(futures,), positions=(position,))


def families(text: str) -> dict[str, Any]:
    return {f.name: f for f in text_string_to_metric_families(text)}


@pytest.mark.parametrize("value", ["1e999999999", "-1e999999999", "Infinity", "NaN", "1e309"])
async def test_one_accounts_absurd_numbers_never_break_the_page_the_api_the_metrics_or_readyz(
    served: Any, value: str
) -> None:
    client, service, _ = await served()
    states = service.poller.active()
    victim = states[1]
    assert all(s.snapshot is not None for s in states)
    victim.snapshot = absurd_snapshot(victim.name, D(value))  # as if it had got past every check
    for path in (*PATHS, f"/accounts/{victim.name}", f"/api/v1/accounts/{victim.name}"):
        response = await client.get(path)
        assert response.status == 200, (path, await response.text())
    body = await (await client.get("/api/v1/status")).json()
    rows = {r["name"]: r for r in body["accounts"]}
    assert len(rows) == len(states)
    bad = rows.pop(victim.name)
    assert (bad["status"], bad["error_code"], bad["equity"]) == ("failing", INVALID_SNAPSHOT, None)
    assert all(r["equity"] is not None for r in rows.values())
    metrics = families(await (await client.get("/metrics")).text())
    equity = {s.labels["account"]: s.value for s in metrics["bitget_monitor_account_equity_usdt"].samples}
    assert set(equity) == set(rows) and all(abs(v) < 1e30 for v in equity.values())
    html = await (await client.get("/")).text()
    assert html.count('<tr class="status-') == len(states) and "status-failing" in html
    ready = await (await client.get("/readyz")).json()
    assert ready["ready"] is True


async def proxy(aiohttp_server: Any, session: aiohttp.ClientSession, upstream: str, key: str) -> str:
    """A proxy in front of the simulator that turns every mark price in one key's answers into 1e999999999."""

    async def forward(request: web.Request) -> web.Response:
        headers = {k: v for k, v in request.headers.items() if k.lower() not in ("host", "content-length")}
        async with session.request(request.method, upstream + request.path_qs, headers=headers,
                                   data=await request.read()) as answer:  # fmt: skip
            text, status = await answer.text(), answer.status
        if request.headers.get("ACCESS-KEY") == key:
            text = re.sub(r'"markPrice":\s*"[^"]*"', '"markPrice":"1e999999999"', text)
        return web.Response(text=text, status=status, content_type="application/json")

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", forward)
    server = await aiohttp_server(app)
    return str(server.make_url("")).rstrip("/")


async def test_an_absurd_answer_marks_only_its_account_failing_and_is_never_stored_or_judged(
    served: Any, make_sim: SimFactory, aiohttp_server: Any, session: aiohttp.ClientSession, caplog: Any
) -> None:
    sim = await make_sim(accounts=6)
    victim = sim.first(lambda a: bool(a.positions) and not a.unified)
    url = await proxy(aiohttp_server, session, sim.url, victim.api_key)
    client, service, _ = await served(bitget_url=url, sim=sim)
    state = service.poller.accounts[victim.name]
    assert state.status == Status.FAILING and state.snapshot is None
    assert state.error_message is not None and re.search(r"markPrice.*1e\+?999999999", state.error_message, re.I)
    others = [s for s in service.poller.active() if s is not state]
    assert all(s.status == Status.OK and s.snapshot is not None for s in others)
    assert "unexpected error while polling" not in caplog.text
    await service.writer.flush(5)
    assert service.writer.refused == {}  # nothing of it reached the database
    for path in (*PATHS, f"/accounts/{victim.name}"):
        response = await client.get(path)
        assert response.status == 200, (path, await response.text())
    row = next(r for r in (await (await client.get("/api/v1/status")).json())["accounts"] if r["name"] == victim.name)
    assert row["status"] == "stale" and row["error_code"] == "MalformedResponse"  # never read well: no data yet


async def test_a_result_the_database_refuses_shows_on_the_page_and_in_the_metrics(served: Any, db_url: str) -> None:
    client, service, _ = await served(database=db_url)
    state = service.poller.active()[2]
    assert state.snapshot is not None
    last = PollOutcome(state.name, state.snapshot.taken_at, state.snapshot.taken_at, snapshot=state.snapshot)
    await service.writer.flush(5)
    # A value no column takes (the poller refuses such answers; this one comes straight to the writer).
    refused = replace(last, snapshot=replace(state.snapshot, spot_usdt=D("Infinity")))
    service.writer.submit(refused)
    assert await service.writer.flush(5)
    assert service.writer.refused == {state.name: 1}
    html = await (await client.get("/")).text()
    line = next(r for r in html.split("<tr ") if f">{state.name}</a>" in r)
    assert "not stored" in line and html.count("not stored") == 1
    page = await (await client.get(f"/accounts/{state.name}")).text()
    assert "storage error" in page
    detail = await (await client.get(f"/api/v1/accounts/{state.name}")).json()
    assert detail["storage_error"]
    metrics = families(await (await client.get("/metrics")).text())
    counted = {s.labels["account"]: s.value for s in metrics["bitget_monitor_refused_writes"].samples}
    assert counted == {state.name: 1.0}
    service.writer.submit(last)  # the next result is stored: the page says so
    assert await service.writer.flush(5)
    assert "not stored" not in await (await client.get("/")).text()


async def test_deleting_the_sqlite_file_under_a_running_monitor_is_logged_and_fails_readyz(
    served: Any, tmp_path: Path, caplog: Any
) -> None:
    client, service, _ = await served()
    assert (await client.get("/readyz")).status == 200
    database = tmp_path / "m.db"
    assert database.exists()
    database.unlink()
    with caplog.at_level(logging.ERROR):
        response = await client.get("/readyz")
        assert response.status == 503
        assert (await response.json())["checks"]["database"] is False
        state = service.poller.active()[0]
        assert state.snapshot is not None
        at = state.snapshot.taken_at
        service.writer.submit(PollOutcome(state.name, at, at, snapshot=state.snapshot))
        await until(lambda: not service.writer.healthy)
    assert f"the SQLite database file {database} was deleted" in caplog.text
    assert service.writer.pending >= 1  # kept in memory, not written into a file nobody will read
    assert (await client.get("/healthz")).status == 200


@pytest.mark.parametrize(
    ("field", "value", "refused"),
    [
        ("mark_price", "60000.5", False),
        ("size", "0.00000001", False),
        ("size", "0E-50", False),  # a zero written with many places is still zero
        ("size", "0E-999999", True),  # ... but not a million of them
        ("mark_price", "1e999999999", True),
        ("mark_price", "1e21", True),
        ("size", "1e-31", True),
        ("unrealized_pnl", "-Infinity", True),
        ("margin", "NaN", True),
        ("liquidation_price", "sNaN", True),
    ],
)
def test_a_snapshot_is_refused_for_any_number_no_account_can_have(field: str, value: str, refused: bool) -> None:
    from monitor.poller.state import snapshot_problem

    snapshot = absurd_snapshot("a", D("60000"))
    snapshot = replace(snapshot, positions=(replace(snapshot.positions[0], **{field: D(value)}),))
    problem = snapshot_problem(snapshot)
    assert (problem is not None) == refused, problem
    if refused:
        assert problem is not None and field in problem and "BTCUSDT" in problem
