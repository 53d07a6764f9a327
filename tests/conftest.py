"""Shared fixtures: a real simulator on loopback, a real aiohttp session, clients for simulated accounts."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestServer

from monitor.clock import SystemClock
from monitor.config import load_config
from monitor.exchange.bitget.client import BitgetClient, Credentials, ServerClock
from monitor.secret import Secret
from monitor.service import Service
from monitor.simulator.app import simulator_app
from monitor.simulator.generate import generate_world, write_accounts_file
from monitor.simulator.market import SimAccount
from monitor.simulator.server import Simulator
from monitor.simulator.world import World, load_scenario
from monitor.store import migrations
from monitor.store.repository import Store
from tests.scenarios import LIQUIDATION_RULE


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The tests given an xdist group (the minute-long soak) first: under `pytest -n` they start at once rather
    than last, alone on a worker of their own while the others share out the rest."""
    items.sort(key=lambda item: item.get_closest_marker("xdist_group") is None)


@dataclass
class Sim:
    """A running simulator and what a test needs to talk to it."""

    sim: Simulator
    server: TestServer
    session: aiohttp.ClientSession

    @property
    def world(self) -> World:
        return self.sim.world

    @property
    def url(self) -> str:
        return str(self.server.make_url("")).rstrip("/")

    def account(self, name: str) -> SimAccount:
        return self.world.accounts[name]

    def first(self, predicate: Callable[[SimAccount], bool]) -> SimAccount:
        return next(a for a in self.world.accounts.values() if predicate(a))

    def credentials(self, account: SimAccount, **changes: Any) -> Credentials:
        secret = account.secret if account.secret is not None else self.world.private_keys[account.name]
        values = {"api_key": account.api_key, "secret": secret, "passphrase": account.passphrase}
        values.update({k: v for k, v in changes.items() if k in values})
        return Credentials(
            Secret(values["api_key"]),
            Secret(values["secret"]),
            Secret(values["passphrase"]),
            demo=changes.get("demo", account.demo),
        )

    def client(self, account: SimAccount, *, timeout: float = 5.0, **changes: Any) -> BitgetClient:
        return BitgetClient(
            self.session,
            self.url,
            account.name,
            self.credentials(account, **changes),
            ServerClock(SystemClock()),
            timeout=timeout,
        )

    async def control(self, method: str, path: str, payload: dict[str, Any] | None = None) -> Any:
        async with self.session.request(method, self.url + path, json=payload) as response:
            assert response.status == 200, await response.text()
            return await response.json()


SimFactory = Callable[..., Awaitable[Sim]]


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as s:
        yield s


@pytest.fixture
async def make_sim(aiohttp_server: Any, session: aiohttp.ClientSession, tmp_path: Path) -> SimFactory:
    """Start a simulator on a generated world, a given one, or a scenario file's text (tests.scenarios)."""

    async def start(
        accounts: int = 12, seed: int = 1, world: World | None = None, scenario: str | None = None, **options: Any
    ) -> Sim:
        options.setdefault("tick", 0)  # frozen prices unless a test moves them
        if scenario is not None:
            world = load_scenario(write_scenario(tmp_path, scenario))
        sim = Simulator(world or generate_world(accounts, seed), **options)
        server = await aiohttp_server(simulator_app(sim))
        return Sim(sim, server, session)

    return start


@pytest.fixture
async def sim(make_sim: SimFactory) -> Sim:
    return await make_sim()


def write_scenario(folder: Path, text: str) -> Path:
    """The scenario as folder/scenario.toml, with a fresh RSA key in the key file it names (cross.pem)."""
    if 'rsa_private_key_file = "cross.pem"' in text:
        from cryptography.hazmat.primitives import serialization
        from cryptography.hazmat.primitives.asymmetric import rsa

        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        pem = key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
        (folder / "cross.pem").write_bytes(pem)
    path = folder / "scenario.toml"
    path.write_text(text)
    return path


# -- the monitor, as `run` runs it ----------------------------------------------------------------------------


def accounts_file(sim: Sim, tmp_path: Path, monitor: str = "", head: str = "", database: str | None = None) -> Path:
    """The simulator's accounts as tmp_path/accounts.toml, on `database` (by default SQLite in tmp_path) and an
    ephemeral web port: `monitor` is added to [monitor] (TOML lines), `head` ([channels], [[rules]], ...) before
    the accounts."""
    path = tmp_path / "accounts.toml"
    write_accounts_file(sim.world, path, sim.url)
    settings = f'database_url = "{database or f"sqlite:///{tmp_path}/m.db"}"\n{monitor}'
    text = path.read_text().replace("[monitor]\n", "[monitor]\n" + settings, 1)
    path.write_text(text.replace("[[accounts]]", f'[web]\nlisten = "127.0.0.1:0"\n{head}[[accounts]]', 1))
    return path


def liquidation_watch(sim: Sim, tmp_path: Path, sink: Sink) -> Path:
    """The accounts file of the liquidation end-to-end tests: every account read each second (one at risk every
    200 ms), judged by LIQUIDATION_RULE, its messages to the sink."""
    head = f'[channels]\nops = ["{sink.url()}"]\n{LIQUIDATION_RULE}'
    return accounts_file(sim, tmp_path, 'poll_interval = "1s"\nrisk_poll_interval = "200ms"\n', head)


