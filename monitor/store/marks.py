"""Stored marks for the odds of liquidation: after a restart, each symbol's mark history is seeded from the
positions' marks the database kept (one per stored position snapshot), so the odds need not wait for a new
history to build up."""

from __future__ import annotations

from collections import defaultdict
from datetime import datetime
from decimal import Decimal

from sqlalchemy import Engine, select

from monitor.store.errors import boundary
from monitor.store.history import POSITION

LIMIT = 200_000  # rows read at most (the newest): a day of 5-minute snapshots of hundreds of positions


def recent_marks(engine: Engine, since: datetime) -> dict[tuple[str, str], list[tuple[datetime, Decimal]]]:
    """Per (product type, symbol), the stored position marks taken at or after `since`, oldest first; raises
    monitor.errors.StorageError when the database cannot be read."""
    query = (
        select(POSITION.c.product_type, POSITION.c.symbol, POSITION.c.taken_at, POSITION.c.mark_price)
        .where(POSITION.c.taken_at >= since)
        .order_by(POSITION.c.taken_at.desc())
        .limit(LIMIT)
    )
    found: dict[tuple[str, str], list[tuple[datetime, Decimal]]] = defaultdict(list)
    with boundary(), engine.connect() as connection:
        for product_type, symbol, taken_at, mark in connection.execute(query):
            if mark is not None and mark > 0:
                found[(product_type, symbol)].append((taken_at, mark))
    for samples in found.values():
        samples.reverse()
    return dict(found)
