"""Engines from database URLs: the only place that knows SQLite from PostgreSQL."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.engine.url import URL
from sqlalchemy.exc import ArgumentError

from monitor.errors import ConfigError

SQLITE_BUSY_TIMEOUT_MS = 5000
SUPPORTED = "sqlite:///path/to/monitor.db or postgresql://user:password@host:5432/dbname"


def normalize_url(url: str) -> URL:
    """`postgres://` and `postgresql://` mean psycopg 3, the driver we ship. Raises ConfigError, naming the
    scheme, for a URL that is not SQLite or PostgreSQL (a traceback about a missing MySQL driver helps nobody)."""
    try:
        parsed = make_url(url)
    except ArgumentError:
        scheme = url.split("://", 1)[0] if "://" in url else ""
        raise ConfigError(
            f"{scheme + ': ' if scheme else ''}not a database URL", key="database_url", hint=f"use {SUPPORTED}"
        ) from None
    if parsed.drivername in ("postgres", "postgresql"):
        parsed = parsed.set(drivername="postgresql+psycopg")
    backend = parsed.get_backend_name()
    if backend not in ("sqlite", "postgresql") or (backend == "postgresql" and parsed.get_driver_name() != "psycopg"):
        raise ConfigError(f"{parsed.drivername}:// is not supported", key="database_url",
                          hint=f"SQLite and PostgreSQL are: {SUPPORTED}")  # fmt: skip
    return parsed


def sqlite_file(url: str) -> Path | None:
    """The file of a SQLite database (relative paths as SQLite resolves them); None for PostgreSQL and in-memory
    SQLite."""
    parsed = normalize_url(url)
    if parsed.get_backend_name() != "sqlite" or parsed.database in (None, "", ":memory:"):
        return None
    return Path(parsed.database)


def missing_folder(url: str) -> Path | None:
    """The folder a SQLite database file would be in, when that folder does not exist (a typo, a volume not
    mounted): nothing could be stored there, not even the alert state."""
    file = sqlite_file(url)
    return None if file is None or file.parent.is_dir() else file.parent.resolve()


def make_engine(url: str, **options: Any) -> Engine:
    parsed = normalize_url(url)
    if parsed.get_backend_name() == "sqlite":
        # One long-running writer with readers (the web page): WAL lets readers go on while a write commits,
        # and the busy timeout makes a briefly locked database wait instead of failing.
        engine = create_engine(parsed, connect_args={"timeout": SQLITE_BUSY_TIMEOUT_MS / 1000}, **options)

        @event.listens_for(engine, "connect")
        def _pragmas(dbapi_connection: Any, _record: Any) -> None:
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
            cursor.execute("PRAGMA synchronous=NORMAL")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.close()

        return engine
    options.setdefault("pool_size", 5)
    options.setdefault("max_overflow", 5)
    options.setdefault("pool_pre_ping", True)  # a restarted server's dead connections are replaced
    options.setdefault("pool_recycle", 1800)
    # A server that does not answer must not hang a write, a lease renewal or shutdown for minutes: bounded
    # connects, statements, and dead-peer detection on idle pooled connections.
    options.setdefault(
        "connect_args",
        {
            "connect_timeout": 5,
            "options": "-c statement_timeout=30000",
            "keepalives": 1,
            "keepalives_idle": 10,
            "keepalives_interval": 5,
            "keepalives_count": 3,
            "tcp_user_timeout": 30000,
        },
    )
    return create_engine(parsed, **options)
