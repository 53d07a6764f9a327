"""Shared fixtures: a real simulator on loopback, a real aiohttp session, clients for simulated accounts."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestServer

from monitor.clock import SystemClock
from monitor.exchange.bitget.client import BitgetClient, Credentials
from monitor.exchange.bitget.servertime import ServerClock
from monitor.secret import Secret
from monitor.simulator.app import simulator_app
from monitor.simulator.generate import generate_world
from monitor.simulator.market import SimAccount
from monitor.simulator.server import Simulator
from monitor.simulator.world import World, load_scenario
from monitor.store import migrations
from monitor.store.repository import Store


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The tests given an xdist group (the soak, a minute and a half) first: under `pytest -n --dist loadgroup`
    a group's tests keep to one worker, and these start at once rather than being the last ones running."""
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
    """A local HTTP endpoint that apprise's json:// posts to; records every delivery, can be told to fail or to
    answer slowly."""

    server: TestServer
    received: list[dict[str, Any]]
    status: int = 200
    delay: float = 0.0  # seconds before each answer (the delivery is recorded once answered)

    def url(self, path: str = "hook", credentials: str = "") -> str:
        return f"json://{credentials}127.0.0.1:{self.server.port}/{path}"

    def titles(self, path: str | None = None) -> list[str]:
        return [r["title"] for r in self.received if path is None or r["path"] == f"/{path}"]


@pytest.fixture
async def sink(aiohttp_server: Any) -> Sink:
    from aiohttp import web

    received: list[dict[str, Any]] = []

    async def hook(request: web.Request) -> web.Response:
        await asyncio.sleep(holder.delay)
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
