"""Processes sharing one database (PostgreSQL) split the accounts among them through leases: what this process
polls, how it joins, and how it hands its accounts over on shutdown."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from enum import StrEnum
from pathlib import Path

from monitor.alerts.engine import AlertEngine
from monitor.clock import Clock
from monitor.config import Config
from monitor.errors import StorageError, reason
from monitor.poller.scheduler import Poller
from monitor.store.repository import Store

log = logging.getLogger(__name__)


class LeaseMode(StrEnum):
    """How a process that can share accounts with others (PostgreSQL) decides what it polls."""

    SINGLE = "single"  # SQLite: this process polls every account, no other may
    STARTING = "starting"  # waiting for its first claim
    ALONE = "alone"  # the database was unreachable at start: every account, as a lone process
    SHARING = "sharing"  # the accounts it holds leases for


class Leases:
    def __init__(
        self, store: Store, node: str, clock: Clock, config: Callable[[], Config], config_path: Path
    ) -> None:  # fmt: skip
        self.store = store
        self.node = node
        self.clock = clock
        self.config = config  # the running configuration (reloads replace it)
        self.config_path = config_path
        self.mode = LeaseMode.STARTING if store.shared else LeaseMode.SINGLE
        self.claimed = asyncio.Event()  # the first lease claim succeeded

    async def share(self, poller: Poller, engine: AlertEngine, storage_ready: asyncio.Event) -> None:
        """With a database several processes can use, split the accounts among them through leases.

        At start this process polls nothing until its first claim (two processes reading one account would
        share its per-account limits), but only while the database answers: one it cannot reach within a
        renewal interval means polling every account of the file, as a lone process would, until a claim
        succeeds; then it joins the lease protocol. When renewals fail later it keeps what it holds,
        preferring a double read to a miss.
        """
        pause = self.config().monitor.lease_ttl.total_seconds() / 3
        poller.set_owned(set())
        self.mode = LeaseMode.STARTING
        while True:
            try:
                await asyncio.wait_for(storage_ready.wait(), pause)
                config = self.config()
                names = [a.name for a in config.accounts]
                owned = await asyncio.to_thread(self.store.claim, self.node, names, self.clock.now(),
                                                config.monitor.lease_ttl)  # fmt: skip
                await engine.adopt(owned)  # before polling them: their alert state first
                if self.mode is not LeaseMode.SHARING:
                    log.info("joined the lease protocol: this process shares the accounts through %s",
                             config.monitor.database_display)  # fmt: skip
                self.mode = LeaseMode.SHARING
                poller.set_owned(owned)
                self.claimed.set()
            except (StorageError, TimeoutError) as exc:
                why = reason(exc) if isinstance(exc, StorageError) else "database not ready"
                log.warning("cannot claim account leases: %s", why)
                if self.mode is LeaseMode.STARTING:
                    log.error("database %s unreachable: polling every account of %s as a lone process until it "
                              "answers, then sharing them through leases", self.config().monitor.database_display,
                              self.config_path)  # fmt: skip
                    self.mode = LeaseMode.ALONE
                    poller.set_owned(None)
                if isinstance(exc, TimeoutError):
                    continue  # the wait for storage was the pause
            await asyncio.sleep(pause)

    async def release(self) -> None:
        """Hand the accounts over now rather than when the leases expire."""
        try:
            await asyncio.to_thread(self.store.release, self.node, self.clock.now())
        except StorageError as exc:
            log.warning("leases not released (they expire by themselves): %s", exc)
