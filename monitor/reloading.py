"""The accounts file read again, on SIGHUP or when its modification time changes: a valid file replaces the
running configuration (the service applies it to its parts), an invalid one is logged and ignored, and its error
kept (for the page, /readyz and /metrics) until a later reload succeeds."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from datetime import datetime
from pathlib import Path

from monitor.clock import Clock
from monitor.config import Config, load_config
from monitor.errors import ConfigError

log = logging.getLogger(__name__)

CONFIG_WATCH_INTERVAL = 2.0  # seconds between checks of the accounts file's modification time


class Reloader:
    def __init__(self, path: Path, apply: Callable[[Config], None], clock: Clock) -> None:
        self.path = path
        self.apply = apply  # takes a valid configuration
        self.clock = clock
        self.loaded_at: datetime = clock.now()  # when the configuration in use was loaded (at start or reloaded)
        self.error: str | None = None  # why the latest reload was rejected, until one succeeds
        self.failed_since: datetime | None = None  # the first reload rejected since the configuration in use
        self._mtime = self._file_mtime()
        self._lock = asyncio.Lock()  # reloads apply one at a time, in the order they were asked for

    def _file_mtime(self) -> float | None:
        try:
            return self.path.stat().st_mtime
        except OSError:
            return None

    async def watch(self) -> None:
        while True:
            await asyncio.sleep(CONFIG_WATCH_INTERVAL)
            mtime = await asyncio.to_thread(self._file_mtime)  # a hung network disk must not stall the loop
            if mtime is not None and mtime != self._mtime:
                await self.reload()

    async def reload(self) -> bool:
        """Load the accounts file again; a valid one replaces the running configuration, an invalid one is
        logged and ignored (its error kept in `error` until a reload succeeds).

        The file, its secret files and templates are read and its PEM keys parsed in a thread: a slow disk, a
        FIFO or hundreds of RSA keys would otherwise stall polling, and every account would look unreachable
        afterwards."""
        async with self._lock:
            self._mtime = await asyncio.to_thread(self._file_mtime)
            try:
                config = await asyncio.to_thread(load_config, self.path)
            except ConfigError as exc:
                log.error("reload rejected, the running configuration stays: %s", exc)
                self.error = str(exc)  # the file, line and key; a ConfigError never quotes a secret
                self.failed_since = self.failed_since or self.clock.now()
                return False
            self.apply(config)
            self.loaded_at, self.error, self.failed_since = self.clock.now(), None, None
            return True
