"""Sharing accounts among several `run` processes on one database.

Each process heartbeats; the accounts are split evenly among live processes. A process claims an account with
a conditional update (only a free or expired lease changes hands, so two processes never hold the same one),
renews its leases while it runs, and gives back what exceeds its share when another process joins. A dead
process's leases expire after the TTL and are claimed by the others.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta

from sqlalchemy import Engine, Table, func, insert, or_, select, update
from sqlalchemy.exc import IntegrityError

from monitor.store import tables as t

NODE: Table = t.Node.__table__  # type: ignore[attr-defined]
LEASE: Table = t.Lease.__table__  # type: ignore[attr-defined]
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def claim(engine: Engine, node: str, accounts: Iterable[str], now: datetime, ttl: timedelta) -> set[str]:
    """Heartbeat, renew this node's leases, give back what exceeds its fair share and claim free accounts up
    to it. Returns the accounts this node holds now."""
    names = sorted(set(accounts))
    _ensure_rows(engine, node, names, now)
    until = now + ttl
    with engine.begin() as connection:
        connection.execute(update(NODE).where(NODE.c.name == node).values(heartbeat_at=now))
        live = connection.execute(
            select(func.count()).select_from(NODE).where(NODE.c.heartbeat_at > now - ttl)
        ).scalar()
        share = math.ceil(len(names) / max(1, live or 1))
        mine = LEASE.c.owner == node
        connection.execute(
            update(LEASE).where(mine, LEASE.c.account.in_(names), LEASE.c.expires_at > now).values(expires_at=until)
        )
        owned = sorted(connection.execute(
            select(LEASE.c.account).where(mine, LEASE.c.account.in_(names), LEASE.c.expires_at > now)
        ).scalars())  # fmt: skip
        if len(owned) > share:
            extra = owned[share:]
            connection.execute(
                update(LEASE).where(mine, LEASE.c.account.in_(extra)).values(owner=None, expires_at=_EPOCH)
            )
            owned = owned[:share]
        free = LEASE.c.account.in_(names) & or_(LEASE.c.owner.is_(None), LEASE.c.expires_at <= now)
        for account in connection.execute(select(LEASE.c.account).where(free).order_by(LEASE.c.account)).scalars():
            if len(owned) >= share:
                break
            won = connection.execute(
                update(LEASE).where(LEASE.c.account == account, or_(LEASE.c.owner.is_(None), LEASE.c.expires_at <= now))
                .values(owner=node, expires_at=until)
            ).rowcount  # fmt: skip
            if won:
                owned.append(account)
    return set(owned)


def release(engine: Engine, node: str, now: datetime) -> None:
    """On a clean shutdown: hand every lease back at once and stop counting as a live node."""
    with engine.begin() as connection:
        connection.execute(update(LEASE).where(LEASE.c.owner == node).values(owner=None, expires_at=_EPOCH))
        connection.execute(update(NODE).where(NODE.c.name == node).values(heartbeat_at=_EPOCH))


def _ensure_rows(engine: Engine, node: str, names: list[str], now: datetime) -> None:
    """Lease rows for every account and a node row for this process; another process may race us to them."""
    with engine.connect() as connection:
        have = set(connection.execute(select(LEASE.c.account).where(LEASE.c.account.in_(names))).scalars())
        node_known = connection.execute(select(NODE.c.name).where(NODE.c.name == node)).first() is not None
    for table, rows in (
        (LEASE, [{"account": n, "owner": None, "expires_at": _EPOCH} for n in names if n not in have]),
        (NODE, [] if node_known else [{"name": node, "heartbeat_at": now, "started_at": now}]),
    ):
        for row in rows:
            try:
                with engine.begin() as connection:
                    connection.execute(insert(table), [row])
            except IntegrityError:
                pass  # created meanwhile by another process
