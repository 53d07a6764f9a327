"""The outbox sender: claims due messages, delivers them through apprise in worker threads, records each
URL's result, retries failures with backoff, and turns messages held over quiet hours into one summary.

Messages come from the outbox table, or from the outbox in memory while the database refuses writes (see
monitor.alerts.outbox); both are delivered the same way. A channel has one delivery under way at a time, its
oldest due message: a message is marked sent only after apprise reports success, so a crash in between repeats
at most one message per channel; a message never leaves the outbox unsent. A message waiting to be retried
holds back the later ones of its channel about the same account (they arrive in order), not the others; other
channels never wait (a dead channel does not hold back the rest). Within a channel the table's messages go
before memory's (they are older), unless the database cannot be read.

Claims carry the claiming process (monitor.alerts.node): a process that finds claims of a dead process of its host
(its own previous life after a crash, say) releases them at once instead of waiting for them to lapse.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import random
from collections import defaultdict
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta

from monitor.alerts.compose import held_summary
from monitor.alerts.delivery import deliver
from monitor.alerts.model import HeldItem, OutboxMessage, Queued, Rendered
from monitor.alerts.node import dead
from monitor.alerts.outbox import MemoryOutbox
from monitor.alerts.ports import AlertStorage
from monitor.clock import Clock, wait_for_event
from monitor.config.model import Config
from monitor.errors import DataRefused, StorageError

log = logging.getLogger(__name__)

IDLE = 1.0  # seconds between looks at the outbox when nobody wakes the sender
CLAIM = timedelta(minutes=2)  # a claim lapses after this (a sender that died mid-delivery)
BACKOFF_BASE, BACKOFF_CAP = 5.0, 600.0  # seconds: 5, 10, 20, ... up to 10 minutes between attempts
UNKNOWN_CHANNEL_RETRY = timedelta(hours=1)
RECORD_RETRY_MIN, RECORD_RETRY_MAX = 1.0, 30.0  # seconds between tries to record a delivery
DELIVERY_THREADS = 8  # apprise blocks; its own pool keeps slow endpoints away from the database threads
DATABASE_RETRY = 5.0  # seconds between looks at the outbox table while it fails
RECLAIM_INTERVAL = 60.0  # seconds between looks for claims of dead processes on this host
UNEXPECTED_RETRY = timedelta(seconds=30)  # a delivery from memory that broke unexpectedly is tried again then


def _name(message: OutboxMessage | Queued) -> str:
    return str(message.id) if message.id is not None else "(in memory)"


class Sender:
    def __init__(self, config: Config, store: AlertStorage, clock: Clock, node: str) -> None:
        self.config = config
        self.store = store
        self.clock = clock
        self.node = node
        self.memory = MemoryOutbox(node)  # the engine hands it what the database refuses
        self._wake = asyncio.Event()
        # At most one delivery at a time per channel: a crash repeats at most one message per channel.
        self._inflight: dict[str, asyncio.Task[None]] = {}
        self._database_ok = True  # the last claim from the table worked
        self._database_retry = 0.0  # monotonic time of the next look at the table while it fails
        self._pool = ThreadPoolExecutor(DELIVERY_THREADS, thread_name_prefix="deliver")
        self._asked: list[asyncio.Future[list[asyncio.Task[None]]]] = []  # passes asked of the run loop
        self._running = False  # the run loop runs: it answers `_asked`
        self.sent = 0
        self.failures = 0

    def apply(self, config: Config) -> None:
        self.config = config

    def wake(self) -> None:
        self._wake.set()

    def close(self) -> None:
        """Let the delivery threads go, for a process that used send_due without run (`once`)."""
        self._pool.shutdown(wait=False)

    async def run(self) -> None:
        reclaimed_at = -RECLAIM_INTERVAL
        self._running = True
        try:
            while True:
                if self.clock.monotonic() - reclaimed_at >= RECLAIM_INTERVAL:
                    with contextlib.suppress(StorageError):  # the database is away: next time
                        await self._reclaim()
                        reclaimed_at = self.clock.monotonic()
                asked, self._asked = self._asked, []
                started: list[asyncio.Task[None]] = []
                try:
                    started = await self._pass()
                finally:  # answered even when the pass breaks (the loop then ends: nothing more starts)
                    for future in asked:
                        if not future.done():
                            future.set_result(started)
                await wait_for_event(self._wake, IDLE)
                self._wake.clear()
        finally:
            self._running = False
            for future in self._asked:  # no pass will come: nothing more starts
                if not future.done():
                    future.set_result([])
            self._asked = []
            self._pool.shutdown(wait=False)

    async def _pass(self) -> list[asyncio.Task[None]]:
        """Release held messages whose quiet hours ended and start what is due; a database that is away
        stops neither the messages in memory nor the next pass."""
        # While the table fails it is looked at every few seconds, not on every wake-up: a locked database
        # makes each look wait out its busy timeout, and messages in memory must not wait with it.
        database = self._database_ok or self.clock.monotonic() >= self._database_retry
        if database:
            try:
                await self._release_held()
            except Exception as exc:
                if self._database_ok:
                    log.error("held messages not processed: %s", str(exc).strip() or type(exc))
        try:
            if self.memory.written_ids():
                await self.memory.settle(self.store)
        except StorageError:
            pass  # the engine's flush and the next pass try again
        try:
            return await self._start_due(database)
        except Exception:  # a bug: keep trying
            log.exception("outbox not processed")
            return []

    async def _reclaim(self) -> None:
        """Release the claims of dead processes of this host (a crashed previous life): their messages go out
        again now rather than when the claims lapse."""
        owners = await asyncio.to_thread(self.store.alerts.claimants, self.clock.now())
        gone = {o for o in owners if o != self.node and dead(o)}
        if gone:
            released = await asyncio.to_thread(self.store.alerts.release_claims, gone)
            log.warning("released %d claims of messages whose sender died (%s); they are sent again", released,
                        ", ".join(sorted(gone)))  # fmt: skip

    async def send_due(self) -> int:
        """One pass, waited for: release held messages whose quiet hours ended, deliver what is due (the head
        of each channel's queue). Returns how many messages were tried."""
        started = await self._pass()
        await asyncio.gather(*started)
        return len(started)

    async def finish(self, timeout: float) -> bool:
        """Shutdown: let deliveries under way finish and, while `run` runs, deliver what is due by then (what the
        engine's last flush queued too: a liquidation judged as the process stops goes out before it exits), one
        message after another per channel. False if deliveries were still under way, or still being started, when
        `timeout` ran out."""
        try:
            async with asyncio.timeout(timeout):
                while True:
                    if self._inflight:
                        await asyncio.wait(list(self._inflight.values()))
                    if not self._running:  # not started (the database away at start), or ended: nothing starts
                        return True
                    asked = asyncio.get_running_loop().create_future()
                    self._asked.append(asked)  # a pass of the run loop's own: never two at once
                    self._wake.set()
                    # A pass already under way when this one was asked may have started a delivery since.
                    if not await asked and not self._inflight:
                        return True
        except TimeoutError:
            return False

    async def _start_due(self, database: bool = True) -> list[asyncio.Task[None]]:
        now = self.clock.now()
        busy = set(self._inflight)
        claimed: list[OutboxMessage | Queued] = []
        if not self._database_ok:  # memory first: it must not wait for a database that may not answer
            claimed += self.memory.claim(now, busy)
        rows: list[OutboxMessage] = []
        due: set[str] = set()
        try:
            if database:
                rows, due = await asyncio.to_thread(self.store.alerts.claim, self.node, now, CLAIM,
                                                    busy=busy | {m.channel for m in claimed},
                                                    skip=self.memory.written_ids())  # fmt: skip
                if not self._database_ok:
                    log.info("outbox table readable again")
                self._database_ok = True
        except StorageError as exc:
            if self._database_ok:
                log.error("outbox table not readable (%s); messages in memory go out meanwhile", exc)
            self._database_ok = False
            self._database_retry = self.clock.monotonic() + DATABASE_RETRY
        claimed += rows
        # A channel's older messages in the table go first.
        claimed += self.memory.claim(now, busy | due | {m.channel for m in claimed})
        started = []
        for message in claimed:
            task = asyncio.create_task(self._deliver(message), name=f"deliver {message.id}")
            self._inflight[message.channel] = task
            task.add_done_callback(functools.partial(self._done, message.channel))
            started.append(task)
        return started

    def _done(self, channel: str, _task: asyncio.Task[None]) -> None:
        self._inflight.pop(channel, None)
        self.wake()  # the channel's next message may be waiting

    async def _deliver(self, message: OutboxMessage | Queued) -> None:
        try:
            await self._attempt(message)
        except Exception:  # a row's claim lapses and it is tried again; memory's is released
            log.exception("message %s to %s: delivery failed unexpectedly", _name(message), message.channel)
            if isinstance(message, Queued) and self.memory.inflight(message):
                self.memory.release(message, self.clock.now() + UNEXPECTED_RETRY)

    async def _attempt(self, message: OutboxMessage | Queued) -> None:
        channel = self.config.channels.get(message.channel)
        if channel is None:
            log.error("message %s: channel %r is not configured any more; kept in the outbox", _name(message),
                      message.channel)  # fmt: skip
            retry = self.clock.now() + UNKNOWN_CHANNEL_RETRY
            await self._outcome(message, list(message.delivered), error="channel not configured", retry_at=retry)
            return
        rendered = Rendered(message.title, message.body, message.body_long)
        loop = asyncio.get_running_loop()
        results = await loop.run_in_executor(self._pool, deliver, channel, rendered, message.severity,
                                             message.delivered)  # fmt: skip
        done = [*message.delivered, *(r.fingerprint for r in results if r.ok)]
        failed = [r for r in results if not r.ok]
        if not failed:
            await self._outcome(message, done)
            self.sent += 1
            return
        self.failures += 1
        error = "; ".join(f"{r.shown}: {r.error}" for r in failed)
        delay = min(BACKOFF_CAP, BACKOFF_BASE * 2**message.attempts) * random.uniform(0.8, 1.2)
        log.warning("message %s to %s failed (attempt %d, next in %.0f s): %s", _name(message), message.channel,
                    message.attempts + 1, delay, error)  # fmt: skip
        await self._outcome(message, done, error=error, retry_at=self.clock.now() + timedelta(seconds=delay))

    async def _outcome(
        self, message: OutboxMessage | Queued, done: list[str], *, error: str | None = None,
        retry_at: datetime | None = None,
    ) -> None:  # fmt: skip
        """Keep what a delivery achieved where the message lives: its row, or memory (written with it; a
        message already written has its row updated now, or by the next flush or pass)."""
        now = self.clock.now()
        if isinstance(message, Queued):
            self.memory.attempted(message, done, None if error else now, error, retry_at)
            if message.id is not None:
                with contextlib.suppress(StorageError):
                    await self.memory.settle(self.store)
            return
        if error is None:
            write = functools.partial(self.store.alerts.delivered, message.id, now, done)
        else:
            assert retry_at is not None
            write = functools.partial(self.store.alerts.failed, message.id, error, retry_at, done)
        await self._record(message, write)

    async def _record(self, message: OutboxMessage, write: Callable[[], None]) -> None:
        """Record what apprise reported, waiting out a database that is away: the message is delivered (to
        some URLs at least), and forgetting that would send it again. The lane stays busy meanwhile, so
        nothing else goes to this channel about this account out of order."""
        pause = RECORD_RETRY_MIN
        while True:
            try:
                await asyncio.to_thread(write)
                return
            except StorageError as exc:
                if isinstance(exc, DataRefused):
                    raise
                log.warning("message %d to %s: delivery not recorded yet, the database is away (%s); "
                            "trying again in %.0f s", message.id, message.channel, exc, pause)  # fmt: skip
                await asyncio.sleep(pause)
                pause = min(RECORD_RETRY_MAX, pause * 2)

    async def _release_held(self) -> None:
        now = self.clock.now()
        held = await asyncio.to_thread(self.store.alerts.held_due, now)
        by_channel: dict[str, list[HeldItem]] = defaultdict(list)
        for item in held:
            by_channel[item.channel].append(item)
        for name, items in by_channel.items():
            try:
                await self._summarize(name, items)
            except Exception:  # one channel's summary must not stop the outbox
                log.exception("quiet-hours summary for %s failed; tried again on the next pass", name)

    async def _summarize(self, name: str, items: list[HeldItem]) -> None:
        summary = held_summary(self.config, name, items)
        ids = sorted({i.notification_id for i in items})
        if await asyncio.to_thread(self.store.alerts.release_held, ids, summary, self.clock.now()):
            log.info("quiet hours over for %s: %d held messages, %d alerts still true", name, len(ids),
                     len(summary.items) if summary else 0)  # fmt: skip
