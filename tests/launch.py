"""Starting the monitor for a test: `run` in the test's own process (running), or the command in a process of its
own (cli, process), on an accounts file for the simulator's accounts (accounts_file)."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from monitor.clock import SystemClock
from monitor.config import load_config
from monitor.service import Service
from monitor.simulator.generate import write_accounts_file
from tests.conftest import Sim, Sink, until
from tests.scenarios import LIQUIDATION_RULE


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
