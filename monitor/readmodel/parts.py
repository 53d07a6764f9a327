"""What the read model reads of the running service, as small Protocols (monitor.service.Service has all of
it): the read model needs no service, and the service is not imported here."""

from __future__ import annotations

import asyncio
from collections import Counter
from datetime import datetime
from pathlib import Path
from typing import Protocol

from monitor.alerts.engine import AlertEngine
from monitor.alerts.sender import Sender
from monitor.clock import Clock
from monitor.config.model import Config
from monitor.market.watch import MarketWatch
from monitor.poller.scheduler import Poller
from monitor.poller.state import Reading
from monitor.risk.odds import MarkHistory
from monitor.store.repository import Store
from monitor.store.writer import SnapshotWriter


class LastReads(Protocol):
    """The one source of what is known of an account this process has not read yet (monitor.views.AccountViews):
    the database's last good data, which the rules see too."""

    def completed(self, reading: Reading) -> Reading: ...


class Reloads(Protocol):
    """The accounts file's reloads (monitor.reloading.Reloader)."""

    @property
    def path(self) -> Path: ...
    @property
    def loaded_at(self) -> datetime: ...
    @property
    def error(self) -> str | None: ...
    @property
    def failed_since(self) -> datetime | None: ...


class ConfirmingCounts(Protocol):
    """What the confirming reads count since start (monitor.confirming.ConfirmingReads)."""

    @property
    def asked(self) -> int: ...
    @property
    def estimates(self) -> int: ...


class LiveCounts(Protocol):
    """The live judging (monitor.live.LiveJudge)."""

    @property
    def confirming(self) -> ConfirmingCounts: ...


class Parts(Protocol):
    """What the reader reads of the running service (monitor.service.Service has all of it)."""

    @property
    def config(self) -> Config: ...
    @property
    def clock(self) -> Clock: ...
    @property
    def poller(self) -> Poller | None: ...
    @property
    def writer(self) -> SnapshotWriter: ...
    @property
    def engine(self) -> AlertEngine: ...
    @property
    def sender(self) -> Sender: ...
    @property
    def store(self) -> Store: ...
    @property
    def storage_ready(self) -> asyncio.Event: ...
    @property
    def lease_mode(self) -> str: ...
    @property
    def poll_errors(self) -> Counter[str]: ...
    @property
    def requests(self) -> int: ...
    @property
    def market(self) -> MarketWatch | None: ...
    @property
    def mark_history(self) -> MarkHistory: ...
    @property
    def views(self) -> LastReads: ...
    @property
    def reloader(self) -> Reloads: ...
    @property
    def live(self) -> LiveCounts | None: ...
