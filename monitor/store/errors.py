"""Telling the database being away from the database refusing the data."""

from __future__ import annotations

from sqlalchemy.exc import DataError, DBAPIError, IntegrityError, StatementError


def is_data_error(exc: BaseException) -> bool:
    """An error about the data itself (a constraint, a value the column refuses), as opposed to the database
    being unreachable, locked or not migrated: retrying the same batch would fail forever."""
    if isinstance(exc, IntegrityError | DataError | TypeError | ValueError):
        return True
    # A value refused before it reached the driver (our column types check what they bind).
    return isinstance(exc, StatementError) and not isinstance(exc, DBAPIError)
