"""Client-side budgets that mirror Bitget's limits, so the monitor never needs a 429 to find them.

Bitget counts per account and endpoint per second, and per IP per minute (6000 by default, with a 5-minute
lock-out when tripped). The simulator counts with sliding windows, the strictest reading; each budget here is
made of them (monitor.exchange.bitget.window: how a request holds its slot, and the queue levels by which the
market feed, confirming reads and accounts at risk go first). When the per-IP budget is full, routine reads
stretch and the others keep their cadence.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections import deque

from monitor.clock import Clock
from monitor.exchange.bitget import endpoints as ep
from monitor.exchange.bitget.window import ROUTINE, Held, SlidingWindow, release

log = logging.getLogger(__name__)

WINDOW_SLACK = 0.05  # seconds added to every window: the two clocks' resolution and rate
LOCKOUT_ACCOUNTS = 3  # 429s for this many accounts ...
LOCKOUT_WINDOW = 10.0  # ... within this many seconds: the IP is locked out
PROBE_PAUSE = 30.0  # the most a lock-out probe may hold everything up
# The per-IP budget is also paced, at its steady rate over about this long: requests go out evenly instead of a
# minute's budget in the first seconds (or all at once after a pause). The longest burst pacing lets through is
# then a second's worth, under the margin kept below Bitget's figure (3 %, about two seconds' worth): so a
# process restarted at full load, which assumes the last minute was spent evenly, stays inside Bitget's count.
PACE_WINDOW = 1.0


def parse_budget(text: str) -> tuple[int, float]:
    """ "6000/min" -> (6000, 60.0); also "/s", "/sec", "/h"."""
    m = re.fullmatch(r"\s*(\d+)\s*/\s*(s|sec|second|m|min|minute|h|hour)\s*", text)
    if not m or int(m.group(1)) <= 0:
        raise ValueError(f'expected a budget like "6000/min" or "100/s", got {text!r}')
    unit = m.group(2)[0]
    return int(m.group(1)), {"s": 1.0, "m": 60.0, "h": 3600.0}[unit]


def per_second(windows: dict[str, SlidingWindow], endpoint: ep.Endpoint, clock: Clock) -> SlidingWindow:
    """The window of an endpoint's per-second limit, made on first use."""
    window = windows.get(endpoint.path)
    if window is None:
        window = windows[endpoint.path] = SlidingWindow(endpoint.per_second, 1.0 + WINDOW_SLACK, clock)
    return window


def pacing(limit: int, window: float, clock: Clock) -> SlidingWindow | None:
    """A budget's steady rate over a short window: n requests per n * window / limit seconds, n being about a
    PACE_WINDOW's worth, whole, so no rate is lost to rounding. None for budgets of a second or less."""
    if window <= PACE_WINDOW:
        return None
    n = max(1, round(limit * PACE_WINDOW / window))
    return SlidingWindow(n, window * n / limit, clock)


class IpBudget:
    """The per-IP budget shared by every account this process polls."""

    def __init__(self, limit: int, window: float, clock: Clock, *, margin: float = 0.03) -> None:
        # Keep a safety margin below Bitget's figure: other tools on the same IP, clock drift.
        limit = max(1, int(limit * (1 - margin)))
        self.window = SlidingWindow(limit, window + WINDOW_SLACK, clock)
        # A process cannot know what this IP spent in the last window before it started (its own previous
        # run, restarted after a crash): it assumes the budget was in steady use.
        self.window.assume_busy()
        self.pace = pacing(limit, window, clock)
        self._gates = (self.window,) if self.pace is None else (self.window, self.pace)  # what a pause stops
        self.clock = clock
        self.lockouts = 0
        self.rate_limited = 0  # 429s met by any account of this budget, since start
        self._public: dict[str, SlidingWindow] = {}
        self._recent_429: deque[tuple[float, str]] = deque()
        self._probing = False
        self.probe: asyncio.Task[None] | None = None  # the running probe (a reference keeps the task alive)

    async def acquire(
        self,
        endpoint: ep.Endpoint,
        first: SlidingWindow | None = None,
        *,
        priority: int = ROUTINE,
        owner: AccountBudget | None = None,
    ) -> Held:
        """Hold slots for one request: in `first` (an account's own window for the endpoint), in the
        endpoint's own per-IP limit if it has one, and in the IP budget, then wait for pacing. Give them back with
        `release` once the answer is read. `priority`: ahead of every request of a lower level in each queue;
        with an `owner`, its priority at each queue (`promote` can raise it meanwhile).
        Plain awaits, no context managers: this runs for every request."""
        held: Held = []
        try:
            for window in (first, self._public_window(endpoint)):
                if window is not None:
                    await window.acquire(priority=owner.priority if owner else priority, owner=owner)
                    held.append(window)
            await self.window.acquire(priority=owner.priority if owner else priority, owner=owner)
            held.append(self.window)
            if self.pace is not None:  # last: it spaces the requests as they really leave
                await self.pace.take(priority=owner.priority if owner else priority, owner=owner)
        except BaseException:
            release(held)
            raise
        return held

    def _public_window(self, endpoint: ep.Endpoint) -> SlidingWindow | None:
        return per_second(self._public, endpoint, self.clock) if endpoint.scope is ep.Scope.IP else None

    def promote(self, owner: AccountBudget) -> None:
        """Move `owner`'s waiting requests up to its priority in every per-IP queue."""
        for window in (*self._public.values(), *self._gates):
            window.promote(owner, owner.priority)

    def pause(self, seconds: float) -> None:
        """Send nothing for a while: nothing more is admitted, and what was admitted but still waits for pacing
        waits for the pause to end too."""
        for window in self._gates:
            window.pause(seconds)

    def resume(self) -> None:
        for window in self._gates:
            window.resume()

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
        self.pause(PROBE_PAUSE)  # nothing more goes out into a possible lock-out while the probe asks
        return True

    def probed(self, locked_out: bool, lockout: float) -> None:
        """The probe's answer: a 429 on an IP-only endpoint means a lock-out, so every request pauses for its
        duration instead of hammering (which would prolong it). Anything else: the accounts were busy."""
        self._probing = False
        if locked_out:
            log.error("Bitget has locked this IP out; pausing every request for %.0f s", lockout)
            self.pause(lockout)
            self.lockouts += 1
        else:
            self.resume()


class AccountBudget:
    """One account's per-endpoint budgets, on top of the shared IP budget."""

    def __init__(self, ip: IpBudget) -> None:
        self.ip = ip
        self._endpoints: dict[str, SlidingWindow] = {}
        self.priority = ROUTINE  # of the read in progress: RISK, CONFIRMING go ahead of routine reads

    def _window(self, endpoint: ep.Endpoint) -> SlidingWindow:
        return per_second(self._endpoints, endpoint, self.ip.clock)

    async def acquire(self, endpoint: ep.Endpoint) -> Held:
        """Hold this account's slot for the endpoint and the IP's for one request, from before it is signed
        until its answer has been read (then `release`)."""
        window = self._window(endpoint) if endpoint.scope is ep.Scope.ACCOUNT else None
        return await self.ip.acquire(endpoint, window, owner=self)

    def promote(self, priority: int) -> None:
        """Raise the priority of this account's reads, those already waiting in the per-IP queues too."""
        if priority > self.priority:
            self.priority = priority
            self.ip.promote(self)

    def back_off(self, endpoint: ep.Endpoint, seconds: float) -> None:
        """After a 429 on this account and endpoint."""
        if endpoint.scope is ep.Scope.ACCOUNT:
            self._window(endpoint).pause(seconds)
