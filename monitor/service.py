"""The monitor as a process: storage, the write buffer, the poller, maintenance, reloads (monitor.reloading),
leases (monitor.leases) and shutdown."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
from aiohttp import web

from monitor.alerts.engine import AlertEngine
from monitor.alerts.node import node_name
from monitor.alerts.sender import Sender
from monitor.alerts.spool import Spool, spool_path
from monitor.clock import Clock
from monitor.config import Config
from monitor.domain import PollOutcome
from monitor.errors import ConfigError, StorageError
from monitor.exchange.bitget.codes import metric_label
from monitor.leases import LeaseMode, Leases
from monitor.live import LiveJudge
from monitor.market.watch import MarketWatch
from monitor.numbers import counted
from monitor.once import CONNECTIONS, OnceCycle
from monitor.poller.scheduler import Poller
from monitor.poller.state import Reading
from monitor.readmodel import ServiceReader
from monitor.reloading import Reloader
from monitor.reports.scheduler import ReportScheduler
from monitor.risk.odds import MarkHistory
from monitor.rules.view import AccountView
from monitor.runtime import tune_gc
from monitor.store import migrations
from monitor.store.repository import Store
from monitor.store.writer import SnapshotWriter
from monitor.tasks import Tasks
from monitor.views import AccountViews
from web.app import create_app
from web.site import GuardedSite, make_runner

log = logging.getLogger(__name__)

MAINTENANCE_INTERVAL = 600.0  # seconds between rollup/prune passes
MIGRATION_RETRY = 10.0  # seconds between attempts while the database cannot be migrated
SHUTDOWN_FLUSH = 5.0  # seconds the writer gets to flush on shutdown
SUMMARY_INTERVAL = 300.0


class Service(OnceCycle):
    def __init__(self, config_path: Path, config: Config, clock: Clock, *, migrate: bool = True) -> None:
        self.config_path = config_path
        self.config = config
        self.clock = clock
        self.migrate = migrate
        url = config.monitor.database_url.reveal()
        self.store = Store(url, snapshot_interval=config.storage.snapshot_interval)
        self.writer = SnapshotWriter(self.store, limit=config.storage.write_buffer)
        self.session: aiohttp.ClientSession | None = None
        self.poller: Poller | None = None
        # Tasks that read Bitget or feed polling stop first on close; the rest (writer, alerts, sender, storage
        # upkeep) after the results are flushed. Each set forgets a task once it is done.
        self._polling = Tasks()
        self._background = Tasks()
        self._writing = False  # the writer runs (storage is ready): close flushes it
        self._sharing = False  # this process takes part in the lease protocol: close releases its leases
        self.storage_ready = asyncio.Event()
        self._alerting = False  # `run` judges after every poll (its hooks); `once` judges after its cycle
        self.requests = 0  # sent to Bitget since start (for metrics)
        self.poll_errors: Counter[str] = Counter()
        self.web_url: str | None = None  # failed polls by Bitget code (or error class), since start
        self.node = node_name()
        self.sender = Sender(config, self.store, clock, self.node)
        self.spool = Spool(spool_path(url, config.monitor.state_dir))
        self.engine = AlertEngine(config, self.store, clock, on_queued=self.sender.wake, memory=self.sender.memory,
                                  spool=self.spool)  # fmt: skip
        self.reports = ReportScheduler(lambda: self.config, self.store, clock, self.node, self.sender.wake)
        self.mark_history = MarkHistory()  # recent marks per symbol, from reads and the feed: the odds of liquidation
        self.views = AccountViews(lambda: self.config.monitor, self.engine.last_success, self.mark_history)
        self.market: MarketWatch | None = None  # the mark feed and the live judging: with `run` only
        self.live: LiveJudge | None = None
        self.leases = Leases(self.store, self.node, clock, lambda: self.config, config_path)
        self.reloader = Reloader(config_path, self._apply, clock)

    @contextlib.asynccontextmanager
    async def started(self) -> AsyncIterator[Poller]:
        """Storage ready (or being made ready), the writer running, a poller built; all closed on exit."""
        # The budgets throttle; the connection pool must not (requests queued for a connection after their
        # budget turn would reach Bitget in a burst). Slow answers hold connections, hence the headroom.
        self.session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=CONNECTIONS))
        self.poller = Poller(self.config, self.session, self.clock, sink=self._polled)
        tune_gc()
        self._polling.spawn(self._prepare_storage(), "storage")
        try:
            yield self.poller
        finally:
            await self.close()

    def _polled(self, reading: Reading, outcome: PollOutcome) -> None:
        """Each poll's result: stored (through the writer), counted, and judged at once (the fastest path to an
        alert; `once` judges after its cycle instead)."""
        self.writer.submit(outcome)
        self.requests += outcome.requests
        if outcome.error_code is not None:  # Bitget's known codes and our error classes: a bounded set
            self.poll_errors[metric_label(outcome.error_code)] += 1
        if self.live is not None:
            self.live.polled(reading)
        if self._alerting:  # a read that changed nothing judging looks at is not judged again
            now = self.clock.now()
            self.engine.evaluate([self.views.of(reading, now)], now, changed_only=True)

    async def _run_alerts(self, poller: Poller) -> None:
        """The alert engine and the outbox sender, once the schema is in place (and, when processes share the
        accounts, once this one holds its share: one that polled alone while the database was away must not
        judge accounts another process now holds). With an alert spool the database is not waited for: the
        engine judges from the spool's last known state until it answers."""
        if not self.spool.exists():
            await self.storage_ready.wait()
        if self.store.shared and self.storage_ready.is_set():
            with contextlib.suppress(TimeoutError):  # claims failing with the database up: judge what it polls
                await asyncio.wait_for(self.leases.claimed.wait(), 2 * self.config.monitor.lease_ttl.total_seconds())
        self._background.spawn(self.sender.run(), "sender")
        self._background.spawn(self.reports.run(), "reports")
        self._background.spawn(self._seed_marks(), "mark history")  # the odds of liquidation after a restart
        # Each account's last stored read, shown and judged until it is read (first, when the database is up).
        if self.storage_ready.is_set():
            await self._seed_last_reads()
        else:
            self._background.spawn(self._seed_last_reads(), "last reads")

        def views() -> list[AccountView]:
            now = self.clock.now()
            return [self.views.of(r, now) for r in poller.readings()]

        await self.engine.run(views, portfolio=lambda: poller.owned is None)

    async def _seed_last_reads(self) -> None:
        await self.views.seed_last_reads(self.store)

    async def _seed_marks(self) -> None:
        await self.views.seed_marks(self.store, self.clock.now())

    async def _prepare_storage(self) -> None:
        """Migrate (unless told not to) and register accounts, retrying while the database is away; then
        write. Polling does not wait for any of this: outcomes queue in the writer meanwhile."""
        while True:
            try:
                if self.migrate:
                    await asyncio.to_thread(migrations.upgrade, self.config.monitor.database_url.reveal())
                await asyncio.to_thread(self.store.register_accounts, self.config.accounts, self.clock.now())
                break
            except Exception as exc:  # unreachable, locked, or at a revision this version does not know
                log.error("database %s not ready (%s); polling goes on, results are buffered",
                          self.config.monitor.database_display, str(exc).strip())  # fmt: skip
                await asyncio.sleep(MIGRATION_RETRY)
        self._background.spawn(self.writer.run(), "writer")
        self._writing = True
        self._background.spawn(self._maintain(), "maintenance")
        self.storage_ready.set()

    async def _maintain(self) -> None:
        storage = self.config.storage
        while True:
            try:
                await asyncio.to_thread(self.store.maintain, self.clock.now(), storage.raw_retention,
                                        storage.hourly_retention)  # fmt: skip
            except Exception as exc:  # another process may be maintaining the same database
                log.warning("storage maintenance skipped: %s", str(exc).strip())
            await asyncio.sleep(MAINTENANCE_INTERVAL)

    async def run(self, stop: asyncio.Event) -> None:
        """Poll until `stop` is set; SIGHUP or a change of the file reloads the accounts. The status page is
        served meanwhile."""

        loop = asyncio.get_running_loop()
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(signal.SIGHUP, self._reload_soon)
        runner = make_runner(create_app(ServiceReader(self)))
        await runner.setup()
        host, port = self.config.web.listen
        try:
            await GuardedSite(runner, host, port, limit=lambda: self.config.web.max_connections).start()
        except OSError as exc:
            await runner.cleanup()
            raise ConfigError(f"cannot listen on {host}:{port}: {exc.strerror}", key="web.listen",
                              hint="choose another port, or stop what uses it") from None  # fmt: skip
        self.web_url = f"http://{host if ':' not in host else f'[{host}]'}:{runner.addresses[0][1]}"
        log.info("status page on %s", self.web_url)
        try:
            await self._run(stop, runner)
        finally:
            await runner.cleanup()

    async def _run(self, stop: asyncio.Event, site: web.AppRunner) -> None:
        async with self.started() as poller:
            self._polling.spawn(poller.run(), "poller")
            self.market = MarketWatch(self.config, poller.session, poller.ip_budget, self.clock, self.mark_history)
            poller.spot_prices = self.market.spot_price  # spot coins valued at the feed, not a signed read each
            self.engine.marks = self.market  # a position gone is judged on the feed's latest mark when fresh
            self.live = LiveJudge(self.market, poller, self.engine, self.clock,
                                  lambda: self.config.market.confirm_timeout.total_seconds())  # fmt: skip
            self.live.view_of, self.views.adjust = self.views.of, self.live.snapshot_for
            self._polling.spawn(self.live.run(), "market feed")
            self._polling.spawn(self.reloader.watch(), "config watch")
            self._polling.spawn(self._summarize(poller), "summary")
            self._alerting = True
            self._background.spawn(self._run_alerts(poller), "alerts")
            if self.store.shared:
                self._polling.spawn(self.leases.share(poller, self.engine, self.storage_ready), "leases")
                self._sharing = True
            await stop.wait()
            log.info("stopping")
            await site.cleanup()  # no page is served from a service being closed

    async def _summarize(self, poller: Poller) -> None:
        """One line of totals after the first full interval, then every few minutes."""
        await asyncio.sleep(self.config.monitor.poll_interval.total_seconds() + 5)
        while True:
            await asyncio.sleep(0)
            s = poller.status()
            log.info("%s: %d ok, %d stale, %d failing, %d unreachable, %d at risk; %d results buffered",
                     counted(s.accounts, "account"), s.ok, s.stale, s.failing, s.unreachable,
                     sum(a.at_risk for a in poller.accounts.values()), self.writer.pending)  # fmt: skip
            await asyncio.sleep(SUMMARY_INTERVAL)

    async def close(self) -> None:
        # Stop polling first (in-flight requests are cancelled), then give the writer time to flush.
        await self._polling.cancel()
        if self.poller is not None:
            await self.poller.stop()
        if self._writing and not await self.writer.flush(SHUTDOWN_FLUSH):
            log.error("shutting down with %d results not written (database unreachable)", self.writer.pending)
        if self._alerting and self.engine.ready:
            with contextlib.suppress(TimeoutError):  # a position that just disappeared: its verdict goes out too
                await asyncio.wait_for(self.engine.judged(), SHUTDOWN_FLUSH)
            try:
                written = await asyncio.wait_for(self.engine.flush(), SHUTDOWN_FLUSH)
            except TimeoutError:
                written = False
            if not written:
                log.error("shutting down with alert changes not written: %d messages are sent again after a "
                          "restart if still due", self.engine.waiting)  # fmt: skip
        if self._alerting and not await self.sender.finish(SHUTDOWN_FLUSH):
            log.warning("shutting down during a delivery: its message and those queued behind it are sent after a "
                        "restart")  # fmt: skip
        if self._sharing:
            await self.leases.release()
        await self._background.cancel()
        if self.session is not None:
            await self.session.close()
        await asyncio.to_thread(self.store.close)
        self.spool.close()

    # -- reloading ---------------------------------------------------------------------------------------

    def _reload_soon(self) -> None:
        """SIGHUP: reload in a task of its own (a signal handler must not wait)."""

        async def reload() -> None:
            await self.reload()

        self._polling.spawn(reload(), "reload")

    async def reload(self) -> bool:
        """Load the accounts file again (monitor.reloading); False when it was rejected."""
        return await self.reloader.reload()

    @property
    def lease_mode(self) -> LeaseMode:
        return self.leases.mode

    def _apply(self, config: Config) -> None:
        """A reloaded configuration, handed to every part."""
        if self.poller is not None:
            self.poller.apply(config)
        if self.market is not None:
            self.market.apply(config)
        self.engine.apply(config)
        self.views.keep({a.name for a in config.accounts})
        self.sender.apply(config)
        self.reports.reloaded()
        self.store.snapshot_interval = config.storage.snapshot_interval
        self.config = config
        self._background.spawn(self._register(config), "register")
        log.info("reloaded %s: %s", self.config_path, counted(len(config.accounts), "account"))

    async def _register(self, config: Config) -> None:
        try:
            await asyncio.to_thread(self.store.register_accounts, config.accounts, self.clock.now())
        except StorageError as exc:
            log.warning("accounts not registered in the database yet: %s", str(exc).strip())
