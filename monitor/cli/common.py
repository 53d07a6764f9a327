"""What the commands share: exit codes, loading the accounts file, running until a signal, holding SQLite."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import sys
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path

from monitor.clock import SystemClock
from monitor.config import Config, load_config
from monitor.errors import ConfigError

EXIT_OK, EXIT_FAILED, EXIT_CONFIG = 0, 1, 2
EXIT_NOT_STORED = 3  # `once`: the cycle or its messages could not be stored


def until_signalled(work: Callable[[asyncio.Event], Awaitable[None]]) -> int:
    """Run `work` until SIGINT or SIGTERM sets its stop event; a ConfigError on the way is reported (exit 2)."""

    async def run() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await work(stop)

    try:
        asyncio.run(run())
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    return EXIT_OK


def load(path: Path, *, credentials: bool = True) -> Config | None:
    """The accounts file, or None having said why not; `credentials=False` for commands that only read the
    database (monitor.config.load_config)."""
    try:
        config = load_config(path, credentials=credentials)
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return None
    for warning in config.warnings:
        logging.getLogger("monitor").warning("%s", warning)
    return config


@contextlib.contextmanager
def holding(config: Config) -> Iterator[bool]:
    """This process's hold on a SQLite database (no other `run` or `once` may poll into it meanwhile). Yields
    False, having said why, when another process holds it."""
    from monitor.store.lock import DatabaseBusy, hold

    try:
        lock = hold(config.monitor.database_url.reveal(), SystemClock().now(), config.monitor.database_display)
    except DatabaseBusy as exc:
        print(f"error: {exc}", file=sys.stderr)
        yield False
        return
    except OSError as exc:  # the folder is missing or read-only: the database itself will say so too
        logging.getLogger("monitor").warning("cannot lock database %s (%s): a second process on it would not be "
                                             "noticed", config.monitor.database_display, exc.strerror)  # fmt: skip
        lock = None
    try:
        yield True
    finally:
        if lock is not None:
            lock.release()