@asynccontextmanager
async def running(path: Path, *, read_now: bool = False, timeout: float = 20.0) -> AsyncIterator[Service]:
    """`run` on this accounts file, as the command runs it; entered once the alert state is loaded and every
    account has been read, and stopped (cleanly, within 30 s) on exit. `read_now`: once the alert state is
    loaded, every account is read at once (rather than at its turn in the poll interval), so each of these reads
    is judged as it arrives."""
    service = Service(path, load_config(path, env={}), SystemClock())
    stop = asyncio.Event()
    task = asyncio.create_task(service.run(stop))

    async def reach(condition: Callable[[], bool]) -> None:
        await until(lambda: task.done() or condition(), timeout)
        if task.done():
            task.result()  # it failed: its own error rather than a timeout

    try:
        await reach(lambda: service.engine.ready and service.poller is not None and service.poller.running)
        poller = service.poller
        assert poller is not None
        before = {name: state.polls for name, state in poller.accounts.items()} if read_now else {}
        for name in before:
            poller.read_now(name)
        await reach(lambda: all(s.polls > before.get(name, 0) for name, s in poller.accounts.items()))
        yield service
    finally:
        stop.set()
        await asyncio.wait_for(task, timeout=30)


# -- databases -----------------------------------------------------------------------------------------------

POSTGRES_ENV = "MONITOR_TEST_POSTGRES_URL"


def _postgres_admin_url() -> str | None:
    import os

    return os.environ.get(POSTGRES_ENV)


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest, tmp_path: Any) -> Any:
    """An empty database of each kind: a SQLite file, or a fresh PostgreSQL database dropped afterwards."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path}/monitor.db"
        return
    admin = _postgres_admin_url()
    if not admin:
        pytest.skip(f"PostgreSQL tests need {POSTGRES_ENV} (set by .ci/run), e.g. postgresql://postgres@127.0.0.1/test")
    import uuid

    import psycopg
    from sqlalchemy.engine import make_url

    name = f"bm_test_{uuid.uuid4().hex[:12]}"
    base = make_url(admin)
    conninfo = base.set(drivername="postgresql").render_as_string(hide_password=False)
    with psycopg.connect(conninfo, autocommit=True) as connection:
        connection.execute(f'CREATE DATABASE "{name}"')
    try:
        yield base.set(drivername="postgresql+psycopg", database=name).render_as_string(hide_password=False)
    finally:
        with psycopg.connect(conninfo, autocommit=True) as connection:
            connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def store(db_url: str) -> Any:
    """A store on an empty database of each kind, migrated."""
    migrations.upgrade(db_url)
    s = Store(db_url)
    yield s
    s.close()


# -- notification sinks --------------------------------------------------------------------------------------


@dataclass
class Sink:
    """A local HTTP endpoint that apprise's json:// posts to; records every delivery, can be told to fail."""

    server: TestServer
    received: list[dict[str, Any]]
    status: int = 200

    def url(self, path: str = "hook", credentials: str = "") -> str:
        return f"json://{credentials}127.0.0.1:{self.server.port}/{path}"

    def titles(self, path: str | None = None) -> list[str]:
        return [r["title"] for r in self.received if path is None or r["path"] == f"/{path}"]


@pytest.fixture
async def sink(aiohttp_server: Any) -> Sink:
    from aiohttp import web

    received: list[dict[str, Any]] = []

    async def hook(request: web.Request) -> web.Response:
        if holder.status != 200:
            return web.Response(status=holder.status, text="sink failing on purpose")
        received.append({**(await request.json()), "path": request.path})
        return web.Response(text="ok")

    app = web.Application()
    app.router.add_post("/{path:.*}", hook)
    holder = Sink(await aiohttp_server(app), received)
    return holder


@dataclass
class Mailbox:
    messages: list[Any]
    port: int

    def url(self, to: str = "ops@example.com") -> str:
        return f"mailto://example.com:{self.port}?smtp=127.0.0.1&from=monitor@example.com&to={to}"


@pytest.fixture
def smtp() -> Any:
    """A real SMTP server on loopback (aiosmtpd) that keeps what it receives."""
    from email import message_from_bytes

    from aiohttp.test_utils import unused_port
    from aiosmtpd.controller import Controller

    messages: list[Any] = []

    class Handler:
        async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
            messages.append(message_from_bytes(envelope.content))
            return "250 OK"

    port = unused_port()
    controller = Controller(Handler(), hostname="127.0.0.1", port=port)
    controller.start()
    try:
        yield Mailbox(messages, port)
    finally:
        controller.stop()


@pytest.fixture(autouse=True)
def state_home(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> Any:
    """Alert spools of PostgreSQL databases live under $XDG_STATE_HOME: a test's stay in its own folder (and its
    subprocesses'), never in the home of whoever runs the tests."""
    folder = tmp_path_factory.mktemp("state")
    monkeypatch.setenv("XDG_STATE_HOME", str(folder))
    return folder


async def until(predicate: Callable[[], bool], timeout: float = 20.0) -> None:
    """Wait until the predicate holds (polled every 50 ms); fail the test after `timeout` seconds."""
    import time

    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.05)


# -- processes ----------------------------------------------------------------------------------------------

MONITOR = [sys.executable, "-m", "monitor"]  # the `bitget-monitor` command, in a process of its own


async def cli(*args: str) -> tuple[int, str, str]:
    """`bitget-monitor ARGS` run to its end (within a minute): its exit code, standard output and error."""
    process = await asyncio.create_subprocess_exec(
        *MONITOR, *args, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    out, err = await asyncio.wait_for(process.communicate(), timeout=60)
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


@asynccontextmanager
async def process(*command: str, **options: Any) -> AsyncIterator[asyncio.subprocess.Process]:
    """A process started for the block (asyncio.create_subprocess_exec's options), killed at its end if it is
    still running."""
    started = await asyncio.create_subprocess_exec(*command, **options)
    try:
        yield started
    finally:
        if started.returncode is None:
            started.kill()
            await started.wait()
