"""The spool: a small local file that remembers the alert changes the database has not taken yet, so a crash
(`kill -9`) during a database outage does not forget what was announced, and a process started while the
database is away still knows its last alert state and judges and warns.

Write-ahead and append-only: every batch of alert changes is appended (and fsynced, once per batch) before the
database is asked to take it; a message's delivery state is appended as it changes while it lives in memory;
once the database has taken a batch a `written` record says so (the spool's records up to it are in the
database). Replaying the file gives the last known version of each alert (all of them: the database's copy as
well as changes it has not taken) and the transitions and messages still unwritten, with their delivery state.

Each line is `<crc32 hex> <json>`, the JSON carrying a version; a line whose checksum or version does not match
(the torn last line of a crash) is skipped with a log line. The file is rewritten (a new file fsynced, then
renamed over the old) with just the current state when it grows past a bound. One process uses one spool: a
second one on the same file runs without it (logged). What the records say of alerts and messages, and how they
are read back, is in records.py.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import logging
import os
import weakref
import zlib
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import IO, Any

from monitor.alerts.model import Alert, AlertBatch, Item, Outgoing, Queued, Transition
from monitor.alerts.records import alert_from, apply_state, message_from, transition_from

log = logging.getLogger(__name__)

VERSION = 1
MAX_BYTES = 16 * 1024 * 1024  # rewritten with only the current state past this size


def spool_path(database_url: str, state_dir: str = "") -> Path:
    """The spool of this database: `<state_dir>/alerts-<hash of the URL>.spool`; without a state_dir, beside
    a SQLite database file, else in $XDG_STATE_HOME (~/.local/state)/bitget-monitor."""
    digest = hashlib.sha256(database_url.encode()).hexdigest()[:12]
    name = f"alerts-{digest}.spool"
    if state_dir:
        return Path(state_dir).expanduser() / name
    scheme, _, rest = database_url.partition(":///")
    if scheme.startswith("sqlite") and rest and not rest.startswith(":memory:"):
        database = Path(rest.partition("?")[0])
        return database.with_name(database.name + ".spool")
    base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(base) / "bitget-monitor" / name


@dataclass
class Restored:
    """What the spool knew: the last version of every alert, and the changes the database had not taken."""

    known: dict[str, Alert]
    unwritten: AlertBatch
    messages: dict[int, Queued] = field(default_factory=dict)  # by their record number
    last: int = 0  # the last record number used


def encode(record: dict[str, Any]) -> bytes:
    text = json.dumps({"v": VERSION, **record}, separators=(",", ":"), ensure_ascii=False).encode()
    return b"%08x %s\n" % (zlib.crc32(text), text)


def decode(line: bytes) -> dict[str, Any] | None:
    """A line's record, or None when it is torn or foreign."""
    crc, _, text = line.rstrip(b"\n").partition(b" ")
    try:
        if int(crc, 16) != zlib.crc32(text):
            return None
        record = json.loads(text)
    except ValueError:
        return None
    return record if isinstance(record, dict) and record.get("v") == VERSION else None


