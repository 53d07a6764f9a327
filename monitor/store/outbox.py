"""The notification outbox in the database: claims (one process delivers a message), delivery records, held
messages (quiet hours) and their summaries."""

from __future__ import annotations

from collections.abc import Collection, Sequence
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Engine, and_, func, or_, select, update

from monitor.alerts.model import HeldItem, OutboxMessage, Outgoing, State
from monitor.store.alertrows import ACCOUNT, ALERT, ITEM, NOTIFICATION, alert_from_row, enqueue, outbox_from_row
from monitor.store.errors import guarded


@guarded
class OutboxRows:
    engine: Engine

    def claim(
        self, node: str, now: datetime, hold: timedelta, *, busy: Collection[str] = (), skip: Collection[int] = (),
        limit: int = 50,
    ) -> tuple[list[OutboxMessage], set[str]]:  # fmt: skip
        """The oldest due message of each channel not `busy` (at most one per channel: a crash repeats at most
        one message per channel), claimed for `hold` by this node with a conditional update, so two senders
        never deliver one row at once. A message waiting to be retried holds back the later messages of its
        channel about the same account (they arrive in order), not the other accounts'. Rows in `skip` are
        left alone (their delivery state is in memory, being written). Returns the claimed messages and every
        channel that had one due (claimed or not)."""
        free = or_(NOTIFICATION.c.claimed_until.is_(None), NOTIFICATION.c.claimed_until < now)
        due = and_(NOTIFICATION.c.status == "queued", NOTIFICATION.c.next_attempt_at <= now, free)
        heads = (
            select(func.min(NOTIFICATION.c.id).label("id"))
            .where(NOTIFICATION.c.status == "queued")
            .group_by(NOTIFICATION.c.channel, NOTIFICATION.c.account_id)
            .subquery()
        )
        claimed: list[int] = []
        channels: set[str] = set()
        taken = set(busy)
        with self.engine.begin() as connection:
            candidates = connection.execute(
                select(NOTIFICATION.c.id, NOTIFICATION.c.channel)
                .where(NOTIFICATION.c.id.in_(select(heads.c.id)), due)
                .order_by(NOTIFICATION.c.id)
            ).all()  # fmt: skip
            for id_, channel in candidates:
                if id_ in skip:
                    continue
                channels.add(channel)
                if channel in taken or len(claimed) >= limit:
                    continue
                result = connection.execute(
                    update(NOTIFICATION).where(NOTIFICATION.c.id == id_, due)
                    .values(claimed_by=node, claimed_until=now + hold)
                )  # fmt: skip
                if result.rowcount == 1:
                    claimed.append(id_)
                    taken.add(channel)
        return (self.outbox(ids=claimed) if claimed else []), channels

    def claimants(self, now: datetime) -> set[str]:
        """The nodes holding claims on queued messages now."""
        query = (
            select(NOTIFICATION.c.claimed_by)
            .distinct()
            .where(NOTIFICATION.c.status == "queued", NOTIFICATION.c.claimed_until >= now)
        )
        with self.engine.connect() as connection:
            return {str(c) for c in connection.execute(query).scalars() if c is not None}

    def release_claims(self, nodes: Collection[str]) -> int:
        """Give up the claims of these (dead) nodes: their messages are due again at once."""
        with self.engine.begin() as connection:
            result = connection.execute(
                update(NOTIFICATION)
                .where(NOTIFICATION.c.claimed_by.in_(sorted(nodes)), NOTIFICATION.c.status == "queued")
                .values(claimed_by=None, claimed_until=None)
            )
        return int(result.rowcount)

    def record(self, states: Sequence[tuple[int, dict[str, Any]]]) -> None:
        """Write the delivery state of messages delivered from memory (and drop this node's claim on them)."""
        with self.engine.begin() as connection:
            for id_, state in states:
                values = {**state, "claimed_by": None, "claimed_until": None}
                connection.execute(update(NOTIFICATION).where(NOTIFICATION.c.id == id_).values(values))

    def delivered(self, id_: int, now: datetime, fingerprints: Sequence[str]) -> None:
        with self.engine.begin() as connection:
            connection.execute(
                update(NOTIFICATION)
                .where(NOTIFICATION.c.id == id_)
                .values(
                    status="sent",
                    sent_at=now,
                    delivered=list(fingerprints),
                    claimed_by=None,
                    claimed_until=None,
                    attempts=NOTIFICATION.c.attempts + 1,
                    last_error=None,
                )
            )

    def failed(self, id_: int, error: str, retry_at: datetime, fingerprints: Sequence[str]) -> None:
        """A delivery failed for some URLs: remember which got it, and try the others again at `retry_at`."""
        with self.engine.begin() as connection:
            connection.execute(
                update(NOTIFICATION)
                .where(NOTIFICATION.c.id == id_)
                .values(
                    delivered=list(fingerprints),
                    last_error=error[:2000],
                    next_attempt_at=retry_at,
                    attempts=NOTIFICATION.c.attempts + 1,
                    claimed_by=None,
                    claimed_until=None,
                )
            )

    def outbox(
        self, *, ids: Sequence[int] | None = None, account: str | None = None, limit: int = 100, failing: bool = False
    ) -> list[OutboxMessage]:
        """Messages, newest first (or exactly `ids`); `failing`: only queued ones whose last attempt failed."""
        query = select(NOTIFICATION, ACCOUNT.c.name.label("account_name")).outerjoin(
            ACCOUNT, ACCOUNT.c.id == NOTIFICATION.c.account_id
        )
        if ids is not None:
            query = query.where(NOTIFICATION.c.id.in_(list(ids))).order_by(NOTIFICATION.c.id)
        else:
            query = query.order_by(NOTIFICATION.c.id.desc()).limit(limit)
            if account is not None:
                query = query.where(ACCOUNT.c.name == account)
            if failing:
                query = query.where(NOTIFICATION.c.status == "queued", NOTIFICATION.c.last_error.is_not(None))
        with self.engine.connect() as connection:
            return [outbox_from_row(row) for row in connection.execute(query)]

    def outbox_counts(self) -> dict[str, int]:
        """Messages by status, and `failing`: queued ones whose last attempt failed."""
        with self.engine.connect() as connection:
            counts = dict(
                connection.execute(select(NOTIFICATION.c.status, func.count()).group_by(NOTIFICATION.c.status)).all()
            )
            counts["failing"] = connection.execute(
                select(func.count()).where(NOTIFICATION.c.status == "queued", NOTIFICATION.c.last_error.is_not(None))
            ).scalar_one()
        return {str(k): int(v) for k, v in counts.items()}

    def held_due(self, now: datetime) -> list[HeldItem]:
        """Items of held messages whose quiet window has ended, with their alerts as they are now."""
        query = (
            select(
                ITEM.c.notification_id,
                ITEM.c.state.label("announced"),
                NOTIFICATION.c.channel,
                ALERT,
                ACCOUNT.c.name.label("account_name"),
            )
            .join(NOTIFICATION, NOTIFICATION.c.id == ITEM.c.notification_id)
            .join(ALERT, ALERT.c.id == ITEM.c.alert_id)
            .outerjoin(ACCOUNT, ACCOUNT.c.id == ALERT.c.account_id)
            .where(NOTIFICATION.c.status == "held", NOTIFICATION.c.held_until <= now)
        )
        with self.engine.connect() as connection:
            return [
                HeldItem(r.notification_id, r.channel, State(r.announced), alert_from_row(r))
                for r in connection.execute(query)
            ]

    def release_held(self, held: Sequence[int], summary: Outgoing | None, now: datetime) -> bool:
        """Replace held messages by one summary (or drop them when nothing is relevant any more). False when
        another process released them first."""
        with self.engine.begin() as connection:
            summary_id = None
            if summary is not None:
                ids = dict(
                    connection.execute(
                        select(ALERT.c.key, ALERT.c.id).where(ALERT.c.key.in_([i.alert.key for i in summary.items]))
                    ).all()
                )
                summary_id = enqueue(connection, summary, {}, ids, {}, now)
            result = connection.execute(
                update(NOTIFICATION)
                .where(NOTIFICATION.c.id.in_(list(held)), NOTIFICATION.c.status == "held")
                .values(status="merged" if summary_id else "dropped", merged_into=summary_id)
            )
            if result.rowcount != len(held):
                connection.rollback()
                return False
        return True
