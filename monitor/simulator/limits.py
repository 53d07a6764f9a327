"""Bitget's rate limits as the simulator enforces them: sliding windows per key, and the per-IP lock-out."""

from __future__ import annotations

from collections import deque
from collections.abc import Hashable


class SlidingWindow:
    """At most `limit` events per `window` seconds for each key; refused events are not counted.

    A sliding window is the strictest reading of "N per second": a client that respects it respects any
    fixed-window counting too.
    """

    def __init__(self, window: float) -> None:
        self.window = window
        self._events: dict[Hashable, deque[float]] = {}

    def admit(self, key: Hashable, limit: int, now: float) -> int | None:
        """Count an event and return how many remain in the window, or None when over the limit."""
        events = self._events.setdefault(key, deque())
        horizon = now - self.window
        while events and events[0] <= horizon:
            events.popleft()
        if len(events) >= limit:
            return None
        events.append(now)
        return limit - len(events)

    def busiest(self, key: Hashable, span: float) -> int:
        """The most events counted for a key within any `span` seconds of the current window."""
        events, most, start = list(self._events.get(key, ())), 0, 0
        for end, at in enumerate(events):
            while events[start] <= at - span:
                start += 1
            most = max(most, end - start + 1)
        return most


class IpLimiter:
    """The shared per-IP budget (6000 a minute by default); tripping it locks the IP out for a while.

    The window is a minute on Bitget; tests shorten it to keep runs short.
    """

    def __init__(self, per_minute: int = 6000, lockout: float = 300.0, window: float = 60.0) -> None:
        self.per_minute = per_minute
        self.lockout = lockout
        self._window = SlidingWindow(window)
        self._locked_until: dict[str, float] = {}
        self.lockouts = 0

    def busiest(self, ip: str, span: float) -> int:
        """The most requests from an IP within any `span` seconds of the last window: how evenly it spends."""
        return self._window.busiest(ip, span)

    def admit(self, ip: str, now: float) -> bool:
        if self._locked_until.get(ip, 0.0) > now:
            return False
        if self._window.admit(ip, self.per_minute, now) is None:
            self._locked_until[ip] = now + self.lockout
            self.lockouts += 1
            return False
        return True
