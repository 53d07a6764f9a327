"""One monitor process per SQLite database.

Two processes polling into one SQLite file would each judge every account and send every alert twice (SQLite
has no leases to split accounts by). The process that polls holds an exclusive OS lock (flock) on a file beside
the database, `<database>.lock`, whose content names the holder. The kernel drops the lock when the process
ends, however it ends, so a crash (even kill -9) never leaves a stale lock behind; the file itself may stay.
Read-only commands and silences do not take it.
"""

from __future__ import annotations

import fcntl
import os
import socket
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from monitor.store.engine import normalize_url


class DatabaseBusy(Exception):
    """Another process holds the database."""


@dataclass
class DatabaseLock:
    path: Path
    fd: int

    def release(self) -> None:
        if self.fd < 0:
            return
        os.ftruncate(self.fd, 0)  # nobody holds it now: the name would mislead
        fcntl.flock(self.fd, fcntl.LOCK_UN)
        os.close(self.fd)
        self.fd = -1


def lock_path(url: str) -> Path | None:
    """The lock file of a SQLite database file (None for PostgreSQL, where leases share the accounts, and for
    an in-memory SQLite database, which no other process can open)."""
    parsed = normalize_url(url)
    if parsed.get_backend_name() != "sqlite" or parsed.database in (None, "", ":memory:"):
        return None
    database = Path(parsed.database)
    return database.with_name(database.name + ".lock")


def hold(url: str, now: datetime, shown: str) -> DatabaseLock | None:
    """Take the database's lock for this process, or raise DatabaseBusy naming the holder (host, PID, since
    when). `shown` is the database as people see it. Returns None when there is nothing to lock. Raises
    OSError when the lock file cannot be created (the database's folder is missing or not writable)."""
    path = lock_path(url)
    if path is None:
        return None
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = os.pread(fd, 512, 0).decode(errors="replace").strip() or "a process that has not named itself yet"
        os.close(fd)
        raise DatabaseBusy(
            f"database {shown} is in use by another monitor ({holder}): one process per SQLite database, or "
            f"every alert goes out twice. Stop that one first, or give this one its own database_url "
            f"(lock file {path})"
        ) from None
    except BaseException:
        os.close(fd)
        raise
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"host {socket.gethostname()}, PID {os.getpid()}, since {now:%Y-%m-%d %H:%M:%S} UTC\n".encode(), 0)
    return DatabaseLock(path, fd)
