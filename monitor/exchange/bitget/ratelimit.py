"""Client-side budgets that mirror Bitget's limits, so the monitor never needs a 429 to find them.

Bitget counts per account and endpoint per second, and per IP per minute (6000 by default, with a 5-minute
lock-out when tripped). The simulator counts with sliding windows, the strictest reading. Bitget counts a
request when it arrives, which we cannot see: it lies somewhere between taking a slot and reading the answer.
So a request holds its slot for that whole time and is dated by its answer. Requests that were sent far
enough apart but arrive closer together (a busy event loop, a queue for connections, network jitter) then
still fit in the window, however large the jitter.

A waiter may ask to go first (`priority`, a level): it joins the queue behind every waiter of its level or
higher and ahead of every lower one. The shared market feed goes first (FEED), so one read that serves every
account is never stuck behind a minute of signed account reads; then confirming reads (CONFIRMING: a mark moved
a position past a rule level), then the re-reads of accounts near liquidation (RISK), then routine reads. When
the per-IP budget is full, routine reads stretch and the others keep their cadence. Every waiter still waits for
room and for pauses: priority reorders the queue, it never overdraws a budget.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections import deque

from monitor.clock import Clock
from monitor.exchange.bitget import endpoints as ep

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
# Queue levels inside the budgets, the higher first: see the module's docstring.
ROUTINE, RISK, CONFIRMING, FEED = 0, 1, 2, 3


_Waiter = tuple["asyncio.Future[None]", bool, int, object]  # see SlidingWindow._waiters


class SlidingWindow:
    """At most `limit` requests in any `window` seconds; callers wait their turn in order.

    A request counts from the moment it takes a slot until `window` seconds after its answer arrived.

    Waiters are granted in batches: whenever room appears (a request ages out of the window, a pause ends),
    one pass hands out every slot that fits. A lock handed from waiter to waiter would admit one request per
    turn of the event loop, and a busy loop would then admit fewer than the budget allows while the queue
    grew: every account late, some for minutes.
    """

    def __init__(self, limit: int, window: float, clock: Clock) -> None:
        self.limit = limit
        self.window = window
        self.clock = clock
        self._answered: deque[float] = deque()  # when each request of the last `window` seconds ended
        self._in_flight = 0
        self._ramp_until = 0.0  # see assume_busy
        self._paused_until = 0.0
        # Waiting callers in order: their future, whether they hold a slot (True) or only depart (False), their
        # priority level (the queue is ordered by level, highest first, then by arrival), and who asked (see
        # `promote`).
        self._waiters: deque[_Waiter] = deque()
        self._timer: asyncio.TimerHandle | None = None

    def pause(self, seconds: float) -> None:
        """Admit nothing for a while (a 429 backs off; a lock-out stops everything)."""
        self._paused_until = max(self._paused_until, self.clock.monotonic() + seconds)

    def resume(self) -> None:
        self._paused_until = 0.0
        self._grant()

    @property
    def paused_for(self) -> float:
        return max(0.0, self._paused_until - self.clock.monotonic())

    def assume_busy(self) -> None:
        """Start as if the window had been used evenly up to now (by this process before a restart, say):
        room then comes back at the steady rate, limit/window, instead of all at once."""
        self._ramp_until = self.clock.monotonic() + self.window

    def _assumed(self, now: float) -> float:
        return self.limit * (self._ramp_until - now) / self.window if now < self._ramp_until else 0.0

    def _room(self, now: float) -> tuple[bool, float | None]:
        """Whether one more request fits now; if not, how long until it may (None: when an answer arrives)."""
        while self._answered and self._answered[0] <= now - self.window:
            self._answered.popleft()
        if self._paused_until > now:
            return False, self._paused_until - now
        assumed = self._assumed(now)
        if len(self._answered) + self._in_flight + assumed < self.limit:
            return True, 0.0
        if assumed:  # the assumed use runs out one request at a time
            return False, self.window / self.limit
        if self._answered:
            return False, self._answered[0] + self.window - now
        return False, None  # every slot is in flight

    def _count(self, holds: bool, now: float) -> None:
        if holds:
            self._in_flight += 1
        else:
            self._answered.append(now)

    def _grant(self) -> None:
        """Hand out every slot that fits now, in order; come back when the next may fit."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        now = self.clock.monotonic()
        while self._waiters:
            future, holds, _, _ = self._waiters[0]
            if future.done():  # its caller was cancelled while waiting
                self._waiters.popleft()
                continue
            fits, wait = self._room(now)
            if not fits:
                if wait is not None:
                    self._timer = asyncio.get_running_loop().call_later(max(wait, 0.001), self._grant)
                return
            self._waiters.popleft()
            self._count(holds, now)
            future.set_result(None)

    def _enqueue(self, waiter: _Waiter) -> None:
        priority = waiter[2]
        if priority > ROUTINE and self._waiters and self._waiters[-1][2] < priority:
            ahead = 0  # behind the waiters of its level or higher: they keep their order among themselves
            while self._waiters[ahead][2] >= priority:
                ahead += 1
            self._waiters.insert(ahead, waiter)
        else:
            self._waiters.append(waiter)

    def promote(self, owner: object, priority: int) -> None:
        """Move the waiters `owner` queued below `priority` up to it (a routine read already waiting when its
        account is asked for a confirming read must not hold that read up)."""
        moved = [w for w in self._waiters if w[3] is owner and w[2] < priority]
        if moved:
            self._waiters = deque(w for w in self._waiters if not (w[3] is owner and w[2] < priority))
            for future, holds, _, _ in moved:
                self._enqueue((future, holds, priority, owner))

    async def _admit(self, holds: bool, priority: int, owner: object) -> None:
        now = self.clock.monotonic()
        if not self._waiters and self._room(now)[0]:
            self._count(holds, now)
            return
        future = asyncio.get_running_loop().create_future()
        self._enqueue((future, holds, priority, owner))
        if self._timer is None:
            self._grant()
        try:
            await future
        except asyncio.CancelledError:
            if future.done() and not future.cancelled() and holds:  # granted, but cancelled before it ran
                self._in_flight -= 1
                self._grant()
            raise

    async def acquire(self, *, priority: int = ROUTINE, owner: object = None) -> None:
        """Wait for room and hold a slot until `release`, which dates the request. `priority`: ahead of every
        waiter of a lower level; `owner`: whom `promote` moves."""
        await self._admit(True, priority, owner)

    def release(self) -> None:
        self._in_flight -= 1
        self._answered.append(self.clock.monotonic())
        if self._waiters and self._timer is None:  # waiting for an answer to date: it is here
            self._grant()

    async def take(self, *, priority: int = ROUTINE, owner: object = None) -> None:
        """Wait for room and count a request now: for pacing, where only the spacing of departures matters."""
        await self._admit(False, priority, owner)


Held = list[SlidingWindow]  # the windows one request holds a slot in


def release(held: Held) -> None:
    """Give back the slots of a request whose answer has been read (or that never went out)."""
    for window in held:
        window.release()


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
