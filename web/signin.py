"""Failed sign-ins per client address, so a token cannot be guessed at the speed of the network."""

from __future__ import annotations

import logging
from collections import OrderedDict, deque

from monitor.clock import Clock

log = logging.getLogger(__name__)

LIMIT = 10  # failed attempts per address within WINDOW; past it attempts are refused unchecked
WINDOW = 60.0  # seconds
ADDRESSES = 10_000  # addresses remembered at once (the oldest are forgotten first)


class FailedSignIns:
    """A sliding window of failed attempts (a wrong bearer token or a wrong password in the form) per address.

    Once an address is over the limit its attempts are refused without being checked until the window lets go:
    a right guess must not answer differently from a wrong one then. Valid session cookies still work (they are
    signed, so they cannot be guessed). Behind a reverse proxy every client has the proxy's address.
    """

    def __init__(self, clock: Clock, *, limit: int = LIMIT, window: float = WINDOW) -> None:
        self.clock = clock
        self.limit = limit
        self.window = window
        self._failures: OrderedDict[str, deque[float]] = OrderedDict()

    def retry_after(self, address: str) -> float | None:
        """Seconds until this address may try again, or None when it may now."""
        failures = self._recent(address)
        if len(failures) < self.limit:
            return None
        return max(0.0, failures[0] + self.window - self.clock.monotonic())

    def failed(self, address: str, how: str) -> None:
        failures = self._recent(address)
        failures.append(self.clock.monotonic())
        self._failures[address] = failures
        self._failures.move_to_end(address)
        while len(self._failures) > ADDRESSES:
            self._failures.popitem(last=False)
        if len(failures) < self.limit:
            log.warning("failed sign-in from %s (%s), %d within %.0f s", address, how, len(failures), self.window)
        else:
            log.warning("failed sign-in from %s (%s): %d within %.0f s, further attempts from there are refused "
                        "for %.0f s", address, how, len(failures), self.window, self.window)  # fmt: skip

    def _recent(self, address: str) -> deque[float]:
        failures = self._failures.get(address, deque())
        cutoff = self.clock.monotonic() - self.window
        while failures and failures[0] <= cutoff:
            failures.popleft()
        return failures
