"""Alembic environment: the monitor's tables, and the URL handed over by monitor.store.migrations."""

from __future__ import annotations

import os

from alembic import context
from sqlmodel import SQLModel

import monitor.store.tables  # noqa: F401  (registers the tables on SQLModel.metadata)
from monitor.store.engine import make_engine

config = context.config
url = config.attributes.get("url") or os.environ.get("MONITOR_DATABASE_URL", "sqlite:///monitor.db")
engine = make_engine(url)
try:
    with engine.connect() as connection:
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
