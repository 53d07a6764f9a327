"""What the rules see of the accounts the poller reads: the poller's readings (data), completed with what the
alert engine knows from the database (each account's last good data from before this process started) and
when this process began watching each account."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import datetime

from monitor.config.model import MonitorSettings
from monitor.domain import AccountSnapshot
from monitor.poller.state import Reading, Status
from monitor.rules.evaluate import AccountView


class AccountViews:
    def __init__(self, settings: Callable[[], MonitorSettings], last_success: Mapping[str, datetime]) -> None:
        self._settings = settings  # the current [monitor] settings (a reload replaces them)
        self._last_success = last_success  # the engine's, loaded from the database
        self._first_seen: dict[str, datetime] = {}
        # The snapshot to judge and whether it is an estimate from the mark price (monitor.live.LiveJudge); none:
        # the account as read.
        self.adjust: Callable[[Reading], tuple[AccountSnapshot | None, bool]] | None = None

    def watched_since(self, name: str, now: datetime) -> datetime:
        """When this process began watching the account (the first time it was judged)."""
        return self._first_seen.setdefault(name, now)

    def of(self, reading: Reading, now: datetime) -> AccountView:
        """The account as the rules see it. The reading's cadence is how often accounts are really read (longer
        than poll_interval while polling is behind): data that old is as fresh as it gets, and `unreachable`
        counts those intervals, so a stretched cycle neither holds every alert nor makes every account look
        unreachable."""
        m = self._settings()
        interval = reading.cadence or m.poll_interval
        snapshot, estimated = self.adjust(reading) if self.adjust is not None else (reading.snapshot, False)
        return AccountView(
            name=reading.name, tags=reading.tags, snapshot=snapshot, estimated=estimated,
            last_good_at=reading.last_good_at or self._last_success.get(reading.name),
            fresh=not reading.stale(now, interval, m.stale_grace), watched_since=self.watched_since(reading.name, now),
            poll_interval=interval, polled=reading.polls > 0, permanent_error=reading.status == Status.UNREACHABLE,
            error_code=reading.error_code, error_message=reading.error_message, key=reading.key,
            stalled=reading.stalled,
        )  # fmt: skip
