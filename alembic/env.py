"""Alembic environment: the monitor's tables, and the URL handed over by monitor.store.migrations."""

from __future__ import annotations

import os

from alembic import context
from sqlalchemy import text
from sqlmodel import SQLModel

import monitor.store.tables  # noqa: F401  (registers the tables on SQLModel.metadata)
from monitor.store.engine import make_engine

MIGRATION_LOCK = 0x6269746D6F6E  # an arbitrary constant of this project ("bitmon")

config = context.config
url = config.attributes.get("url") or os.environ.get("MONITOR_DATABASE_URL", "sqlite:///monitor.db")
engine = make_engine(url)
try:
    with engine.connect() as connection:
        if connection.dialect.name == "postgresql":
            # Several processes may start together against one database: migrate one at a time. The lock
            # ends with the session.
            connection.execute(text("SELECT pg_advisory_lock(:key)"), {"key": MIGRATION_LOCK})
            connection.commit()
        context.configure(
            connection=connection,
            target_metadata=SQLModel.metadata,
            render_as_batch=True,  # SQLite alters tables by copying them
            compare_type=True,
        )
        with context.begin_transaction():
            context.run_migrations()
finally:
    engine.dispose()
