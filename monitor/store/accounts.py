"""Accounts in the database: their ids (cached once committed) and what the accounts file says of each."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

from sqlalchemy import Connection, Engine, Table, bindparam, insert, select, update

from monitor.config.model import AccountConfig
from monitor.store import tables as t

ACCOUNT: Table = t.Account.__table__  # type: ignore[attr-defined]


class Accounts:
    def __init__(self) -> None:
        self._ids: dict[str, int] = {}

    def register(self, engine: Engine, accounts: Iterable[AccountConfig], now: datetime) -> None:
        """Create missing account rows and refresh what the accounts file says about each."""
        accounts = list(accounts)
        with engine.begin() as connection:
            ids = self.ids(connection, [a.name for a in accounts], now)
            connection.execute(
                update(ACCOUNT).where(ACCOUNT.c.id == bindparam("_id")),
                [{"_id": ids[a.name], "demo": a.demo, "tags": list(a.tags)} for a in accounts],
            )
        self.remember(ids)

    def ids(self, connection: Connection, names: Iterable[str], now: datetime) -> dict[str, int]:
        """Ids for these account names, creating rows as needed (inside the caller's transaction). Cached only
        once the caller commits (`remember`)."""
        wanted = set(names)
        ids = {name: self._ids[name] for name in wanted if name in self._ids}
        missing = wanted - ids.keys()
        if missing:
            rows = connection.execute(select(ACCOUNT.c.name, ACCOUNT.c.id).where(ACCOUNT.c.name.in_(missing)))
            ids.update({name: id_ for name, id_ in rows})
            new = sorted(missing - ids.keys())
            if new:
                connection.execute(
                    insert(ACCOUNT),
                    [
                        {"name": n, "demo": False, "tags": [], "permissions": [], "ips": [], "created_at": now}
                        for n in new
                    ],
                )
                rows = connection.execute(select(ACCOUNT.c.name, ACCOUNT.c.id).where(ACCOUNT.c.name.in_(new)))
                ids.update({name: id_ for name, id_ in rows})
        return ids

    def remember(self, ids: dict[str, int]) -> None:
        self._ids.update(ids)
