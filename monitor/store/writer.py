"""The buffered snapshot writer: polls never wait on the database, and an outage loses nothing it can keep.

Poll outcomes queue in memory and are written in batches by one background task (in a worker thread), at most
one batch every `interval`: at steady state the reads of a second share one thread hop, one transaction and one
statement per table, instead of one of each per read. `flush` (shutdown) writes at once. When
the database is unreachable or locked, the queue holds them and the writer retries with backoff; when the
queue is over its limit, the oldest raw snapshots are dropped first, and every drop is counted and logged.
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter, deque

from monitor.clock import wait_for_event
from monitor.domain import PollOutcome
from monitor.errors import StorageError, reason
from monitor.store.errors import is_data_error
from monitor.store.repository import Store

log = logging.getLogger(__name__)


WRITE_TIMEOUT = 60.0  # seconds one batch may take before the database counts as unreachable
INTERVAL = 1.0  # seconds between two batches at most (how long a result waits in memory at most, when healthy)


class SnapshotWriter:
    def __init__(
        self,
        store: Store,
        *,
        limit: int = 10_000,
        batch: int = 2_000,
        retry_min: float = 0.5,
        retry_max: float = 30.0,
        interval: float = INTERVAL,
    ) -> None:
        self.store = store
        self.limit = limit
        self.batch = batch
        self.retry_min = retry_min
        self.retry_max = retry_max
        self.interval = interval
        self.dropped = 0  # raw snapshots lost to a full buffer
        self.written = 0
        self.healthy = True  # False while the database refuses writes
        self.last_error: str | None = None
        self.refused: Counter[str] = Counter()  # per account: poll results the database refused, since start
        self.refusals: dict[str, str] = {}  # per account: why its last result was refused, until one is stored
        self._queue: deque[PollOutcome] = deque()
        self._wake = asyncio.Event()
        self._idle = asyncio.Event()
        self._idle.set()
        self._hurry = asyncio.Event()  # a flush waits: no pause between batches until the queue is empty

    @property
    def pending(self) -> int:
        return len(self._queue)

    def submit(self, outcome: PollOutcome) -> None:
        self._queue.append(outcome)
        self._idle.clear()
        self._enforce_limit()
        self._wake.set()

    def _enforce_limit(self) -> None:
        over = len(self._queue) - self.limit
        if over <= 0:
            return
        for _ in range(over):
            self._queue.popleft()
        if self.dropped == 0 or (self.dropped // 1000) != ((self.dropped + over) // 1000):
            log.warning(
                "write buffer full (%d): dropped the oldest snapshots, %d so far", self.limit, self.dropped + over
            )
        self.dropped += over

    async def run(self) -> None:
        """Write queued outcomes until cancelled."""
        delay = self.retry_min
        while True:
            if not self._queue:
                self._idle.set()
                self._hurry.clear()
                self._wake.clear()
                await self._wake.wait()
                continue
            batch = [self._queue.popleft() for _ in range(min(self.batch, len(self._queue)))]
            try:
                # A database that stops answering mid-write (not refusing: hanging) is an outage too.
                await asyncio.wait_for(asyncio.to_thread(self.store.write_polls, batch), WRITE_TIMEOUT)
            except (StorageError, TypeError, ValueError, ArithmeticError, TimeoutError) as exc:
                if is_data_error(exc) or isinstance(exc, ArithmeticError):
                    await self._write_one_by_one(batch)
                    continue
                # The database is away, locked or not migrated yet: put the batch back in front, in order;
                # the limit then drops the oldest if needed.
                self._queue.extendleft(reversed(batch))
                self._enforce_limit()
                self.last_error = str(exc)
                if self.healthy:
                    log.error("database write failed (%s); buffering snapshots in memory", self.last_error)
                    self.healthy = False
                await asyncio.sleep(delay)
                delay = min(self.retry_max, delay * 2)
                continue
            else:
                self.written += len(batch)
                if self.refusals:
                    self._stored(batch)
            delay = self.retry_min
            if not self.healthy:
                log.warning("database writes work again; %d buffered snapshots pending", len(self._queue))
                self.healthy = True
                self.last_error = None
            if len(self._queue) < self.batch:  # let the next reads gather (a full batch goes at once)
                await wait_for_event(self._hurry, self.interval)

    async def _write_one_by_one(self, batch: list[PollOutcome]) -> None:
        """A batch the database refuses as data: write what it accepts, log and count what it does not, so
        one bad result never blocks the rest."""
        for index, outcome in enumerate(batch):
            try:
                await asyncio.to_thread(self.store.write_polls, [outcome])
                self.written += 1
                self._stored([outcome])
            except (StorageError, TypeError, ValueError, ArithmeticError) as exc:
                if not (is_data_error(exc) or isinstance(exc, ArithmeticError)):  # the database went away meanwhile
                    self._queue.extendleft(reversed(batch[index:]))
                    return
                log.exception("%s: a poll result the database refuses was dropped", outcome.account)
                self.dropped += 1
                self.refused[outcome.account] += 1
                self.refusals[outcome.account] = reason(exc)[:300]

    def _stored(self, outcomes: list[PollOutcome]) -> None:
        for outcome in outcomes:
            self.refusals.pop(outcome.account, None)

    async def flush(self, timeout: float) -> bool:
        """Write everything queued now, without the pause between batches, and wait until it is written (for
        shutdown); False if the timeout ran out first."""
        if not self._idle.is_set():
            self._hurry.set()
        return await wait_for_event(self._idle, timeout)
