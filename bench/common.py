"""What the benchmarks share: the simulator in a process of its own, and the process's CPU and memory."""

from __future__ import annotations

import contextlib
import resource
import subprocess
import sys
import tempfile
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

from aiohttp import web


@contextlib.contextmanager
def simulator(accounts: int, *options: str) -> Iterator[Path]:
    """Start `bitget-monitor simulate` in its own process (limits off unless `options` say otherwise) and yield
    the accounts file it wrote; it is stopped on exit."""
    with tempfile.TemporaryDirectory(prefix="bench-") as tmp:
        path = Path(tmp) / "accounts.toml"
        process = subprocess.Popen(
            [sys.executable, "-m", "monitor", "simulate", "--port", "0", "--accounts", str(accounts), "--tick", "0",
             "--write-accounts", str(path), *(options or ("--no-limits",))],
            stdout=subprocess.PIPE, text=True,
        )  # fmt: skip
        try:
            assert process.stdout is not None
            process.stdout.readline()  # "simulator listening on ..." once the file is written
            yield path
        finally:
            process.terminate()
            process.wait(timeout=30)
            if process.stdout is not None:
                process.stdout.close()


@contextlib.asynccontextmanager
async def sink(receive: Callable[[dict[str, Any]], Awaitable[int]]) -> AsyncIterator[str]:
    """A local HTTP endpoint for apprise's json:// posts; yields its URL. `receive` gets each payload and
    returns the HTTP status to answer."""

    async def hook(request: web.Request) -> web.Response:
        return web.Response(status=await receive(await request.json()))

    app = web.Application()
    app.router.add_post("/hook", hook)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    try:
        yield f"json://127.0.0.1:{runner.addresses[0][1]}/hook"
    finally:
        await runner.cleanup()


def configure(path: Path, monitor: str, tables: str = "") -> None:
    """Add settings to the simulator's accounts file: lines for [monitor], and whole tables before the
    accounts."""
    text = path.read_text().replace("[monitor]\n", "[monitor]\n" + monitor, 1)
    path.write_text(text.replace("[[accounts]]", tables + "[[accounts]]", 1))


def current_rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * resource.getpagesize() / 2**20
