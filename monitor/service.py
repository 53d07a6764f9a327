"""The monitor as a process: storage, the write buffer, the poller, maintenance, reloads and shutdown."""

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
from sqlalchemy.exc import SQLAlchemyError

from monitor.alerts.engine import AlertEngine
from monitor.alerts.sender import Sender, node_name
from monitor.clock import Clock
from monitor.config import Config, load_config
from monitor.domain import PollOutcome
from monitor.errors import ConfigError
from monitor.exchange.bitget.codes import CODES
from monitor.poller.scheduler import Poller
from monitor.poller.state import AccountState
from monitor.rules.evaluate import AccountView
from monitor.runtime import tune_gc
from monitor.store import migrations
from monitor.store.repository import Store
from monitor.store.writer import SnapshotWriter

log = logging.getLogger(__name__)

MAINTENANCE_INTERVAL = 600.0  # seconds between rollup/prune passes
MIGRATION_RETRY = 10.0  # seconds between attempts while the database cannot be migrated
CONFIG_WATCH_INTERVAL = 2.0  # seconds between checks of the accounts file's modification time
SHUTDOWN_FLUSH = 5.0  # seconds the writer gets to flush on shutdown
CONNECTIONS = 512
SUMMARY_INTERVAL = 300.0
DATABASE_PATIENCE = 60.0  # seconds without a database before a process that shares accounts polls them all


