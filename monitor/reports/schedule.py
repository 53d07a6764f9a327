"""When a report is due: pure functions of (schedule, time zone, now).

A schedule's due times are local wall-clock times in its time zone ("daily 08:00" in Europe/Berlin is 07:00 UTC
in winter and 06:00 UTC in summer), so a day is 23 or 25 hours long across a daylight-saving change. A local
time that does not exist (02:30 on the spring change) is taken as the same offset as before the change, that is
an hour later on the clock (03:30); a local time that happens twice (02:30 on the autumn change) is its first
occurrence. "hourly" is every whole local hour, an hour apart in real time.

A report covers the period that ends at its due time and began at the due time before it. It is sent at its due
time, or, when the process was down then, when it starts, if that is still within half the period after the due
time; later than that it is skipped (the next one follows soon enough, and a stale "daily" report at 20:00 would
mislead). Whether it was already sent is stored (monitor.store.reportsent), never decided here.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from enum import StrEnum
from zoneinfo import ZoneInfo

from monitor.config.model import ReportConfig, ReportSchedule

HOUR = timedelta(hours=1)


class Reason(StrEnum):
    DUE = "due"  # send it now
    SENT = "already sent"  # the current period's report went out
    MISSED = "missed"  # more than half the period late: skipped, the next one is awaited


@dataclass(frozen=True, slots=True)
class Period:
    """The stretch a report covers, in UTC: from the due time before to its own due time."""

    start: datetime
    end: datetime  # the report's due time; with the report's name, the key that is never sent twice

    @property
    def length(self) -> timedelta:
        return self.end - self.start


@dataclass(frozen=True, slots=True)
class Decision:
    reason: Reason
    period: Period  # the current period: the one to send (DUE), or the one sent or missed
    next_due: datetime  # when the next report is due (UTC)


def current_due(schedule: ReportSchedule, tz: ZoneInfo, now: datetime) -> datetime:
    """The latest due time at or before `now` (aware); in UTC."""
    return _current(schedule, tz, now)[1]


def next_due(schedule: ReportSchedule, tz: ZoneInfo, now: datetime) -> datetime:
    """The first due time after `now` (aware); in UTC."""
    day, due = _current(schedule, tz, now)
    if day is None:
        return due + HOUR
    return _at(schedule, tz, day + _step(schedule))


def period(schedule: ReportSchedule, tz: ZoneInfo, due: datetime) -> Period:
    """The period a report due at `due` (one of the schedule's due times) covers."""
    return Period(current_due(schedule, tz, due - timedelta(microseconds=1)), due)


def decide(schedule: ReportSchedule, tz: ZoneInfo, now: datetime, last_sent: datetime | None) -> Decision:
    """Whether a report is to be sent now, and for which period.

    `last_sent` is the due time of the last report sent (None: never). Within half its period after the due
    time a report not yet sent is due (so one missed while the process was down goes out when it starts);
    later it is missed. Half the period is measured on the real length of the period that starts at the due
    time (11.5 h after a daily report due before a 23-hour day).
    """
    due = current_due(schedule, tz, now)
    following = next_due(schedule, tz, now)
    current = period(schedule, tz, due)
    if last_sent is not None and last_sent >= due:
        return Decision(Reason.SENT, current, following)
    if now - due > (following - due) / 2:
        return Decision(Reason.MISSED, current, following)
    return Decision(Reason.DUE, current, following)


def due_reports(
    reports: Sequence[ReportConfig], last_sent: Mapping[str, datetime], now: datetime
) -> list[tuple[ReportConfig, Period]]:
    """The reports to send now, each with the period it covers. `last_sent` maps report names to the due time
    of their last sent period (monitor.store.reportsent.last_sent); the claim decides who sends."""
    due = []
    for report in reports:
        decision = decide(report.schedule, report.timezone, now, last_sent.get(report.name))
        if decision.reason is Reason.DUE:
            due.append((report, decision.period))
    return due


def next_check(reports: Sequence[ReportConfig], now: datetime) -> datetime | None:
    """When the next report falls due (None without reports): a scheduler sleeps until then, or less."""
    return min((next_due(r.schedule, r.timezone, now) for r in reports), default=None)


def _current(schedule: ReportSchedule, tz: ZoneInfo, now: datetime) -> tuple[date | None, datetime]:
    """The latest due time at or before now, and its local day (None for hourly schedules)."""
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware")
    local = now.astimezone(tz)
    if schedule.kind == "hourly":
        # replace() keeps `fold`, so the second 02:00 of an autumn night is told from the first.
        return None, local.replace(minute=0, second=0, microsecond=0).astimezone(UTC)
    day = local.date()
    if schedule.kind == "weekly":
        day -= timedelta(days=(day.weekday() - schedule.weekday) % 7)
    due = _at(schedule, tz, day)
    while due > now:
        day -= _step(schedule)
        due = _at(schedule, tz, day)
    return day, due


def _at(schedule: ReportSchedule, tz: ZoneInfo, day: date) -> datetime:
    return datetime.combine(day, schedule.at, tzinfo=tz).astimezone(UTC)


def _step(schedule: ReportSchedule) -> timedelta:
    return timedelta(days=7 if schedule.kind == "weekly" else 1)
