"""The alert changes on their way to the database: alerts, transitions and messages, written in order, one batch
after the other (write-behind; evaluations never wait on the database).

If the database is away the changes stay pending, in order, for the next attempt, and their messages go to the
outbox in memory (monitor.alerts.outbox), to be delivered meanwhile and written with their delivery state. If the
database refuses the data itself, retrying cannot help: the batch is written account by account, and the
refused part is logged and dropped (its alerts forgotten, for the next evaluation to rebuild).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterable
from datetime import datetime

from monitor.alerts.model import Alert, AlertBatch, BatchRejected, Outgoing, Queued, State, Transition
from monitor.alerts.outbox import MemoryOutbox
from monitor.alerts.ports import AlertStorage
from monitor.clock import Clock

log = logging.getLogger(__name__)

RETRY = 5.0  # seconds between attempts while the database is away


class Journal:
    def __init__(
        self, store: AlertStorage, clock: Clock, memory: MemoryOutbox, on_queued: Callable[[], None],
        on_dropped: Callable[[Iterable[Alert]], None],
    ) -> None:  # fmt: skip
        self.store = store
        self.clock = clock
        self.memory = memory  # the sender's, shared
        self.on_queued = on_queued  # wakes the sender once messages are in the outbox (either of them)
        self.on_dropped = on_dropped  # alerts whose changes the database refused
        self.pending = AlertBatch(clock.now())
        self.dirty = asyncio.Event()
        self._flushing = asyncio.Lock()  # batches are written one after the other, in order
        self._failing = False  # the last write failed: messages go to memory before the next attempt
        self.rejected = 0  # batches the database refused (logged; never retried)

    def record(self, alert: Alert, transition: Transition | None) -> None:
        self.pending.alerts[alert.key] = alert
        if transition is None:
            return
        self.pending.transitions.append(transition)
        if transition.to_state is State.LIQUIDATED:
            log.warning("alert %s: %s -> liquidated (%s)", alert.key, transition.from_state, transition.reason)
        elif transition.to_state in (State.FIRING, State.RESOLVED) or transition.from_state is State.FIRING:
            log.info("alert %s: %s -> %s (%s): %s", alert.key, transition.from_state, transition.to_state,
                     transition.reason, alert.summary)  # fmt: skip

    def queue(self, messages: list[Outgoing], at: datetime) -> None:
        self.pending.messages += [Queued(m, at) for m in messages]
        self.pending.at = at

    def evaluated(self) -> None:
        """An evaluation's changes are in: written soon; while writes fail its messages go to memory at once."""
        self.dirty.set()
        if self._failing and self.pending.messages:  # no waiting for the next write attempt to send them
            self._to_memory(self.pending)
            self.on_queued()

    def holds(self, key: str) -> bool:
        """Whether a change of this alert is not written yet."""
        return key in self.pending.alerts

    @property
    def waiting(self) -> int:
        """Messages evaluated but not yet in the outbox table."""
        return sum(m.id is None for m in self.pending.messages)

    async def run(self) -> None:
        while True:
            await self.dirty.wait()
            self.dirty.clear()
            if not await self.flush():
                await asyncio.sleep(RETRY)

    async def flush(self) -> bool:
        """Write what is pending; False when it stays pending (the database is away)."""
        async with self._flushing:
            batch, self.pending = self.pending, AlertBatch(self.clock.now())
            if self._failing and batch.messages:  # the database failed last time: no message waits to see
                self._to_memory(batch)
                self.on_queued()
            try:
                if batch:
                    try:
                        await self._save(batch)
                    except BatchRejected:
                        for part in batch.by_account():
                            await self._save_or_drop(part)
            except Exception as exc:
                batch.extend(self.pending)
                self.pending = batch
                self._to_memory(batch)
                self._failing = True
                log.error(
                    "alert changes not written (%s); %d messages wait, delivered from memory meanwhile",
                    str(exc).strip(),
                    self.memory.waiting,
                )
                self.dirty.set()
                if batch.messages:
                    self.on_queued()
                return False
            self._failing = False
            try:
                await self.memory.settle(self.store)
            except Exception as exc:
                log.warning("delivery state of messages sent from memory not written yet (%s)", str(exc).strip())
                self.dirty.set()
                return False
        if batch.messages:
            self.on_queued()
        return True

    def _to_memory(self, batch: AlertBatch) -> None:
        """The batch's messages go to the outbox in memory (those it cannot hold leave the batch too)."""
        dropped = {id(m) for m in self.memory.admit(m for m in batch.messages if m.id is None)}
        batch.messages = [m for m in batch.messages if m.id is None and id(m) not in dropped]

    async def _save(self, batch: AlertBatch) -> None:
        """Write a batch; the messages the sender delivers from memory are written as they are now (a copy:
        it may record an attempt meanwhile)."""
        copy = self.memory.snapshot(batch, self.clock.now())
        await asyncio.to_thread(self.store.alerts.save, copy)
        self.memory.written(batch, copy)

    async def _save_or_drop(self, part: AlertBatch) -> None:
        try:
            await self._save(part)
        except BatchRejected as exc:
            self.rejected += 1
            log.error("alert changes refused by the database and dropped (%d alerts, %d messages): %s",
                      len(part.alerts), len(part.messages), exc)  # fmt: skip
            self.memory.forget(part.messages)
            self.on_dropped(part.alerts.values())
