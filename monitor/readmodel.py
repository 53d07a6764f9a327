"""The read model the service builds for the web (web.status.StatusReader): the poller's live state as data, the
alert engine's alerts, health and counters, and the database for history, the outbox and silences."""

from __future__ import annotations

import asyncio
import dataclasses
from collections import Counter
from datetime import timedelta
from typing import Protocol

from monitor.alerts.engine import AlertEngine
from monitor.alerts.model import Alert, OutboxMessage, Silence, State, alert_order
from monitor.alerts.sender import Sender
from monitor.alerts.silences import silenced
from monitor.clock import Clock
from monitor.config.model import Config, WebSettings
from monitor.market.watch import MarketWatch
from monitor.poller.scheduler import Poller
from monitor.poller.state import Reading
from monitor.rules.evaluate import position_subject, safety_line
from monitor.rules.model import RuleType
from monitor.store.repository import Store
from monitor.store.views import EquitySample
from monitor.store.writer import SnapshotWriter
from web.status import AccountRow, Counters, Health, row

DATABASE_CHECK = 5.0  # seconds a /readyz database check may take


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


class ServiceReader:
    def __init__(self, service: Parts) -> None:
        self._service = service

    @property
    def clock(self) -> Clock:
        return self._service.clock

    def web_settings(self) -> WebSettings:
        return self._service.config.web

    def _readings(self) -> list[Reading]:
        poller = self._service.poller
        return poller.readings() if poller is not None else []

    def _live(self, reading: Reading) -> Reading:
        """The account with its positions at the feed's latest marks (as read without fresh ones)."""
        market = self._service.market
        if market is None or reading.snapshot is None:
            return reading
        return dataclasses.replace(reading, snapshot=market.live(reading.snapshot))

    def _row(self, reading: Reading) -> AccountRow:
        now = self.clock.now()
        m = self._service.config.monitor
        stale = reading.stale(now, m.poll_interval, m.stale_grace)
        market = self._service.market
        line = row(self._live(reading), now, stale, self._service.writer.refusals.get(reading.name))
        if market is None:
            return line
        return dataclasses.replace(line, mark_age=market.mark_age(reading.snapshot, now))

    def rows(self) -> list[AccountRow]:
        return [self._row(r) for r in self._readings()]

    def reading(self, name: str) -> Reading | None:
        poller = self._service.poller
        if poller is None or (poller.owned is not None and name not in poller.owned):
            return None
        state = poller.accounts.get(name)
        return self._live(state.reading(poller.cadence)) if state is not None else None

    def account_row(self, name: str) -> AccountRow | None:
        reading = self.reading(name)
        return self._row(reading) if reading is not None else None

    def position_safety(self, name: str) -> dict[str, str]:
        """Per position subject ("USDT-FUTURES BTCUSDT long"), for positions inside a liquidation_distance rule's
        warning level: what gets them back to that level plus `clear`, as the alert messages say it."""
        reading = self.reading(name)
        snapshot = reading.snapshot if reading is not None else None
        if snapshot is None:
            return {}
        config = self._service.config
        tags = next((a.tags for a in config.accounts if a.name == name), ())
        rules = [r for r in config.rules if r.type is RuleType.LIQUIDATION_DISTANCE and r.selects(name, tags)]
        found: dict[str, str] = {}
        for p in snapshot.positions:
            try:
                distance = p.liquidation_distance_pct
            except ArithmeticError:  # absurd figures from Bitget: the page shows them, nothing to suggest
                continue
            for rule in rules:
                line = safety_line(rule, snapshot, p, distance)
                if line is not None:
                    found.setdefault(position_subject(p), line)
        return found

    def alerts(self, account: str | None = None, *, include_resolved: bool = False) -> list[Alert]:
        wanted = (State.FIRING, State.PENDING) + ((State.LIQUIDATED, State.RESOLVED) if include_resolved else ())
        found = [a for a in self._service.engine.current.values()
                 if a.state in wanted and (account is None or a.account == account)]  # fmt: skip
        return sorted(found, key=alert_order)

    def silenced(self, alert: Alert) -> bool:
        return silenced(alert, self._service.engine.silences, self.clock.now())

    def health(self) -> Health:
        s, poller = self._service, self._service.poller
        sharing = None
        if poller is not None and poller.owned is not None:
            sharing = (len(poller.active()), len(poller.accounts))
        return Health(
            database_ready=s.storage_ready.is_set() and s.writer.healthy,
            poller_running=poller is not None and poller.running,
            lease_mode=str(s.lease_mode),
            messages_in_memory=s.sender.memory.waiting,
            behind=poller.status().behind if poller is not None else False,
            sharing=sharing,
            feed=s.market.health() if s.market is not None else (),
        )

    def counters(self) -> Counters:
        s, poller = self._service, self._service.poller
        return Counters(
            poll_errors=dict(s.poll_errors),
            requests=s.requests,
            rate_limited=poller.ip_budget.rate_limited if poller is not None else 0,
            refused_writes=dict(s.writer.refused),
            stalled_seconds=poller.watch.recorded if poller is not None else 0.0,
            memory_dropped=s.sender.memory.dropped,
            sent=s.sender.sent,
            failures=s.sender.failures,
        )

    async def database_ok(self) -> bool:
        try:
            await asyncio.wait_for(asyncio.to_thread(self._service.store.ping), DATABASE_CHECK)
        except Exception:
            return False
        return True

    async def outbox(self, account: str | None = None, limit: int = 50, failing: bool = False) -> list[OutboxMessage]:
        store = self._service.store.alerts
        return await asyncio.to_thread(store.outbox, account=account, limit=limit, failing=failing)

    async def outbox_counts(self) -> dict[str, int]:
        return await asyncio.to_thread(self._service.store.alerts.outbox_counts)

    async def silences(self) -> list[Silence]:
        return await asyncio.to_thread(self._service.store.alerts.silences, self.clock.now())

    async def equity(self, name: str, span: timedelta) -> list[EquitySample]:
        now = self.clock.now()
        hourly = span > timedelta(hours=48)
        return await asyncio.to_thread(self._service.store.equity_series, name, now - span, now, hourly=hourly)
