"""The read model the service builds for the web (web.status.StatusReader): the poller's live state as data, the
alert engine's alerts, health and counters, and the database for history, the outbox and silences. What it reads
of the service is in parts.py."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import replace
from datetime import datetime, timedelta
from typing import Any

from monitor.alerts.model import Alert, OutboxMessage, Silence, State, alert_order
from monitor.alerts.silences import silenced
from monitor.clock import Clock
from monitor.config.model import WebSettings
from monitor.poller.state import Reading
from monitor.readmodel.parts import Parts
from monitor.rules.evaluate import position_subject, safety_line
from monitor.rules.model import RuleType
from monitor.store.views import EquitySample
from web.chart import portfolio
from web.risk import Odds, levels_for, likeliest_odds, odds_of
from web.status import AccountRow, ConfigReload, Counters, Health, row

log = logging.getLogger(__name__)
DATABASE_CHECK = 5.0  # seconds a /readyz database check may take
PORTFOLIO_CACHE = timedelta(seconds=60)  # how long the overview's portfolio series is reused


class ServiceReader:
    def __init__(self, service: Parts) -> None:
        self._service = service
        self._portfolio: dict[timedelta, tuple[datetime, list[EquitySample]]] = {}

    @property
    def clock(self) -> Clock:
        return self._service.clock

    def web_settings(self) -> WebSettings:
        return self._service.config.web

    def _readings(self) -> list[Reading]:
        poller = self._service.poller
        views = self._service.views
        return [views.completed(r) for r in poller.readings()] if poller is not None else []

    def _live(self, reading: Reading) -> Reading:
        """The account with its positions at the feed's latest marks (as read without fresh ones)."""
        market = self._service.market
        if market is None or reading.snapshot is None:
            return reading
        return replace(reading, snapshot=market.live(reading.snapshot))

    def _stale_feeds(self) -> frozenset[str]:
        """The product types whose mark feed is stale (their positions are at the account reads' marks)."""
        market = self._service.market
        return frozenset(f.name for f in market.health() if f.stale) if market is not None else frozenset()

    def _row(
        self,
        reading: Reading,
        alerts: list[Alert] | None = None,
        stale_feeds: frozenset[str] | None = None,
    ) -> AccountRow:
        now = self.clock.now()
        config = self._service.config
        stale = reading.stale(now, config.monitor.poll_interval, config.monitor.stale_grace)
        if alerts is None:
            alerts = [a for a in self._service.engine.current.values() if a.account == reading.name]
        levels = levels_for(config.rules, reading.name, reading.tags)
        live = self._live(reading)
        line = row(live, now, stale, self._service.writer.refusals.get(reading.name), alerts, levels)
        live_values: dict[str, Any] = {}  # set in one replace: a row is built for every account on every page
        if line.worst_distance is not None:
            live_values["odds"] = likeliest_odds(live.snapshot, self._service.mark_history, now)
        market = self._service.market
        if market is not None:
            stale_feeds = self._stale_feeds() if stale_feeds is None else stale_feeds
            held = {p.product_type for p in reading.snapshot.positions} if reading.snapshot is not None else set()
            live_values.update(mark_age=market.mark_age(reading.snapshot, now), feed_stale=bool(held & stale_feeds))
        return replace(line, **live_values) if live_values else line

    def rows(self) -> list[AccountRow]:
        by_account: dict[str | None, list[Alert]] = {}
        for a in self._service.engine.current.values():
            if a.state in (State.FIRING, State.LIQUIDATED):
                by_account.setdefault(a.account, []).append(a)
        stale = self._stale_feeds()
        return [self._row(r, by_account.get(r.name, []), stale) for r in self._readings()]

    def reading(self, name: str) -> Reading | None:
        poller = self._service.poller
        if poller is None or (poller.owned is not None and name not in poller.owned):
            return None
        state = poller.accounts.get(name)
        return self._live(self._service.views.completed(state.reading(poller.cadence))) if state is not None else None

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

    def position_odds(self, name: str) -> dict[str, Odds]:
        """Per position subject, the odds of liquidation within 1 h and 24 h at the positions' live marks."""
        reading = self.reading(name)
        if reading is None or reading.snapshot is None:
            return {}
        now, history = self.clock.now(), self._service.mark_history
        return {position_subject(p): odds_of(p, history, now) for p in reading.snapshot.positions}

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
            config=self._config_reload(),
        )

    def _config_reload(self) -> ConfigReload:
        reloader = self._service.reloader
        return ConfigReload(str(reloader.path), reloader.loaded_at, reloader.error, reloader.failed_since)

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
            confirming_reads=s.live.confirming.asked if s.live is not None else 0,
            estimated_alerts=s.live.confirming.estimates if s.live is not None else 0,
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

    # -- actions from the page: written to the database as the CLI's are -------------------------------------

    async def add_silence(self, account: str, rule: str | None, symbol: str | None, length: timedelta,
                          reason: str) -> int:  # fmt: skip
        now = self.clock.now()
        store = self._service.store.alerts
        id_ = await asyncio.to_thread(store.add_silence, account, rule, symbol, now, now + length, reason)
        await self._refresh_silences()
        return id_

    async def remove_silence(self, id_: int) -> bool:
        removed = await asyncio.to_thread(self._service.store.alerts.remove_silence, id_, self.clock.now())
        await self._refresh_silences()
        return removed

    async def _refresh_silences(self) -> None:
        """The engine rereads silences on its tick; the page shows the change at once."""
        engine = self._service.engine
        engine.silences = await asyncio.to_thread(self._service.store.alerts.silences, self.clock.now())

    async def acknowledge(self, key: str, who: str) -> Alert | None:
        """Acknowledge a firing alert at its current severity: no repeats until it changes severity or
        resolves. None when no such alert fires."""
        engine = self._service.engine
        alert = engine.current.get(key)
        if alert is None or alert.state is not State.FIRING:
            return None
        acked = replace(alert, acknowledged_at=self.clock.now(), acknowledged_by=who[:200],
                        acknowledged_severity=alert.severity)  # fmt: skip
        await engine.flush()  # the alert's row first (an alert judged moments ago may still wait in the journal)
        if not await asyncio.to_thread(self._service.store.alerts.acknowledge, acked):
            log.warning("%s: acknowledged, but its row is not in the database yet", key)
        current = engine.current.get(key)  # the engine may have moved it meanwhile: keep its newer state
        if current is not None and current.state is State.FIRING and current.severity == alert.severity:
            engine.current[key] = replace(current, acknowledged_at=acked.acknowledged_at,
                                          acknowledged_by=acked.acknowledged_by,
                                          acknowledged_severity=acked.acknowledged_severity)  # fmt: skip
        return acked

    async def portfolio_equity(self, span: timedelta) -> list[EquitySample]:
        """The summed equity of the accounts this process polls over `span`, hourly past 48 hours; kept for
        PORTFOLIO_CACHE, as it reads every account's series."""
        now = self.clock.now()
        cached = self._portfolio.get(span)
        if cached is not None and now - cached[0] < PORTFOLIO_CACHE:
            return cached[1]
        names = [r.name for r in self._readings()]
        hourly = span > timedelta(hours=48)

        def read() -> list[EquitySample]:
            store = self._service.store
            return portfolio([store.equity_series(n, now - span, now, hourly=hourly) for n in names],
                             timedelta(hours=1) if hourly else timedelta(minutes=5))  # fmt: skip

        series = await asyncio.to_thread(read)
        self._portfolio[span] = (now, series)
        return series

    async def equity(self, name: str, span: timedelta) -> list[EquitySample]:
        now = self.clock.now()
        hourly = span > timedelta(hours=48)
        return await asyncio.to_thread(self._service.store.equity_series, name, now - span, now, hourly=hourly)
