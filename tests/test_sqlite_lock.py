"""One monitor process per SQLite database: real processes, one holding the database, others turned away;
the lock dies with its holder, however it dies."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import time
from pathlib import Path

from monitor.simulator.generate import write_accounts_file
from tests.conftest import SimFactory
from tests.launch import MONITOR
from tests.launch import cli as _run


async def _holder(config: Path, lock: Path) -> asyncio.subprocess.Process:
    """`run` on the file, once it holds the database."""
    process = await asyncio.create_subprocess_exec(
        *MONITOR, "run", "-c", str(config), stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL
    )
    deadline = time.monotonic() + 30
    while not (lock.exists() and f"PID {process.pid}" in lock.read_text()):
        assert process.returncode is None, "the holder exited"
        assert time.monotonic() < deadline, "the holder never took the lock"
        await asyncio.sleep(0.1)
    return process


async def test_a_second_run_or_a_once_on_a_held_sqlite_database_exits_2_naming_the_holder(
    make_sim: SimFactory, tmp_path: Path
) -> None:
    sim = await make_sim(accounts=2)
    config = tmp_path / "accounts.toml"
    write_accounts_file(sim.world, config, sim.url)
    database = tmp_path / "m.db"
    text = config.read_text().replace("[monitor]\n", f'[monitor]\ndatabase_url = "sqlite:///{database}"\n', 1)
    config.write_text(text.replace("[[accounts]]", '[web]\nlisten = "127.0.0.1:0"\n[[accounts]]', 1))
    lock = tmp_path / "m.db.lock"
    holder = await _holder(config, lock)
    try:
        for command in ("once", "run"):
            code, _, err = await _run(command, "-c", str(config))
            assert code == 2, err
            line = next(x for x in err.splitlines() if x.startswith("error: "))
            assert f"database sqlite:///{database} is in use by another monitor" in line
            assert f"host {socket.gethostname()}, PID {holder.pid}, since 20" in line
        # read-only commands, and silences (written through the database), still work meanwhile
        code, out, err = await _run("db", "current", "-c", str(config))
        assert code == 0 and "up to date" in out, err
        code, out, err = await _run(
            "silence", "add", "-c", str(config), "--account", "sim-001", "--for", "1h", "--reason", "topping up"
        )
        assert code == 0 and "silence 1 added" in out, err
        code, out, err = await _run("silence", "list", "-c", str(config))
        assert code == 0 and "topping up" in out, err
        # a crashed holder (kill -9: no cleanup at all) frees the database
        os.kill(holder.pid, signal.SIGKILL)
        await asyncio.wait_for(holder.wait(), timeout=10)
        assert lock.exists()  # the file stays; the lock did not
        code, out, err = await _run("once", "-c", str(config))
        assert code == 0, err
        assert "sim-001" in out
    finally:
        if holder.returncode is None:
            holder.kill()
            await holder.wait()


async def test_a_cleanly_stopped_run_frees_the_database_for_the_next(make_sim: SimFactory, tmp_path: Path) -> None:
    sim = await make_sim(accounts=1)
    config = tmp_path / "accounts.toml"
    write_accounts_file(sim.world, config, sim.url)
    text = config.read_text().replace("[monitor]\n", f'[monitor]\ndatabase_url = "sqlite:///{tmp_path}/m.db"\n', 1)
    config.write_text(text.replace("[[accounts]]", '[web]\nlisten = "127.0.0.1:0"\n[[accounts]]', 1))
    holder = await _holder(config, tmp_path / "m.db.lock")
    holder.send_signal(signal.SIGTERM)
    assert await asyncio.wait_for(holder.wait(), timeout=30) == 0
    assert (tmp_path / "m.db.lock").read_text() == ""  # nobody named as holder any more
    code, _, err = await _run("once", "-c", str(config))
    assert code == 0, err
