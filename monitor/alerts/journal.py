"""The alert changes on their way to the database: alerts, transitions and messages, written in order, one batch
after the other (write-behind; evaluations never wait on the database).

If the database is away the changes stay pending, in order, for the next attempt, and their messages go to the
outbox in memory (monitor.alerts.outbox), to be delivered meanwhile and written with their delivery state. If the
database refuses the data itself, retrying cannot help: the batch is written account by account, and the
refused part is logged and dropped (its alerts forgotten, for the next evaluation to rebuild).

With a spool (monitor.alerts.spool) every batch is appended to a local file before the database is asked, and
the delivery state of messages in memory as it changes: a crash during an outage forgets nothing the file has,
and `restore` hands a restarted process what the database had not taken.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterable
from datetime import datetime
from typing import Any

from monitor.alerts.model import Alert, AlertBatch, BatchRejected, Outgoing, Queued, State, Transition
from monitor.alerts.outbox import MemoryOutbox
from monitor.alerts.ports import AlertStorage
from monitor.alerts.records import alert_data, message_data, state_data, transition_data
from monitor.alerts.spool import Restored, Spool
from monitor.clock import Clock

log = logging.getLogger(__name__)

RETRY = 5.0  # seconds between attempts while the database is away
COMPACT_CLEAN = 256 * 1024  # bytes: the spool is rewritten past this once the database has everything


class Journal:
    def __init__(
        self, store: AlertStorage, clock: Clock, memory: MemoryOutbox, on_queued: Callable[[], None],
        on_dropped: Callable[[Iterable[Alert]], None], spool: Spool | None = None,
        known: Callable[[], Iterable[Alert]] = lambda: (),
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
        self.spool = spool
        self.known = known  # every alert the engine holds (what a compacted spool keeps)
        # What the spool has: each alert's version, transitions (by id()), messages (by id(): number, state).
        self._spooled_alerts: dict[str, Alert] = {}
        self._spooled_transitions: set[int] = set()
        self._spooled_messages: dict[int, tuple[int, dict[str, Any]]] = {}
        if spool is not None:
            memory.on_change = self._spool_state

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
        """An evaluation's changes are in: written soon; while writes fail its messages go to memory at once.
        An evaluation that changed nothing (most of them) wakes no writer while no message waits in memory: such
        a flush would write, spool and settle nothing."""
        if not self.pending and not len(self.memory):
            return
        self.dirty.set()
        if self._failing and self.pending.messages:  # no waiting for the next write attempt to send them
            self._spool(self.pending)  # on disk before anyone hears it
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
            upto = self._spool(self.pending)
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
                self._spool(batch)  # what arrived during the attempt: on disk before it is sent
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
            self._spool_written(batch, upto)
            try:
                await self.memory.settle(self.store)
            except Exception as exc:
                log.warning("delivery state of messages sent from memory not written yet (%s)", str(exc).strip())
                self.dirty.set()
                return False
        if batch.messages:
            self.on_queued()
        return True

    # -- the spool ------------------------------------------------------------------------------------------

    def restore(self) -> Restored | None:
        """What the spool knew before this process started; its unwritten changes become pending (to be
        written) and their messages not sent yet are delivered from memory. None without a spool file."""
        restored = self.spool.load() if self.spool is not None else None
        if restored is not None:
            self._spooled_alerts.update(restored.known)
        if restored is None or not restored.unwritten:
            return restored
        batch = restored.unwritten
        self._spooled_transitions.update(id(t) for t in batch.transitions)
        self._spooled_messages.update((id(m), (n, state_data(m))) for n, m in restored.messages.items())
        batch.extend(self.pending)
        self.pending = batch
        self._to_memory(batch)
        log.warning("alert spool: %d alert changes and %d messages (%d not sent) the database had not taken; "
                    "written when it answers", len(batch.alerts), len(batch.messages),
                    sum(m.sent_at is None for m in batch.messages))  # fmt: skip
        self.dirty.set()
        self.on_queued()
        return restored

    def _spool(self, batch: AlertBatch) -> int:
        """Append what of the batch the spool does not have yet; returns the spool's last record number."""
        if self.spool is None:
            return 0
        if self.spool.size >= self.spool.max_bytes:  # bounded even while the database stays away
            self._compact()
            return self.spool.n
        records: list[dict[str, Any]] = []
        alerts = [a for k, a in batch.alerts.items() if self._spooled_alerts.get(k) is not a]
        records += [{"t": "alert", "d": alert_data(a)} for a in alerts]
        transitions = [t for t in batch.transitions if id(t) not in self._spooled_transitions]
        records += [{"t": "transition", "d": transition_data(t)} for t in transitions]
        fresh = [m for m in batch.messages if m.id is None and id(m) not in self._spooled_messages]
        numbers = self.spool.append([*records, *({"t": "message", "d": message_data(m)} for m in fresh)])
        self._spooled_alerts.update((a.key, a) for a in alerts)
        self._spooled_transitions.update(id(t) for t in transitions)
        for m, n in zip(fresh, numbers[len(records) :], strict=True):
            self._spooled_messages[id(m)] = (n, state_data(m))
        return self.spool.n

    def _spool_state(self, message: Queued) -> None:
        """A message in memory changed its delivery state (the sender tried it)."""
        known = self._spooled_messages.get(id(message))
        if self.spool is None or known is None or message.id is not None:
            return
        state = state_data(message)
        if state != known[1]:
            self.spool.append([{"t": "state", "m": known[0], "d": state}])
            self._spooled_messages[id(message)] = (known[0], state)

    def _spool_written(self, batch: AlertBatch, upto: int) -> None:
        """The database took the batch: the spool says so; once the database has everything (or the file is
        past its bound) it is rewritten with the current state alone."""
        if self.spool is None or not batch:
            return
        self._spooled_transitions.difference_update(id(t) for t in batch.transitions)
        for m in batch.messages:
            self._spooled_messages.pop(id(m), None)
        if self.spool.size >= (self.spool.max_bytes if self.pending else COMPACT_CLEAN):
            self._compact()
        else:
            self.spool.append([{"t": "written", "upto": upto}])

    def checkpoint(self) -> None:
        """Start the spool with the state just loaded, so a start while the database is away has it even if
        nothing changes before."""
        if self.spool is not None and not self.spool.exists():
            self._compact()

    def _compact(self) -> None:
        """Rewrite the spool: every alert as the engine knows it (all in the database), then what is pending."""
        assert self.spool is not None
        known = [{"t": "alert", "d": alert_data(a)} for a in self.known()]
        pending = self.pending
        messages = [m for m in pending.messages if m.id is None]
        numbers = self.spool.rewrite([
            *known, {"t": "written", "upto": self.spool.n + len(known)},
            *({"t": "alert", "d": alert_data(a)} for a in pending.alerts.values()),
            *({"t": "transition", "d": transition_data(t)} for t in pending.transitions),
            *({"t": "message", "d": message_data(m)} for m in messages),
        ])  # fmt: skip
        self._spooled_alerts = {a.key: a for a in self.known()} | dict(pending.alerts)
        self._spooled_transitions = {id(t) for t in pending.transitions}
        firsts = numbers[len(numbers) - len(messages) :]
        self._spooled_messages = {id(m): (n, state_data(m)) for m, n in zip(messages, firsts, strict=True)}

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
