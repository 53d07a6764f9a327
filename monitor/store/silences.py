"""Silences in the database: added and removed by the CLI, read by the alert engine and the page."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Engine, insert, select, update

from monitor.alerts.model import Silence
from monitor.store.alertrows import SILENCE
from monitor.store.errors import guarded


@guarded
class SilenceRows:
    engine: Engine

    def add_silence(
        self, account: str, rule: str | None, symbol: str | None, starts: datetime, ends: datetime, reason: str
    ) -> int:
        with self.engine.begin() as connection:
            return int(
                connection.execute(
                    insert(SILENCE).returning(SILENCE.c.id),
                    {
                        "account": account,
                        "rule": rule,
                        "symbol": symbol,
                        "starts_at": starts,
                        "ends_at": ends,
                        "reason": reason[:1000],
                        "created_at": starts,
                    },
                ).scalar_one()
            )

    def silences(self, now: datetime, *, include_ended: bool = False) -> list[Silence]:
        query = select(SILENCE).order_by(SILENCE.c.id)
        if not include_ended:
            query = query.where(SILENCE.c.removed_at.is_(None), SILENCE.c.ends_at > now)
        with self.engine.connect() as connection:
            return [Silence(**row._mapping) for row in connection.execute(query)]

    def remove_silence(self, id_: int, now: datetime) -> bool:
        with self.engine.begin() as connection:
            result = connection.execute(
                update(SILENCE).where(SILENCE.c.id == id_, SILENCE.c.removed_at.is_(None)).values(removed_at=now)
            )
        return bool(result.rowcount)
