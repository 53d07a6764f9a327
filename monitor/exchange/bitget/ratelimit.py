"""Client-side budgets that mirror Bitget's limits, so the monitor never needs a 429 to find them.

Bitget counts per account and endpoint per second, and per IP per minute (6000 by default, with a 5-minute
lock-out when tripped). The simulator counts with sliding windows, the strictest reading; these budgets keep
the same windows plus a margin for network jitter, so arrivals stay inside the limit even when requests sent
just far enough apart arrive closer together.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections import deque
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from monitor.clock import Clock
from monitor.exchange.bitget import endpoints as ep

log = logging.getLogger(__name__)

WINDOW_SLACK = 0.25  # seconds added to every window: send-time spacing vs arrival-time spacing
LOCKOUT_ACCOUNTS = 3  # 429s for this many accounts ...
LOCKOUT_WINDOW = 10.0  # ... within this many seconds: the IP is locked out
PROBE_PAUSE = 30.0  # the most a lock-out probe may hold everything up


class SlidingWindow:
    """At most `limit` acquisitions in any `window` seconds; callers wait their turn in order."""

    def __init__(self, limit: int, window: float, clock: Clock) -> None:
        self.limit = limit
        self.window = window
        self.clock = clock
        self._sent: deque[float] = deque()
        self._lock = asyncio.Lock()
        self._paused_until = 0.0

    def pause(self, seconds: float) -> None:
        """Admit nothing for a while (a 429 backs off; a lock-out stops everything)."""
        self._paused_until = max(self._paused_until, self.clock.monotonic() + seconds)

    def resume(self) -> None:
        self._paused_until = 0.0

    @property
    def paused_for(self) -> float:
        return max(0.0, self._paused_until - self.clock.monotonic())

    def _prune(self, now: float) -> None:
        horizon = now - self.window
        while self._sent and self._sent[0] <= horizon:
            self._sent.popleft()

    @asynccontextmanager
    async def turn(self) -> AsyncIterator[None]:
        """Wait for room in the window, run the body, and count the request when the body ends.

        Counting at the end matters when the body waits for another budget: the request is counted when it
        is really sent, and the lock keeps a second one from slipping in meanwhile.
        """
        async with self._lock:
            while True:
                now = self.clock.monotonic()
                self._prune(now)
                wait = self._paused_until - now
                if wait <= 0 and len(self._sent) < self.limit:
                    break
                if wait <= 0:
                    wait = self._sent[0] + self.window - now
                await asyncio.sleep(wait)
            yield
            self._sent.append(self.clock.monotonic())


def parse_budget(text: str) -> tuple[int, float]:
    """ "6000/min" -> (6000, 60.0); also "/s", "/sec", "/h"."""
    m = re.fullmatch(r"\s*(\d+)\s*/\s*(s|sec|second|m|min|minute|h|hour)\s*", text)
    if not m or int(m.group(1)) <= 0:
        raise ValueError(f'expected a budget like "6000/min" or "100/s", got {text!r}')
    unit = m.group(2)[0]
    return int(m.group(1)), {"s": 1.0, "m": 60.0, "h": 3600.0}[unit]


class IpBudget:
    """The per-IP budget shared by every account this process polls."""

    def __init__(self, limit: int, window: float, clock: Clock, *, margin: float = 0.03) -> None:
        # Keep a safety margin below Bitget's figure: other tools on the same IP, clock drift.
        self.window = SlidingWindow(max(1, int(limit * (1 - margin))), window + WINDOW_SLACK, clock)
        self.clock = clock
        self.lockouts = 0
        self.rate_limited = 0  # 429s met by any account of this budget, since start
        self._public: dict[str, SlidingWindow] = {}
        self._recent_429: deque[tuple[float, str]] = deque()
        self._probing = False
        self.probe: asyncio.Task[None] | None = None  # the running probe (a reference keeps the task alive)

    async def acquire(self, endpoint: ep.Endpoint) -> None:
        if endpoint.scope is ep.Scope.IP:
            window = self._public.get(endpoint.path)
            if window is None:
                window = self._public[endpoint.path] = SlidingWindow(
                    endpoint.per_second, 1.0 + WINDOW_SLACK, self.clock
                )
            async with window.turn(), self.window.turn():
                pass
        else:
            async with self.window.turn():
                pass

    def note_rate_limited(self, account: str) -> bool:
        """Record a 429 for an account. True when 429s for several accounts at once suggest that the IP itself
        is locked out: the caller then probes an IP-only endpoint and reports with `probed`."""
        now = self.clock.monotonic()
        self.rate_limited += 1
        self._recent_429.append((now, account))
        while self._recent_429 and self._recent_429[0][0] < now - LOCKOUT_WINDOW:
            self._recent_429.popleft()
        if self._probing or self.window.paused_for or len({a for _, a in self._recent_429}) < LOCKOUT_ACCOUNTS:
            return False
        self._probing = True
        self._recent_429.clear()
        self.window.pause(PROBE_PAUSE)  # nothing more goes out into a possible lock-out while the probe asks
        return True

    def probed(self, locked_out: bool, lockout: float) -> None:
        """The probe's answer: a 429 on an IP-only endpoint means a lock-out, so every request pauses for its
        duration instead of hammering (which would prolong it). Anything else: the accounts were busy."""
        self._probing = False
        if locked_out:
            log.error("Bitget has locked this IP out; pausing every request for %.0f s", lockout)
            self.window.pause(lockout)
            self.lockouts += 1
        else:
            self.window.resume()


class AccountBudget:
    """One account's per-endpoint budgets, on top of the shared IP budget."""

    def __init__(self, ip: IpBudget) -> None:
        self.ip = ip
        self._endpoints: dict[str, SlidingWindow] = {}

    def _window(self, endpoint: ep.Endpoint) -> SlidingWindow:
        window = self._endpoints.get(endpoint.path)
        if window is None:
            window = self._endpoints[endpoint.path] = SlidingWindow(
                endpoint.per_second, 1.0 + WINDOW_SLACK, self.ip.clock
            )
        return window

    async def acquire(self, endpoint: ep.Endpoint) -> None:
        if endpoint.scope is ep.Scope.ACCOUNT:
            async with self._window(endpoint).turn():
                await self.ip.acquire(endpoint)
        else:
            await self.ip.acquire(endpoint)

    def back_off(self, endpoint: ep.Endpoint, seconds: float) -> None:
        """After a 429 on this account and endpoint."""
        if endpoint.scope is ep.Scope.ACCOUNT:
            self._window(endpoint).pause(seconds)
