"""Alembic, driven by the monitor's own database URL: upgrade, downgrade, current revision."""

from __future__ import annotations

import sys
import threading
from pathlib import Path

from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory

from alembic import command
from monitor.store.engine import make_engine
from monitor.store.errors import boundary


def _migrations_dir() -> Path:
    """alembic/ of the source tree, or where an installed wheel put it (<prefix>/share/bitget-monitor)."""
    source = Path(__file__).resolve().parents[2] / "alembic"
    if (source / "env.py").exists():
        return source
    return Path(sys.prefix) / "share" / "bitget-monitor" / "alembic"


MIGRATIONS_DIR = _migrations_dir()


def alembic_config(url: str) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    # Passed as an attribute, not an option: options go through configparser interpolation, and a URL
    # password may hold a "%".
    config.attributes["url"] = url
    return config


# Alembic keeps its running context in module globals: one command at a time per process. (Processes are
# serialised by a database lock in env.py.)
_ALEMBIC = threading.Lock()


def upgrade(url: str, revision: str = "head") -> None:
    with _ALEMBIC, boundary():
        command.upgrade(alembic_config(url), revision)


def downgrade(url: str, revision: str) -> None:
    with _ALEMBIC, boundary():
        command.downgrade(alembic_config(url), revision)


def current(url: str) -> str | None:
    engine = make_engine(url)
    try:
        with boundary(), engine.connect() as connection:
            return MigrationContext.configure(connection).get_current_revision()
    finally:
        engine.dispose()


def head() -> str | None:
    return ScriptDirectory.from_config(alembic_config("")).get_current_head()
