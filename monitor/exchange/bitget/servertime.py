"""Our estimate of Bitget's clock, shared by every account on one base URL."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

from monitor.clock import Clock, epoch_ms

log = logging.getLogger(__name__)


class ServerClock:
    """Our estimate of Bitget's clock, shared by every account on one base URL.

    Bitget rejects timestamps more than 30 s off its own clock (40008), so the offset is measured from the
    unsigned `/api/v2/public/time` and re-measured after a 40008.
    """

    def __init__(self, clock: Clock) -> None:
        self.clock = clock
        self.offset_ms = 0
        self.measured_at: float | None = None  # monotonic time of the last measurement
        self._lock = asyncio.Lock()

    def timestamp_ms(self) -> int:
        return epoch_ms(self.clock.now()) + self.offset_ms

    async def measure(self, fetch: Callable[[], Any], stale_before: float | None = None) -> int:
        """Set the offset from one round trip (`fetch` returns the server time in ms) and return it.

        With `stale_before` (a monotonic time), an offset measured after it is kept as it is: when many
        accounts hit 40008 at once, the clock is measured once, not once per account.
        """
        async with self._lock:
            if stale_before is not None and self.measured_at is not None and self.measured_at > stale_before:
                return self.offset_ms
            sent = epoch_ms(self.clock.now())
            server_ms = await fetch()
            received = epoch_ms(self.clock.now())
            self.offset_ms = server_ms - (sent + received) // 2
            self.measured_at = self.clock.monotonic()
            if abs(self.offset_ms) > 1000:
                log.info("clock offset to Bitget is %+d ms; compensating", self.offset_ms)
            return self.offset_ms

    @property
    def measured(self) -> bool:
        return self.measured_at is not None
