"""The store boundary for errors: SQLAlchemy's and the drivers' errors become `StorageUnavailable` (the database
is away, locked, not migrated) or `DataRefused` (the data itself is refused) before they leave this package."""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, ParamSpec, TypeVar

from sqlalchemy.exc import DataError, DBAPIError, IntegrityError, SQLAlchemyError, StatementError

from monitor.errors import DataRefused, StorageError, StorageUnavailable

T = TypeVar("T")
P = ParamSpec("P")
R = TypeVar("R")


def is_data_error(exc: BaseException) -> bool:
    """An error about the data itself (a constraint, a value the column refuses), as opposed to the database
    being unreachable, locked or not migrated: retrying the same batch would fail forever."""
    if isinstance(exc, DataRefused | IntegrityError | DataError | TypeError | ValueError):
        return True
    # A value refused before it reached the driver (our column types check what they bind).
    return isinstance(exc, StatementError) and not isinstance(exc, DBAPIError)


def driver_text(exc: BaseException) -> str:
    """The driver's own message (SQLAlchemy wraps it, with the statement, in `orig`)."""
    return str(getattr(exc, "orig", None) or exc).strip()


def translate(exc: SQLAlchemyError) -> StorageError:
    text = driver_text(exc) or type(exc).__name__
    return DataRefused(text) if is_data_error(exc) else StorageUnavailable(text)


@contextmanager
def boundary() -> Iterator[None]:
    try:
        yield
    except SQLAlchemyError as exc:
        raise translate(exc) from exc


def translated(function: Callable[P, R]) -> Callable[P, R]:
    """A function of the store whose database errors leave as monitor.errors.StorageError (its callers know no
    SQLAlchemy)."""

    @functools.wraps(function)
    def call(*args: P.args, **kwargs: P.kwargs) -> R:
        with boundary():
            return function(*args, **kwargs)

    return call


def guarded(cls: type[T]) -> type[T]:
    """Every public method of `cls` translates SQLAlchemy's errors (the class is a face of the store)."""
    for name, member in list(vars(cls).items()):
        if name.startswith("_") or not inspect.isfunction(member):
            continue
        setattr(cls, name, _guard(member))
    return cls


def _guard(method: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(method)
    def call(*args: Any, **kwargs: Any) -> Any:
        try:
            return method(*args, **kwargs)
        except SQLAlchemyError as exc:
            raise translate(exc) from exc

    return call
