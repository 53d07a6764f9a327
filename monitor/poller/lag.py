"""Time the monitor could not have polled: event-loop stalls and wall-clock jumps such as a suspend.

A stalled loop (blocking work, a starved CPU) or a suspended machine makes every account's data look old at
once, though no exchange was at fault. The watch measures that time so staleness and `unreachable` intervals
can leave it out: a small task sleeps a fixed step and records how late it wakes, on the monotonic clock and
on the wall clock (the monotonic clock stands still while the machine sleeps; the wall clock does not).
"""

from __future__ import annotations

import asyncio
import logging
from datetime import datetime

from monitor.clock import Clock

log = logging.getLogger(__name__)

STEP = 0.5  # seconds between the watch's wake-ups
TOLERANCE = 1.0  # lateness below this is ordinary scheduling noise, not a stall
REPORTED = 5.0  # stalls at least this long are logged


class LoopWatch:
    def __init__(self, clock: Clock, *, step: float = STEP, tolerance: float = TOLERANCE) -> None:
        self.clock = clock
        self.step = step
        self.tolerance = tolerance
        self.recorded = 0.0  # seconds of stalls seen so far
        self.longest = 0.0
        self._last: tuple[float, datetime] | None = None  # monotonic and wall time of the last wake-up

    def stalled(self) -> float:
        """Seconds lost to stalls since the watch started, including one still going on: a judgement made the
        moment the loop wakes up, before the watch's own wake-up ran, already leaves it out."""
        return self.recorded + self._late()

    def _late(self) -> float:
        if self._last is None:
            return 0.0
        mono, wall = self._last
        elapsed = max(self.clock.monotonic() - mono, (self.clock.now() - wall).total_seconds())
        late = elapsed - self.step
        return late if late > self.tolerance else 0.0

    def tick(self) -> float:
        """Record the time since the last wake-up; returns the stall it contained (0 when none)."""
        late = self._late()
        if late:
            self.recorded += late
            self.longest = max(self.longest, late)
            level = logging.WARNING if late >= REPORTED else logging.DEBUG
            log.log(level, "the monitor could not run for %.1f s (a stalled event loop or a suspended machine); "
                    "staleness and unreachable intervals leave this time out", late)  # fmt: skip
        self._last = (self.clock.monotonic(), self.clock.now())
        return late

    async def run(self) -> None:
        """Watch until cancelled."""
        self.tick()
        try:
            while True:
                await asyncio.sleep(self.step)
                self.tick()
        finally:
            self._last = None  # a watch that no longer runs sees no stalls
