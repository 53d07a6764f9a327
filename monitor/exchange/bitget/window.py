"""A sliding window of requests, the unit every budget is made of (monitor.exchange.bitget.ratelimit).

Bitget counts a request when it arrives, which we cannot see: it lies somewhere between taking a slot and
reading the answer. So a request holds its slot for that whole time and is dated by its answer. Requests that
were sent far enough apart but arrive closer together (a busy event loop, a queue for connections, network
jitter) then still fit in the window, however large the jitter.

A waiter may ask to go first (`priority`, a level): it joins the queue behind every waiter of its level or
higher and ahead of every lower one. The shared market feed goes first (FEED), so one read that serves every
account is never stuck behind a minute of signed account reads; then confirming reads (CONFIRMING: a mark moved
a position past a rule level), then the re-reads of accounts near liquidation (RISK), then routine reads. Every
waiter still waits for room and for pauses: priority reorders the queue, it never overdraws a budget.
"""

from __future__ import annotations

import asyncio
from collections import deque

from monitor.clock import Clock

# Queue levels inside the budgets, the higher first: see the module's docstring.
ROUTINE, RISK, CONFIRMING, FEED = 0, 1, 2, 3


# A full window wakes its queue at most this often, as a share of its length (60 ms for a minute's budget): room
# that appears meanwhile is handed out together, so a queue drained at the full budget goes out in small batches
# that share the event loop's wake-ups and their answers' reads, instead of one request per wake-up. A slot then
# waits at most a thousandth of the window longer to be reused: a thousandth of the budget, at most, unused.
GRANT_SPACING = 0.001

_Waiter = tuple["asyncio.Future[None]", bool, int, object]  # see SlidingWindow._waiters
_NO_WAITERS: deque[_Waiter] = deque()  # never added to: a window's queue until its first waiter


class SlidingWindow:
    """At most `limit` requests in any `window` seconds; callers wait their turn in order.

    A request counts from the moment it takes a slot until `window` seconds after its answer arrived.

    Waiters are granted in batches: whenever room appears (a request ages out of the window, a pause ends),
    one pass hands out every slot that fits; a full window looks again no sooner than GRANT_SPACING of its
    length later. A lock handed from waiter to waiter would admit one request per
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
        # `promote`). Shared and empty until someone waits: most windows (5000 accounts, one per endpoint) never
        # queue anyone, and an empty deque costs 600 bytes.
        self._waiters: deque[_Waiter] = _NO_WAITERS
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
                    spacing = self.window * GRANT_SPACING
                    self._timer = asyncio.get_running_loop().call_later(max(wait, spacing), self._grant)
                return
            self._waiters.popleft()
            self._count(holds, now)
            future.set_result(None)

    def _enqueue(self, waiter: _Waiter) -> None:
        if self._waiters is _NO_WAITERS:
            self._waiters = deque()
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
