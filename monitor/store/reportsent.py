"""The once-only claim of a scheduled report: a row per report and period, inserted in the transaction that
queues the report's messages, so each period goes out once, whichever process renders it first."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Engine, Table, func, insert, select

from monitor.store import tables as t
from monitor.store.alertrows import NOTIFICATION
from monitor.store.errors import translated

SENT: Table = t.ReportSent.__table__  # type: ignore[attr-defined]


def claim(connection: Connection, report: str, due_at: datetime, period_start: datetime, node: str,
          now: datetime) -> bool:  # fmt: skip
    """Record that `node` sends `report` for the period ending at `due_at`; False when it is already recorded
    (sent before, or by another process). Run it in the transaction that queues the report's messages: the row
    and the messages are committed together or not at all. A conditional insert: it never raises on the
    duplicate, so the transaction stays usable (PostgreSQL aborts a transaction at a failed insert)."""
    values: dict[str, Any] = {"report": report, "due_at": due_at, "period_start": period_start,
                              "claimed_by": node, "claimed_at": now}  # fmt: skip
    if connection.dialect.name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert as pg_insert

        statement: Any = pg_insert(SENT).values(values).on_conflict_do_nothing(index_elements=["report", "due_at"])
    else:
        from sqlalchemy.dialects.sqlite import insert as sqlite_insert

        statement = sqlite_insert(SENT).values(values).on_conflict_do_nothing(index_elements=["report", "due_at"])
    # RETURNING, not rowcount: with an implicit RETURNING of the key, psycopg reports no row count.
    return connection.execute(statement.returning(SENT.c.id)).first() is not None


@translated
def queue(
    engine: Engine,
    report: str,
    due_at: datetime,
    period_start: datetime,
    node: str,
    now: datetime,
    messages: Sequence[tuple[str, str, str, str]],
) -> bool:
    """Claim the report's period and put its messages, (channel, title, chat body, email body) each, into the
    outbox, in one transaction; the sender delivers them like any message. False (nothing queued) when the
    period was claimed before, by this process or another."""
    with engine.begin() as connection:
        if not claim(connection, report, due_at, period_start, node, now):
            return False
        rows: list[dict[str, Any]] = [
            {"channel": channel, "account_id": None, "severity": None, "title": title[:400], "body": body,
             "body_long": body_long, "status": "queued", "delivered": [], "created_at": now, "next_attempt_at": now}
            for channel, title, body, body_long in messages
        ]  # fmt: skip
        if rows:
            connection.execute(insert(NOTIFICATION), rows)
    return True


@translated
def last_sent(engine: Engine, reports: Sequence[str] | None = None) -> dict[str, datetime]:
    """The due time of each report's last sent period (reports never sent are absent)."""
    last = select(SENT.c.report, func.max(SENT.c.due_at).label("due_at")).group_by(SENT.c.report)
    if reports is not None:
        last = last.where(SENT.c.report.in_(list(reports)))
    latest = last.subquery()
    # Joined back to the table: the rows' own column decodes the time (an aggregate loses its type on SQLite).
    query = select(SENT.c.report, SENT.c.due_at).join(
        latest, (SENT.c.report == latest.c.report) & (SENT.c.due_at == latest.c.due_at)
    )
    with engine.connect() as connection:
        return {report: due for report, due in connection.execute(query)}
