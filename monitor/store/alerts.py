"""Alert state and transitions in the database (with the outbox and silences, monitor.store.outbox and
monitor.store.silences, the store's alert face: Store.alerts).

Like the rest of the store these methods are synchronous, for a worker thread. An evaluation's changes are
written in one transaction: alerts, their transitions and the messages about them, so that a crash loses
none of them without the others.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Engine, and_, bindparam, insert, or_, select, update
from sqlalchemy.exc import SQLAlchemyError

from monitor.alerts.model import (
    RESOLVED_KEPT,
    Alert,
    AlertBatch,
    BatchRejected,
    State,
)
from monitor.errors import reason
from monitor.store.accounts import Accounts
from monitor.store.alertrows import ACCOUNT, ALERT, TRANSITION, alert_from_row, alert_row, enqueue
from monitor.store.errors import guarded, is_data_error, translate
from monitor.store.outbox import OutboxRows
from monitor.store.silences import SilenceRows
from monitor.store.snapshots import POLL


@guarded
class AlertStore(OutboxRows, SilenceRows):
    def __init__(self, engine: Engine, accounts: Accounts) -> None:
        self.engine = engine
        self.accounts = accounts

    def load(self, now: datetime, accounts: set[str] | None = None) -> list[Alert]:
        """Pending and firing alerts, and those resolved lately: the state evaluation continues from (of every
        account, or of these)."""
        query = (
            select(ALERT, ACCOUNT.c.name.label("account_name"))
            .outerjoin(ACCOUNT, ACCOUNT.c.id == ALERT.c.account_id)
            .where(
                or_(
                    ALERT.c.state.in_([State.PENDING, State.FIRING]),
                    and_(ALERT.c.state != State.INACTIVE, ALERT.c.resolved_at >= now - RESOLVED_KEPT),
                )
            )
        )
        if accounts is not None:
            query = query.where(ACCOUNT.c.name.in_(sorted(accounts)))
        with self.engine.connect() as connection:
            return [alert_from_row(row) for row in connection.execute(query)]

    def acknowledge(self, alert: Alert) -> bool:
        """Record an acknowledgement (its acknowledged_at/by/severity) on the alert's row; False when the alert
        has no row (yet)."""
        values = {"acknowledged_at": alert.acknowledged_at, "acknowledged_by": alert.acknowledged_by,
                  "acknowledged_severity": alert.acknowledged_severity}  # fmt: skip
        with self.engine.begin() as connection:
            result = connection.execute(update(ALERT).where(ALERT.c.key == alert.key).values(**values))
        return bool(result.rowcount)

    def last_success(self) -> dict[str, datetime]:
        """When each account last gave good data (also before this process started): the later of its row's
        last_success_at (written at most ACCOUNT_REFRESH apart while nothing else changes) and its latest
        successful poll row (kept for raw_retention)."""
        latest = (
            select(POLL.c.finished_at)
            .where(POLL.c.account_id == ACCOUNT.c.id, POLL.c.ok.is_(True))
            .order_by(POLL.c.started_at.desc())
            .limit(1)
            .scalar_subquery()
        )
        query = select(ACCOUNT.c.name, ACCOUNT.c.last_success_at, latest)
        with self.engine.connect() as connection:
            rows = connection.execute(query).all()
        return {name: max(t for t in times if t is not None) for name, *times in rows if any(times)}

    def save(self, batch: AlertBatch) -> None:
        """Write a batch in one transaction, each message with its delivery state; sets each message's `id`.
        Raises BatchRejected when the database refuses the data itself (retrying would fail forever); other
        errors mean the database is away. The caller hands in messages nobody changes meanwhile."""
        if not batch:
            return
        try:
            with self.engine.begin() as connection:
                names = {a.account for a in batch.alerts.values() if a.account}
                names |= {m.account for m in batch.messages if m.account}
                accounts = self.accounts.ids(connection, names, batch.at)
                ids = self._upsert(connection, list(batch.alerts.values()), accounts)
                transition_ids: dict[int, int] = {}  # id() of a Transition -> its row
                for tr in batch.transitions:
                    transition_ids[id(tr)] = connection.execute(
                        insert(TRANSITION).returning(TRANSITION.c.id),
                        {"alert_id": ids[tr.key], "at": tr.at, "from_state": tr.from_state, "to_state": tr.to_state,
                         "severity": tr.severity, "value": tr.value, "reason": tr.reason[:400]},
                    ).scalar_one()  # fmt: skip
                written = [
                    (message, enqueue(connection, message.outgoing, accounts, ids, transition_ids,
                                            message.created_at, message.state()))
                    for message in batch.messages
                ]  # fmt: skip
        except SQLAlchemyError as exc:
            error = translate(exc)
            if is_data_error(exc):
                raise BatchRejected(reason(error)) from exc
            raise error from exc
        for message, id_ in written:  # only once committed
            message.id = id_

    def _upsert(self, connection: Connection, alerts: list[Alert], accounts: dict[str, int]) -> dict[str, int]:
        keys = [a.key for a in alerts]
        ids = dict(connection.execute(select(ALERT.c.key, ALERT.c.id).where(ALERT.c.key.in_(keys))).all())
        rows = [alert_row(a, accounts) for a in alerts]
        old = [{**r, "_key": r["key"]} for r in rows if r["key"] in ids]
        new = [r for r in rows if r["key"] not in ids]
        if new:
            connection.execute(insert(ALERT), new)
            added = select(ALERT.c.key, ALERT.c.id).where(ALERT.c.key.in_([r["key"] for r in new]))
            ids.update(connection.execute(added).all())
        if old:
            values: dict[str, Any] = {k: bindparam(k) for k in old[0] if k not in ("_key", "key")}
            connection.execute(update(ALERT).where(ALERT.c.key == bindparam("_key")).values(values), old)
        return ids
