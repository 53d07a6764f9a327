"""Column types that keep values exact on every database: Decimal money and UTC times."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import DateTime, Dialect, Numeric, String
from sqlalchemy.types import TypeDecorator, TypeEngine


def exact(value: Any) -> Decimal | None:
    """Money as a database takes it: None or a finite Decimal; anything else is a TypeError."""
    if value is None or (isinstance(value, Decimal) and value.is_finite()):
        return value
    raise TypeError(f"expected a finite Decimal, got {value!r}")


def exact_text(value: Any) -> str | None:
    """Money as SQLite stores it: its canonical text."""
    checked = exact(value)
    return None if checked is None else format(checked, "f")


class ExactDecimal(TypeDecorator[Decimal]):
    """A Decimal that comes back exactly as it went in.

    PostgreSQL's NUMERIC (no fixed scale) is exact. SQLite has no exact decimal type (its NUMERIC affinity
    turns values into floats), so there the value is stored as its canonical text. Aggregates over money are
    therefore computed in Python, never in SQL.
    """

    impl = Numeric
    cache_ok = True

    def load_dialect_impl(self, dialect: Dialect) -> TypeEngine[Any]:
        if dialect.name == "sqlite":
            return dialect.type_descriptor(String(64))
        return dialect.type_descriptor(Numeric(asdecimal=True))

    def process_bind_param(self, value: Decimal | None, dialect: Dialect) -> Any:
        return self.direct_processor(dialect)(value)

    @staticmethod
    def direct_processor(dialect: Dialect) -> Callable[[Any], Any]:
        """The whole bind conversion as one function (neither impl has a processor of its own to chain), for
        bulk writes that convert each value themselves (monitor.store.bulk)."""
        return exact_text if dialect.name == "sqlite" else exact

    def process_result_value(self, value: Any, dialect: Dialect) -> Decimal | None:
        return None if value is None else Decimal(str(value)) if not isinstance(value, Decimal) else value


class UTCDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC in, timezone-aware UTC out; naive datetimes are refused."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> Any:
        if value is None:
            return None
        if value.tzinfo is None:
            raise TypeError(f"naive datetime {value!r}: times must be timezone-aware UTC")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