class Spool:
    def __init__(self, path: Path, max_bytes: int = MAX_BYTES) -> None:
        self.path = path
        self.max_bytes = max_bytes
        self._file: IO[bytes] | None = None
        self._closer: weakref.finalize[Any, Any] | None = None  # a spool nobody closed closes its file when collected
        self.n = 0  # the last record number written
        self.broken = False  # the spool could not be used (logged); the monitor goes on without it

    def _open(self) -> IO[bytes] | None:
        if self._file is None and not self.broken:
            try:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                file = open(self.path, "ab")  # noqa: SIM115 (held open for the process's life)
                try:
                    fcntl.flock(file, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except OSError:
                    file.close()
                    raise OSError(f"{self.path} is in use by another process") from None
                self._hold(file)
            except OSError as exc:
                self.broken = True
                log.error("alert spool %s unusable (%s): a crash during a database outage may repeat alerts",
                          self.path, exc)  # fmt: skip
        return self._file

    def exists(self) -> bool:
        return self.path.exists()

    def load(self) -> Restored | None:
        """Replay the file (None: there is none, or another process holds it)."""
        if not self.exists() or self._open() is None:
            return None
        known: dict[str, tuple[int, Alert]] = {}
        transitions: list[tuple[int, Transition]] = []
        messages: dict[int, Queued] = {}
        upto = 0
        with open(self.path, "rb") as file:
            for number, line in enumerate(file, 1):
                record = decode(line)
                if record is None:
                    log.warning("alert spool %s line %d is torn or unreadable: skipped", self.path, number)
                    continue
                try:
                    n = int(record["n"])
                    self.n = max(self.n, n)
                    kind = record["t"]
                    if kind == "alert":
                        known[record["d"]["key"]] = (n, alert_from(record["d"]))
                    elif kind == "transition":
                        transitions.append((n, transition_from(record["d"])))
                    elif kind == "message":
                        messages[n] = message_from(record["d"])
                    elif kind == "state" and int(record["m"]) in messages:
                        apply_state(messages[int(record["m"])], record["d"])
                    elif kind == "written":
                        upto = max(upto, int(record["upto"]))
                except (KeyError, TypeError, ValueError) as exc:
                    log.warning("alert spool %s line %d not understood (%s): skipped", self.path, number, exc)
        batch = AlertBatch(
            max((a.updated_at for _, a in known.values()), default=datetime.fromtimestamp(0).astimezone())
        )
        batch.alerts = {k: a for k, (n, a) in known.items() if n > upto}
        same = {t: t for n, t in transitions if n > upto}  # items refer to the batch's own transition objects
        batch.transitions = list(same)
        unwritten = {n: m for n, m in messages.items() if n > upto}
        for m in unwritten.values():
            items = tuple(
                Item(i.alert, i.reason, i.rule_type, same.get(i.transition, i.transition) if i.transition else None)
                for i in m.outgoing.items
            )
            m.outgoing = Outgoing(m.outgoing.channel, m.outgoing.account, m.outgoing.severity, m.outgoing.message,
                                  items, m.outgoing.held_until)  # fmt: skip
            for i in items:  # a message's rows refer to its alerts: written with it
                batch.alerts.setdefault(i.alert.key, known[i.alert.key][1] if i.alert.key in known else i.alert)
        batch.messages = list(unwritten.values())
        return Restored({k: a for k, (_, a) in known.items()}, batch, unwritten, self.n)

    def _number(self, records: Iterable[dict[str, Any]], numbers: list[int]) -> bytes:
        data = b""
        for record in records:
            self.n += 1
            numbers.append(self.n)
            data += encode({**record, "n": self.n, "m": record.get("m", self.n)})
        return data

    def append(self, records: Iterable[dict[str, Any]]) -> list[int]:
        """Append records (numbered here) and fsync once; returns their numbers. A failure is logged."""
        file = self._open()
        numbers: list[int] = []
        data = self._number(records, numbers)
        if file is None or not data:
            return numbers
        try:
            file.write(data)
            file.flush()
            os.fsync(file.fileno())
        except OSError as exc:
            log.error("alert spool %s not written (%s)", self.path, exc)
        return numbers

    @property
    def size(self) -> int:
        return self._file.tell() if self._file is not None else 0

    def rewrite(self, records: Iterable[dict[str, Any]]) -> list[int]:
        """Replace the file by these records alone (the current state), atomically; returns their numbers."""
        file = self._open()
        numbers: list[int] = []
        data = self._number(records, numbers)
        if file is None:
            return numbers
        temporary = self.path.with_name(self.path.name + ".new")
        try:
            with open(temporary, "wb") as new:
                new.write(data)
                new.flush()
                os.fsync(new.fileno())
            replacement = open(temporary, "ab")  # noqa: SIM115
            fcntl.flock(replacement, fcntl.LOCK_EX | fcntl.LOCK_NB)
            os.replace(temporary, self.path)
            self._hold(replacement)
            directory = os.open(self.path.parent, os.O_RDONLY)
            try:
                os.fsync(directory)
            finally:
                os.close(directory)
        except OSError as exc:
            log.error("alert spool %s not compacted (%s)", self.path, exc)
        return numbers

    def _hold(self, file: IO[bytes]) -> None:
        if self._closer is not None:
            self._closer()
        self._file = file
        self._closer = weakref.finalize(self, file.close)

    def close(self) -> None:
        if self._closer is not None:
            self._closer()
        self._file = self._closer = None
