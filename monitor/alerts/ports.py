"""What the alert path needs of storage, as small Protocols the store implements (monitor.store.Store).

The alert package depends on these, never on the store itself: the engine and the sender can run on anything
that keeps alert state and an outbox, and the store depends on the alert model, not the other way round.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any, Protocol

from monitor.alerts.model import Alert, AlertBatch, HeldItem, OutboxMessage, Outgoing, Silence


class AlertState(Protocol):
    """Alerts, their transitions and silences, kept across restarts."""

    def load(self, now: datetime, accounts: set[str] | None = None) -> list[Alert]: ...

    def last_success(self) -> dict[str, datetime]: ...

    def silences(self, now: datetime, *, include_ended: bool = False) -> list[Silence]: ...

    def save(self, batch: AlertBatch) -> None:
        """Raises monitor.alerts.model.BatchRejected when the data itself is refused, StorageError otherwise."""


class Outbox(Protocol):
    """Messages waiting for delivery, claimed by one process at a time."""

    def claim(
        self, node: str, now: datetime, hold: timedelta, *, busy: Collection[str] = (), skip: Collection[int] = (),
        limit: int = 50,
    ) -> tuple[list[OutboxMessage], set[str]]: ...  # fmt: skip

    def claimants(self, now: datetime) -> set[str]: ...

    def release_claims(self, nodes: Collection[str]) -> int: ...

    def record(self, states: Sequence[tuple[int, dict[str, Any]]]) -> None: ...

    def delivered(self, id_: int, now: datetime, fingerprints: Sequence[str]) -> None: ...

    def failed(self, id_: int, error: str, retry_at: datetime, fingerprints: Sequence[str]) -> None: ...

    def outbox_counts(self) -> dict[str, int]: ...

    def held_due(self, now: datetime) -> list[HeldItem]: ...

    def release_held(self, held: Sequence[int], summary: Outgoing | None, now: datetime) -> bool: ...


class StoredAlerts(AlertState, Outbox, Protocol):
    """The store's alert face (monitor.store: Store.alerts)."""


class Sample(Protocol):
    """One point of an account's equity series."""

    @property
    def at(self) -> datetime: ...

    @property
    def equity(self) -> Decimal: ...

    @property
    def high(self) -> Decimal: ...


class AlertStorage(Protocol):
    """What the engine and the sender are handed: the alert face, and the equity history drawdown peaks are
    seeded from."""

    @property
    def alerts(self) -> StoredAlerts: ...

    def equity_series(
        self, account: str, start: datetime, end: datetime, *, hourly: bool = False
    ) -> Sequence[Sample]: ...
