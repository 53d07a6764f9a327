"""The outbox in memory: messages the database could not take yet.

The outbox table is the normal home of every message. When the database refuses a write (unreachable, locked,
disk full), the engine keeps the batch and hands its messages here; the sender delivers them from here exactly
as it delivers rows (one at a time per channel, in order per channel and account, retries with backoff), and
their delivery state lives on the messages. When the database is back the engine writes them with that state
(those not sent yet claimed by this node), and the outbox here records the final state and lets them go:
nothing is sent twice, nothing is lost. A message whose delivery is under way when it is written stays here
until that delivery ends.

Bounded: past `limit` messages the oldest already sent are forgotten first (only their record is lost), then
the oldest unsent (each one logged and counted).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Collection, Iterable
from datetime import datetime, timedelta

from monitor.alerts.model import AlertBatch, Queued
from monitor.alerts.ports import AlertStorage

log = logging.getLogger(__name__)

LIMIT = 2000  # messages held in memory at most
HOLD = timedelta(minutes=2)  # how long rows written from memory stay claimed if their state is never recorded


class MemoryOutbox:
    def __init__(self, node: str, limit: int = LIMIT) -> None:
        self.node = node
        self.limit = limit
        self.dropped = 0  # unsent messages forgotten because the outbox was full
        self._messages: dict[int, Queued] = {}  # by id() of the message, in arrival order
        self._inflight: set[int] = set()
        self.on_change: Callable[[Queued], None] = lambda message: None  # a delivery state changed (the spool)

    def __len__(self) -> int:
        return len(self._messages)

    @property
    def waiting(self) -> int:
        """Messages not in the database yet."""
        return sum(m.id is None for m in self._messages.values())

    def written_ids(self) -> set[int]:
        """Rows whose delivery state is still here (not to be claimed from the database)."""
        return {m.id for m in self._messages.values() if m.id is not None}

    def admit(self, messages: Iterable[Queued]) -> list[Queued]:
        """Take the messages of a batch the database refused; returns those dropped to stay within the limit
        (the caller drops them from the batch too)."""
        for m in messages:
            if m.outgoing.held_until is None:  # held ones wait in the batch for their quiet hours to end
                self._messages.setdefault(id(m), m)
        over = len(self._messages) - self.limit
        if over <= 0:
            return []
        candidates = [m for k, m in self._messages.items() if m.id is None and k not in self._inflight]
        victims = sorted(candidates, key=lambda m: m.sent_at is None)[:over]  # sent ones first, oldest first
        lost = [m for m in victims if m.sent_at is None]
        for m in victims:
            del self._messages[id(m)]
        if lost:
            self.dropped += len(lost)
            log.error("outbox in memory full (%d messages): %d unsent messages dropped, the oldest to %s",
                      self.limit, len(lost), lost[0].channel)  # fmt: skip
        return victims

    def claim(self, now: datetime, busy: Collection[str]) -> list[Queued]:
        """As the table's claim: the oldest due message of each channel not busy, a retried message holding
        back only the later ones of its channel and account."""
        heads: dict[tuple[str, str | None], Queued] = {}
        for m in self._messages.values():
            if m.id is None and m.sent_at is None:
                heads.setdefault((m.channel, m.account), m)
        taken, claimed = set(busy), []
        for m in heads.values():
            if m.channel in taken or id(m) in self._inflight or m.due_at > now:
                continue
            self._inflight.add(id(m))
            taken.add(m.channel)
            claimed.append(m)
        return claimed

    def inflight(self, message: Queued) -> bool:
        return id(message) in self._inflight

    def attempted(self, message: Queued, done: Iterable[str], sent_at: datetime | None = None,
                  error: str | None = None, retry_at: datetime | None = None) -> None:  # fmt: skip
        """What a delivery from memory achieved (`sent_at` when every URL has it)."""
        self._inflight.discard(id(message))
        message.attempts += 1
        message.delivered = tuple(done)
        message.last_error = error
        message.sent_at = sent_at
        if retry_at is not None:
            message.next_attempt_at = retry_at
        self.on_change(message)

    def release(self, message: Queued, retry_at: datetime) -> None:
        """A delivery that broke unexpectedly: tried again later."""
        self._inflight.discard(id(message))
        message.next_attempt_at = retry_at

    def snapshot(self, batch: AlertBatch, now: datetime) -> AlertBatch:
        """A copy of the batch to write while the sender goes on: messages delivered from memory are copied
        with their state as it is now; those not sent yet are claimed by this node (one may be under way, or
        start before the write ends: no other sender may repeat it; `settle` writes the outcome)."""
        copies = []
        for m in batch.messages:
            if id(m) in self._messages:
                claim = (self.node, now + HOLD) if m.sent_at is None else None
                m = Queued(m.outgoing, m.created_at, m.attempts, m.delivered, m.next_attempt_at, m.last_error,
                           m.sent_at, claim)  # fmt: skip
            copies.append(m)
        return AlertBatch(batch.at, batch.alerts, batch.transitions, copies)

    def written(self, batch: AlertBatch, copy: AlertBatch) -> None:
        """The copy is in the database: its messages' rows are theirs."""
        for m, c in zip(batch.messages, copy.messages, strict=True):
            m.id = c.id

    def forget(self, messages: Iterable[Queued]) -> None:
        for m in messages:
            self._messages.pop(id(m), None)

    async def settle(self, store: AlertStorage) -> None:
        """Record the state of written messages whose delivery is not under way, and let them go (raises
        while the database is away; they stay here meanwhile)."""
        ready = [m for k, m in self._messages.items() if m.id is not None and k not in self._inflight]
        if not ready:
            return
        states = [(m.id, m.state()) for m in ready if m.id is not None]
        await asyncio.to_thread(store.alerts.record, states)
        self.forget(ready)
