"""The task that sends scheduled reports while `run` runs.

It sleeps until the next report falls due (at most a minute, so a reload, a clock step or a database back from
an outage is noticed soon), asks the store which reports' current periods were sent already, and for each due
one gathers its data, renders it and queues its messages with the once-only claim in one transaction
(monitor.store.reportsent.queue): with several processes on one PostgreSQL database each may render a report, but
exactly one queues it. The sender delivers it like an alert message.

Channels: a report goes to its `channels` (the loader resolved them). It respects their quiet hours, being
never urgent: while any of its channels is in its quiet window the report is not queued; it goes out at the
first pass after the window ends if that is still within half its period (an hourly report inside a night's
quiet hours is skipped). It is not queued to wait in the outbox: there a message about no account would hold
back a critical portfolio alert on the same channel. It ignores a channel's `min_severity` (a report has no
severity; a channel that should not get reports is left out of the report's `channels`).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from datetime import datetime

from monitor.alerts.compose import quiet_until
from monitor.clock import Clock, wait_for_event
from monitor.config.model import Config, ReportConfig
from monitor.reports import schedule
from monitor.reports.render import ReportMessages, gather
from monitor.store.reportsent import last_sent, queue
from monitor.store.repository import Store

log = logging.getLogger(__name__)

LONGEST_SLEEP = 60.0  # seconds: a reload, a clock step or a database back from an outage is noticed this soon
RETRY = 30.0  # seconds before trying again after the database failed


class ReportScheduler:
    def __init__(
        self, config: Callable[[], Config], store: Store, clock: Clock, node: str, wake: Callable[[], None]
    ) -> None:
        self.config = config  # read on every pass: a reload takes effect at the next one
        self.store = store
        self.clock = clock
        self.node = node
        self.wake = wake  # the sender's: queued reports go out at once
        self._changed = asyncio.Event()
        self._waiting: set[str] = set()  # reports held back by quiet hours (logged once)
        self.sent = 0  # reports this process queued (the others were claimed by another process, or before)

    async def run(self) -> None:
        while True:
            try:
                await self.send_due()
                pause = self.pause(self.clock.now())
            except Exception as exc:  # the database away; the reports stay due and are tried again
                log.warning("scheduled reports not sent yet: %s", str(exc).strip() or type(exc).__name__)
                pause = RETRY
            await wait_for_event(self._changed, pause)
            self._changed.clear()

    def reloaded(self) -> None:
        """The configuration changed (a reload): look again now, a report may have been added or moved."""
        self._changed.set()

    def pause(self, now: datetime) -> float:
        """Seconds until the next due time, at most LONGEST_SLEEP (and at least a moment)."""
        following = schedule.next_check(self.config().reports, now)
        if following is None:
            return LONGEST_SLEEP
        return min(LONGEST_SLEEP, max(0.05, (following - now).total_seconds()))

    async def send_due(self) -> list[str]:
        """Queue every report due now that no process sent yet; returns the names this process queued."""
        config = self.config()
        if not config.reports:
            return []
        now = self.clock.now()
        names = [r.name for r in config.reports]
        sent = await asyncio.to_thread(last_sent, self.store.engine, names)
        queued = []
        for report, period in schedule.due_reports(config.reports, sent, now):
            quiet = [c for c in report.channels if c in config.channels and quiet_until(config.channels[c], now)]
            if quiet:
                if report.name not in self._waiting:
                    log.info("report %s waits for the quiet hours of %s to end", report.name, ", ".join(quiet))
                    self._waiting.add(report.name)
                continue
            self._waiting.discard(report.name)
            if await asyncio.to_thread(self._queue, config, report, period, now):
                queued.append(report.name)
                log.info("report %s for %s to %s queued for %s", report.name, period.start, period.end,
                         ", ".join(report.channels) or "no channel")  # fmt: skip
        if queued:
            self.sent += len(queued)
            self.wake()
        return queued

    def _queue(self, config: Config, report: ReportConfig, period: schedule.Period, now: datetime) -> bool:
        """Gather, render and queue one report (in a worker thread); False when another process claimed it, or
        when nothing at all was stored for the period (a first start: "equity 0.00, no data" for every account
        alarms and tells nothing). Either way the period counts as done."""
        model = gather(config, self.store, period.start, period.end, report)
        empty = all(a.no_data for a in model.accounts)
        rendered = ReportMessages(config.alerts.templates, config.web.public_url).render(model, report.timezone)
        channels = [] if empty else [c for c in report.channels if c in config.channels]
        messages = [(c, rendered.title, rendered.body, rendered.body_long) for c in channels]
        claimed = queue(self.store.engine, report.name, period.end, period.start, self.node, now, messages)
        if claimed and empty:
            log.info("report %s for %s to %s not sent: nothing was stored in that period", report.name,
                     period.start, period.end)  # fmt: skip
        return claimed and not empty
