"""`run` started while PostgreSQL is down polls every account of its file, as a lone process would, and joins
the lease protocol once the database answers; the log, /readyz and the page say which mode it is in."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import unused_port
from sqlalchemy.engine import make_url

from monitor.clock import SystemClock
from monitor.config import load_config
from monitor.service import Service
from monitor.simulator.generate import write_accounts_file
from tests.conftest import SimFactory


class Proxy:
    """A TCP forwarder on loopback: until started, its port refuses connections, as a server that is down."""

    def __init__(self, port: int, target: tuple[str, int]) -> None:
        self.port = port
        self.target = target
        self.server: asyncio.Server | None = None
        self.pipes: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", self.port)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection(*self.target)
        for source, sink in ((reader, up_writer), (up_reader, writer)):
            task = asyncio.create_task(self._pipe(source, sink))
            self.pipes.add(task)
            task.add_done_callback(self.pipes.discard)

    @staticmethod
    async def _pipe(source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
        try:
            while data := await source.read(65536):
                sink.write(data)
                await sink.drain()
        except (ConnectionError, OSError):
            pass
        finally:
            sink.close()

    async def close(self) -> None:
        if self.server is not None:
            self.server.close()
        for task in list(self.pipes):
            task.cancel()
        await asyncio.gather(*self.pipes, return_exceptions=True)


async def until(predicate: Callable[[], bool], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.1)


async def test_a_process_that_cannot_reach_postgresql_polls_every_account_until_it_can_share_them(
    make_sim: SimFactory, tmp_path: Path, db_url: str, caplog: Any
) -> None:
    if db_url.startswith("sqlite"):
        pytest.skip("SQLite means one process: there are no leases to fall back from")
    url = make_url(db_url)
    proxy = Proxy(unused_port(), (url.host or "127.0.0.1", url.port or 5432))
    proxied = url.set(host="127.0.0.1", port=proxy.port).render_as_string(hide_password=False)
    sim = await make_sim(accounts=6)
    path = tmp_path / "accounts.toml"
    write_accounts_file(sim.world, path, sim.url)
    monitor = f'database_url = "{proxied}"\npoll_interval = "1s"\nlease_ttl = "1500ms"\n'
    text = path.read_text().replace("[monitor]\n", "[monitor]\n" + monitor, 1)
    path.write_text(text.replace("[[accounts]]", '[web]\nlisten = "127.0.0.1:0"\n[[accounts]]', 1))
    service = Service(path, load_config(path, env={}), SystemClock())
    names = {f"sim-{i:03d}" for i in range(1, 7)}
    stop = asyncio.Event()
    caplog.set_level(logging.INFO)
    task = asyncio.create_task(service.run(stop))
    try:
        async with aiohttp.ClientSession() as session:

            async def readyz() -> dict[str, Any]:
                async with session.get(f"{service.web_url}/readyz") as response:
                    return dict(await response.json())

            def polled() -> set[str]:
                poller = service.poller
                return {s.name for s in poller.active() if s.polls} if poller is not None else set()

            await until(lambda: polled() == names, 30)  # every account, with no database at all
            assert service.lease_mode == "alone" and service.poller is not None and service.poller.owned is None
            assert "polling every account of" in caplog.text
            body = await readyz()
            assert body["mode"] == "alone" and body["checks"]["leases"] is False and body["ready"] is False
            async with session.get(f"{service.web_url}/") as response:
                assert "polls every account of its file" in await response.text()

            await proxy.start()  # the database is back
            await until(lambda: service.lease_mode == "sharing", 60)
            assert service.poller.owned == names  # a lone process's fair share is everything, now by lease
            assert "joined the lease protocol" in caplog.text
            body = await readyz()
            assert body["mode"] == "sharing" and body["checks"]["leases"] is True
            async with session.get(f"{service.web_url}/") as response:
                assert "polls every account of its file" not in await response.text()
    finally:
        stop.set()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(task, timeout=20)
        await proxy.close()
