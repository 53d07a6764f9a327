"""Confirming reads: a mark that makes an account worse than its alerts asks the poller to read the account at once
(`Poller.read_now`), and the account is held as read until that read comes: its alerts are judged from the read.
Without one within `confirm_timeout` (rate-limited, exchange down, the account unreadable), the account is judged
on the live estimate from the mark price until a read comes; a mark past a position's liquidation price is judged
on the estimate at once (the read is still asked for). monitor.live decides when to ask."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from monitor.poller.scheduler import Poller

log = logging.getLogger(__name__)


@dataclass(slots=True)
class Pending:
    asked: datetime  # a read of the account that began at or after this confirms
    estimated: bool = False  # judged on the live estimate meanwhile
    timer: asyncio.Task[None] | None = None


class ConfirmingReads:
    def __init__(
        self,
        poller: Poller,
        confirm_timeout: Callable[[], float],
        looked_at: Callable[[str], None],
        judge_estimate: Callable[[str], None],
    ) -> None:
        self.poller = poller
        self.confirm_timeout = confirm_timeout  # seconds, from the current configuration
        self._looked_at = looked_at  # settles the account's confirmation if its read has come
        self._judge_estimate = judge_estimate  # judges the account on the live estimate now
        self.asked = 0  # confirming reads asked for, since start (/metrics, through the read model)
        self.estimates = 0  # accounts judged on the live estimate for want of a read in time (/metrics)
        self._pending: dict[str, Pending] = {}

    def get(self, name: str) -> Pending | None:
        """The account's confirmation under way, if any."""
        return self._pending.get(name)

    def ask(self, name: str, now: datetime, *, at_once: bool) -> None:
        """Ask for a confirming read; `at_once`: judge on the estimate without waiting for it (past liquidation)."""
        pending = self._pending[name] = Pending(now)
        self.asked += 1
        if not self.poller.read_now(name):
            log.debug("%s: no confirming read possible (not polled by this process)", name)
        if at_once:
            self.estimate(name, pending)
        else:
            pending.timer = asyncio.get_running_loop().create_task(self._wait(name, pending), name=f"confirm {name}")

    async def _wait(self, name: str, pending: Pending) -> None:
        await asyncio.sleep(self.confirm_timeout())
        self._looked_at(name)
        if self._pending.get(name) is pending and not pending.estimated:
            self.estimate(name, pending)

    def estimate(self, name: str, pending: Pending) -> None:
        """Judge the account on the live estimate now, until a read comes."""
        pending.estimated = True
        self.estimates += 1
        log.warning("%s: no confirming read within %.1f s: judged on the mark price until a read comes", name,
                    self.confirm_timeout())  # fmt: skip
        self._judge_estimate(name)

    def settle(self, name: str) -> None:
        """Its read came (or the account is no longer watched here): no more waiting."""
        pending = self._pending.pop(name, None)
        if pending is not None and pending.timer is not None and pending.timer is not asyncio.current_task():
            pending.timer.cancel()

    def close(self) -> None:
        for pending in self._pending.values():
            if pending.timer is not None:
                pending.timer.cancel()
