"""What the benchmarks share: the simulator in a process of its own, a local sink for notifications, a private
PostgreSQL server that can be restarted, and the process's memory."""

from __future__ import annotations

import contextlib
import glob
import os
import re
import resource
import shutil
import socket
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


class PrivatePostgres:
    """A PostgreSQL server of our own (initdb in a temporary folder, on a free loopback port), so that a soak
    can restart it without touching anyone else's database. Run as root, it runs as the `postgres` user."""

    def __init__(self, folder: Path) -> None:
        bins = sorted(
            glob.glob("/usr/lib/postgresql/*/bin"), key=lambda path: [int(n) for n in re.findall(r"\d+", path)]
        )
        found = shutil.which("pg_ctl")
        self.bin = Path(bins[-1]) if bins else Path(found).parent if found else None
        self.data = folder / "data"
        self.folder = folder
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port = probe.getsockname()[1]
        self.url = f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    @property
    def available(self) -> bool:
        return self.bin is not None and (self.bin / "initdb").exists()

    def _run(self, *command: str) -> None:
        assert self.bin is not None
        prefix = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
        subprocess.run([*prefix, str(self.bin / command[0]), *command[1:]], check=True, capture_output=True)

    def init(self) -> None:
        if os.geteuid() == 0:
            shutil.chown(self.folder, "postgres")
        self._run("initdb", "-D", str(self.data), "-A", "trust", "-U", "postgres", "--no-sync")
        self.start()

    def start(self) -> None:
        options = f"-p {self.port} -c listen_addresses=127.0.0.1 -k {self.folder} -c fsync=off"
        self._run("pg_ctl", "-D", str(self.data), "-o", options, "-l", str(self.folder / "server.log"), "-w", "start")

    def stop(self, mode: str = "fast") -> None:
        self._run("pg_ctl", "-D", str(self.data), "-m", mode, "-w", "stop")


@contextlib.contextmanager
def private_postgres() -> Iterator[PrivatePostgres | None]:
    """A running PrivatePostgres, or None where PostgreSQL's server programs are not installed."""
    with tempfile.TemporaryDirectory(prefix="bench-pg-") as tmp:
        server = PrivatePostgres(Path(tmp))
        if not server.available:
            yield None
            return
        server.init()
        try:
            yield server
        finally:
            with contextlib.suppress(subprocess.CalledProcessError):
                server.stop("immediate")


def configure(path: Path, monitor: str, tables: str = "") -> None:
    """Add settings to the simulator's accounts file: lines for [monitor], and whole tables before the
    accounts."""
    text = path.read_text().replace("[monitor]\n", "[monitor]\n" + monitor, 1)
    path.write_text(text.replace("[[accounts]]", tables + "[[accounts]]", 1))


def current_rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * resource.getpagesize() / 2**20
