"""The outbox sender: claims due messages, delivers them through apprise in worker threads, records each
URL's result, retries failures with backoff, and turns messages held over quiet hours into one summary.

A message is marked sent only after apprise reports success, so a crash in between repeats it once at worst;
a message never leaves the outbox unsent. What a channel hears about one account arrives in order, one message
at a time; other accounts and other channels do not wait (a dead channel does not hold back the rest).
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
from datetime import timedelta

from sqlalchemy.exc import SQLAlchemyError

from monitor.alerts.compose import Outgoing, kind, window_text
from monitor.alerts.delivery import deliver
from monitor.alerts.engine import messages_for
from monitor.alerts.lifecycle import Reason, State
from monitor.alerts.messages import Item, Rendered
from monitor.clock import Clock
from monitor.config.model import Config
from monitor.store.alerts import HeldItem, OutboxMessage
from monitor.store.errors import is_data_error
from monitor.store.repository import Store

log = logging.getLogger(__name__)

IDLE = 1.0  # seconds between looks at the outbox when nobody wakes the sender
CLAIM = timedelta(minutes=2)  # a claim lapses after this (a sender that died mid-delivery)
BACKOFF_BASE, BACKOFF_CAP = 5.0, 600.0  # seconds: 5, 10, 20, ... up to 10 minutes between attempts
UNKNOWN_CHANNEL_RETRY = timedelta(hours=1)
RECORD_RETRY_MIN, RECORD_RETRY_MAX = 1.0, 30.0  # seconds between tries to record a delivery
DELIVERY_THREADS = 8  # apprise blocks; its own pool keeps slow endpoints away from the database threads


class Sender:
    def __init__(self, config: Config, store: Store, clock: Clock, node: str) -> None:
        self.config = config
        self.store = store
        self.clock = clock
        self.node = node
        self._wake = asyncio.Event()
        # At most one delivery at a time per channel and account: their messages arrive in order.
        self._inflight: dict[tuple[str, str | None], asyncio.Task[None]] = {}
        self._pool = ThreadPoolExecutor(DELIVERY_THREADS, thread_name_prefix="deliver")
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
        try:
            while True:
                try:
                    await self._release_held()
                    await self._start_due()
                except Exception as exc:  # the database is away, or a bug: keep trying
                    log.error("outbox not processed: %s", str(getattr(exc, "orig", exc)).strip() or type(exc))
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), IDLE)
                self._wake.clear()
        finally:
            self._pool.shutdown(wait=False)

    async def send_due(self) -> int:
        """One pass, waited for: release held messages whose quiet hours ended, deliver what is due (the head
        of each channel's queue). Returns how many messages were tried."""
        await self._release_held()
        started = await self._start_due()
        await asyncio.gather(*started)
        return len(started)

    async def drain(self, timeout: float) -> bool:
        """Let deliveries under way finish (shutdown): True if they all did in time."""
        running = list(self._inflight.values())
        if not running:
            return True
        _, pending = await asyncio.wait(running, timeout=timeout)
        return not pending

    async def _start_due(self) -> list[asyncio.Task[None]]:
        claimed = await asyncio.to_thread(self.store.alerts.claim, self.node, self.clock.now(), CLAIM,
                                          busy=set(self._inflight))  # fmt: skip
        started = []
        for message in claimed:
            task = asyncio.create_task(self._deliver(message), name=f"deliver {message.id}")
            lane = (message.channel, message.account)
            self._inflight[lane] = task
            task.add_done_callback(functools.partial(self._done, lane))
            started.append(task)
        return started

    def _done(self, lane: tuple[str, str | None], _task: asyncio.Task[None]) -> None:
        self._inflight.pop(lane, None)
        self.wake()  # the lane's next message may be waiting

    async def _deliver(self, message: OutboxMessage) -> None:
        try:
            await self._attempt(message)
        except Exception:  # the claim lapses and the message is tried again
            log.exception("message %d to %s: delivery failed unexpectedly", message.id, message.channel)

    async def _attempt(self, message: OutboxMessage) -> None:
        channel = self.config.channels.get(message.channel)
        if channel is None:
            log.error("message %d: channel %r is not configured any more; kept in the outbox", message.id,
                      message.channel)  # fmt: skip
            await asyncio.to_thread(self.store.alerts.failed, message.id, "channel not configured",
                                    self.clock.now() + UNKNOWN_CHANNEL_RETRY, message.delivered)  # fmt: skip
            return
        rendered = Rendered(message.title, message.body, message.body_long)
        loop = asyncio.get_running_loop()
        results = await loop.run_in_executor(self._pool, deliver, channel, rendered, message.severity,
                                             message.delivered)  # fmt: skip
        done = [*message.delivered, *(r.fingerprint for r in results if r.ok)]
        failed = [r for r in results if not r.ok]
        now = self.clock.now()
        if not failed:
            await self._record(message, functools.partial(self.store.alerts.delivered, message.id, now, done))
            self.sent += 1
            return
        self.failures += 1
        error = "; ".join(f"{r.shown}: {r.error}" for r in failed)
        delay = min(BACKOFF_CAP, BACKOFF_BASE * 2**message.attempts) * random.uniform(0.8, 1.2)
        log.warning("message %d to %s failed (attempt %d, next in %.0f s): %s", message.id, message.channel,
                    message.attempts + 1, delay, error)  # fmt: skip
        await self._record(
            message,
            functools.partial(self.store.alerts.failed, message.id, error, now + timedelta(seconds=delay), done),
        )

    async def _record(self, message: OutboxMessage, write: Callable[[], None]) -> None:
        """Record what apprise reported, waiting out a database that is away: the message is delivered (to
        some URLs at least), and forgetting that would send it again. The lane stays busy meanwhile, so
        nothing else goes to this channel about this account out of order."""
        pause = RECORD_RETRY_MIN
        while True:
            try:
                await asyncio.to_thread(write)
                return
            except SQLAlchemyError as exc:
                if is_data_error(exc):
                    raise
                log.warning("message %d to %s: delivery not recorded yet, the database is away (%s); "
                            "trying again in %.0f s", message.id, message.channel,
                            str(getattr(exc, "orig", exc)).strip(), pause)  # fmt: skip
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
        relevant = {i.alert.key: i.alert for i in items if i.alert.state is i.announced}  # still true
        summary = None
        if relevant:
            rules = {r.name: r for r in self.config.rules}
            summary_items = [
                Item(a, Reason.RESOLVED if a.state is State.RESOLVED else Reason.FIRING,
                     str(rules[a.rule].type) if a.rule in rules else a.rule)
                for a in relevant.values()
            ]  # fmt: skip
            channel = self.config.channels.get(name)
            window = window_text(channel) if channel else "quiet hours"
            rendered = messages_for(self.config).summary(window, summary_items)
            summary = Outgoing(name, None, kind(summary_items), rendered, tuple(summary_items))
        ids = sorted({i.notification_id for i in items})
        if await asyncio.to_thread(self.store.alerts.release_held, ids, summary, self.clock.now()):
            log.info("quiet hours over for %s: %d held messages, %d alerts still true", name, len(ids),
                     len(relevant))  # fmt: skip
