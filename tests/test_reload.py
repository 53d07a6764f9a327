"""Reloads never stall the event loop: the accounts file and its secrets are read and parsed in a thread, and a
secret file that would block (a FIFO) is refused at once. A rejected reload is shown (page, /readyz, /metrics)
until one succeeds."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import threading
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from monitor.clock import SystemClock
from monitor.config import load_config
from monitor.service import Service
from monitor.simulator.generate import write_accounts_file
from tests.conftest import SimFactory
from tests.launch import accounts_file, running
from web.metrics import PREFIX

TICK = 0.01  # seconds between the ticks of the loop's heartbeat
TICKS = 50  # heartbeats the loop must beat while a reload waits for its file


def _accounts_file(tmp_path: Path, world: object, url: str) -> tuple[Path, str]:
    path = tmp_path / "accounts.toml"
    write_accounts_file(world, path, url)  # type: ignore[arg-type]
    text = path.read_text().replace("[monitor]\n", f'[monitor]\ndatabase_url = "sqlite:///{tmp_path}/m.db"\n', 1)
    path.write_text(text)
    return path, text


async def _heartbeat(ticks: int, until: asyncio.Task[bool]) -> int:
    """How many of `ticks` heartbeats the loop beat before `until` finished."""
    beaten = 0
    while beaten < ticks and not until.done():
        await asyncio.sleep(TICK)
        beaten += 1
    return beaten


async def test_a_reload_waiting_for_a_slow_file_leaves_the_loop_running(make_sim: SimFactory, tmp_path: Path) -> None:
    sim = await make_sim(accounts=3)
    path, text = _accounts_file(tmp_path, sim.world, sim.url)
    service = Service(path, load_config(path, env={}), SystemClock())
    async with service.started() as poller:
        # The file becomes a FIFO: it gives its text only when the test lets it, a file as slow as we like.
        path.unlink()
        os.mkfifo(path)
        release = threading.Event()
        smaller = "[[accounts]]".join(text.split("[[accounts]]")[:3])  # sim-003 leaves

        def feed() -> None:
            # Bounded: if a reload blocked the loop, the test still ends (and fails) once this gives up waiting.
            release.wait(timeout=20)
            with open(path, "w") as fifo:
                fifo.write(smaller)

        feeder = threading.Thread(target=feed, daemon=True)
        feeder.start()
        reload = asyncio.create_task(service.reload())
        beaten = await _heartbeat(TICKS, reload)
        assert beaten == TICKS and not reload.done(), "the loop stood still while the reload read its file"
        release.set()
        assert await asyncio.wait_for(reload, 30)
        feeder.join(timeout=5)
        assert set(poller.accounts) == {"sim-001", "sim-002"}


async def test_a_reload_with_a_fifo_as_secret_file_is_rejected_at_once(make_sim: SimFactory, tmp_path: Path) -> None:
    sim = await make_sim(accounts=2)
    path, text = _accounts_file(tmp_path, sim.world, sim.url)
    service = Service(path, load_config(path, env={}), SystemClock())
    fifo = tmp_path / "secret.fifo"
    os.mkfifo(fifo)
    async with service.started() as poller:
        extra = '\n[[accounts]]\nname = "piped"\napi_key = "k"\npassphrase = "p"\napi_secret_file = "secret.fifo"\n'
        path.write_text(text + extra)
        reload = asyncio.create_task(service.reload())
        try:
            # Rejected while the loop beats: a reader blocked on the FIFO would never finish by itself.
            beaten = await _heartbeat(10 * TICKS, reload)
            assert reload.done() and beaten < 10 * TICKS, "the reload is still waiting for the FIFO"
            assert not reload.result()
        finally:
            with contextlib.suppress(OSError):  # releases a blocked reader, so that a failure ends cleanly
                os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))
        assert set(poller.accounts) == {"sim-001", "sim-002"}  # the running configuration stays


async def test_a_rejected_reload_is_shown_until_a_reload_succeeds(make_sim: SimFactory, tmp_path: Path) -> None:
    sim = await make_sim(accounts=2)
    path = accounts_file(sim, tmp_path)
    text = path.read_text()
    async with running(path, read_now=True) as service:

        async def get(page: str) -> tuple[int, str]:
            async with sim.session.get(f"{service.web_url}{page}") as response:
                return response.status, await response.text()

        async def metrics() -> tuple[float, float]:
            """bitget_monitor_config_reload_failed and _config_last_reload_timestamp_seconds."""
            _, text = await get("/metrics")
            found = {s.name: s.value for f in text_string_to_metric_families(text) for s in f.samples}
            return found[f"{PREFIX}config_reload_failed"], found[f"{PREFIX}config_last_reload_timestamp_seconds"]

        loaded = service.reloader.loaded_at.timestamp()
        assert await metrics() == (0, loaded)
        # A level tightened beside a misspelt key: the whole file is rejected, the previous one stays in use.
        path.write_text(text.replace("[monitor]\n", '[monitor]\npoll_intervall = "5s"\n', 1))
        assert not await service.reload()
        status, page = await get("/")
        banner = page.split('id="config-error"', 1)[1].split("</p>", 1)[0]
        # The file, its line (after the simulator's comment and [monitor]) and key, ConfigError's whole message
        assert f"{path}:3: monitor.poll_intervall: unknown key" in banner and f"Reload of {path} rejected" in banner
        assert "The previous configuration is still in use." in banner and " since " in banner
        assert not [a for a in sim.world.accounts.values() if a.passphrase in page or (a.secret and a.secret in page)]
        status, body = await get("/readyz")
        ready = json.loads(body)
        assert status == 200 and ready["ready"] and ready["checks"]["config"] is False  # said, without failing
        assert "poll_intervall" in ready["config_error"]["error"] and ready["config_error"]["file"] == str(path)
        assert await metrics() == (1, loaded)  # still the configuration loaded at start
        path.write_text(text)
        assert await service.reload()
        _, page = await get("/")
        _, body = await get("/readyz")
        assert 'id="config-error"' not in page and json.loads(body)["checks"]["config"] is True
        assert "config_error" not in json.loads(body)
        failed, reloaded = await metrics()
        assert failed == 0 and reloaded > loaded