class Service:
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
        self._tasks: list[asyncio.Task[None]] = []
        self.storage_ready = asyncio.Event()
        self._alerting = False  # `run` evaluates rules and sends alerts; `once` only reads
        self.requests = 0  # sent to Bitget since start (for metrics)
        self.poll_errors: Counter[str] = Counter()
        self.web_url: str | None = None  # failed polls by Bitget code (or error class), since start
        self.node = node_name()
        self.sender = Sender(config, self.store, clock, self.node)
        self.alerts = AlertEngine(config, self.store, clock, on_queued=self.sender.wake, memory=self.sender.memory)
        self._mtime = self._file_mtime()

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[Poller]:
        """Storage ready (or being made ready), the writer running, a poller built; all closed on exit."""
        # The budgets throttle; the connection pool must not (requests queued for a connection after their
        # budget turn would reach Bitget in a burst). Slow answers hold connections, hence the headroom.
        self.session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=CONNECTIONS))
        self.poller = Poller(self.config, self.session, self.clock, hooks=(self._store_outcome, self._judge_outcome))
        tune_gc()
        self._tasks.append(asyncio.create_task(self._prepare_storage(), name="storage"))
        try:
            yield self.poller
        finally:
            await self.close()

    def _store_outcome(self, state: AccountState, outcome: PollOutcome) -> None:
        self.writer.submit(outcome)
        self.requests += outcome.requests
        if outcome.error_code is not None:  # Bitget's known codes and our error classes: a bounded set
            code = outcome.error_code
            self.poll_errors[code if code in CODES or not code.isdigit() else "other"] += 1

    def _judge_outcome(self, state: AccountState, outcome: PollOutcome) -> None:
        """Evaluate the rules for an account right after each of its polls (the fastest path to an alert)."""
        if self._alerting:
            now = self.clock.now()
            cadence = self.poller.cadence if self.poller is not None else None
            self.alerts.evaluate([self.alerts.view(state, now, cadence)], now)

    async def _run_alerts(self, poller: Poller) -> None:
        """The alert engine and the outbox sender, once the schema is in place."""
        await self.storage_ready.wait()
        self._tasks.append(asyncio.create_task(self.sender.run(), name="sender"))

        def views() -> list[AccountView]:
            now = self.clock.now()
            return [self.alerts.view(s, now, poller.cadence) for s in poller.active()]

        await self.alerts.run(views, portfolio=lambda: poller.owned is None)

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
                          self.config.monitor.database_display, str(getattr(exc, "orig", exc)).strip())  # fmt: skip
                await asyncio.sleep(MIGRATION_RETRY)
        self._tasks.append(asyncio.create_task(self.writer.run(), name="writer"))
        self._tasks.append(asyncio.create_task(self._maintain(), name="maintenance"))
        self.storage_ready.set()

    async def _share_accounts(self) -> None:
        """With a database several processes can use, split the accounts among them through leases.

        Until the first claim succeeds this process polls nothing (two processes reading one account would
        share its per-account limits); if the database stays away for a minute (or two TTLs) it polls everything
        rather than nothing. When renewals fail it keeps what it holds, preferring a double read to a miss.
        """
        assert self.poller is not None
        ttl = self.config.monitor.lease_ttl
        self.poller.set_owned(set())  # nothing until a claim: two processes must not read one account at once
        give_up = self.clock.monotonic() + max(2 * ttl.total_seconds(), DATABASE_PATIENCE)
        claimed = False
        while True:
            try:
                await asyncio.wait_for(self.storage_ready.wait(), ttl.total_seconds() / 3)
                names = [a.name for a in self.config.accounts]
                owned = await asyncio.to_thread(self.store.claim, self.node, names, self.clock.now(), ttl)
                await self.alerts.adopt(owned)  # before polling them: their alert state first
                self.poller.set_owned(owned)
                claimed = True
            except (SQLAlchemyError, TimeoutError) as exc:
                log.warning(
                    "cannot claim account leases: %s", str(getattr(exc, "orig", exc)).strip() or "database not ready"
                )
                if not claimed and self.clock.monotonic() > give_up:
                    log.error("no database to share accounts through: polling every account meanwhile")
                    self.poller.set_owned(None)
                    claimed = True
                if isinstance(exc, TimeoutError):
                    continue  # the wait for storage was the pause
            await asyncio.sleep(ttl.total_seconds() / 3)

    async def _maintain(self) -> None:
        storage = self.config.storage
        while True:
            try:
                await asyncio.to_thread(self.store.maintain, self.clock.now(), storage.raw_retention,
                                        storage.hourly_retention)  # fmt: skip
            except Exception as exc:  # another process may be maintaining the same database
                log.warning("storage maintenance skipped: %s", str(getattr(exc, "orig", exc)).strip())
            await asyncio.sleep(MAINTENANCE_INTERVAL)

    async def once(self, storage_timeout: float = 30.0) -> list[PollOutcome]:
        """One cycle over every account, stored before returning (unless the database stays away)."""
        async with self.running() as poller:
            outcomes = await poller.cycle()
            try:
                await asyncio.wait_for(self.storage_ready.wait(), storage_timeout)
            except TimeoutError:
                log.error("database %s unreachable: this cycle was not stored", self.config.monitor.database_display)
            return outcomes

    async def run(self, stop: asyncio.Event) -> None:
        """Poll until `stop` is set; SIGHUP or a change of the file reloads the accounts. The status page is
        served meanwhile."""
        from web.app import create_app
        from web.status import StatusSource

        loop = asyncio.get_running_loop()
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(signal.SIGHUP, self.reload)
        runner = web.AppRunner(create_app(StatusSource(self)), access_log=None)
        await runner.setup()
        host, port = self.config.web.listen
        try:
            await web.TCPSite(runner, host, port).start()
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
        async with self.running() as poller:
            self._tasks.append(asyncio.create_task(poller.run(), name="poller"))
            self._tasks.append(asyncio.create_task(self._watch_config(), name="config watch"))
            self._tasks.append(asyncio.create_task(self._summarize(poller), name="summary"))
            self._alerting = True
            self._tasks.append(asyncio.create_task(self._run_alerts(poller), name="alerts"))
            if self.store.shared:
                self._tasks.append(asyncio.create_task(self._share_accounts(), name="leases"))
            await stop.wait()
            log.info("stopping")
            await site.cleanup()  # no page is served from a service being closed

    async def _summarize(self, poller: Poller) -> None:
        """One line of totals after the first full interval, then every few minutes."""
        await asyncio.sleep(self.config.monitor.poll_interval.total_seconds() + 5)
        while True:
            await asyncio.sleep(0)
            s = poller.status()
            log.info("%d accounts: %d ok, %d stale, %d failing, %d unreachable, %d at risk; %d results buffered",
                     s.accounts, s.ok, s.stale, s.failing, s.unreachable,
                     sum(a.at_risk for a in poller.accounts.values()), self.writer.pending)  # fmt: skip
            await asyncio.sleep(SUMMARY_INTERVAL)

    async def close(self) -> None:
        # Stop polling first (in-flight requests are cancelled), then give the writer time to flush.
        poller_tasks = [
            t for t in self._tasks if t.get_name() in ("poller", "config watch", "storage", "leases", "summary")
        ]
        for task in poller_tasks:
            task.cancel()
        await asyncio.gather(*poller_tasks, return_exceptions=True)
        if self.poller is not None:
            await self.poller.stop()
        if any(t.get_name() == "writer" for t in self._tasks) and not await self.writer.flush(SHUTDOWN_FLUSH):
            log.error("shutting down with %d results not written (database unreachable)", self.writer.pending)
        if self._alerting and not await self.sender.drain(SHUTDOWN_FLUSH):
            log.warning("shutting down during a delivery: its message is sent again after a restart")
        if self._alerting and self.alerts.ready:
            try:
                written = await asyncio.wait_for(self.alerts.flush(), SHUTDOWN_FLUSH)
            except TimeoutError:
                written = False
            if not written:
                log.error("shutting down with alert changes not written: %d messages are sent again after a "
                          "restart if still due", self.alerts.waiting)  # fmt: skip
        if any(t.get_name() == "leases" for t in poller_tasks):
            try:  # hand the accounts over now rather than when the leases expire
                await asyncio.to_thread(self.store.release, self.node, self.clock.now())
            except SQLAlchemyError as exc:
                log.warning("leases not released (they expire by themselves): %s", exc)
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks.clear()
        if self.session is not None:
            await self.session.close()
        await asyncio.to_thread(self.store.close)

    # -- reloading ---------------------------------------------------------------------------------------

    def _file_mtime(self) -> float | None:
        try:
            return self.config_path.stat().st_mtime
        except OSError:
            return None

    async def _watch_config(self) -> None:
        while True:
            await asyncio.sleep(CONFIG_WATCH_INTERVAL)
            mtime = self._file_mtime()
            if mtime is not None and mtime != self._mtime:
                self.reload()

    def reload(self) -> bool:
        """Load the accounts file again; a valid one replaces the running configuration, an invalid one is
        logged and ignored."""
        self._mtime = self._file_mtime()
        try:
            config = load_config(self.config_path)
        except ConfigError as exc:
            log.error("reload rejected, the running configuration stays: %s", exc)
            return False
        if self.poller is not None:
            self.poller.apply(config)
        self.alerts.apply(config)
        self.sender.apply(config)
        self.store.snapshot_interval = config.storage.snapshot_interval
        self.config = config
        self._tasks.append(asyncio.get_running_loop().create_task(self._register(config), name="register"))
        log.info("reloaded %s: %d accounts", self.config_path, len(config.accounts))
        return True

    async def _register(self, config: Config) -> None:
        try:
            await asyncio.to_thread(self.store.register_accounts, config.accounts, self.clock.now())
        except SQLAlchemyError as exc:
            log.warning("accounts not registered in the database yet: %s", str(getattr(exc, "orig", exc)).strip())
