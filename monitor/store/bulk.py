"""Bulk writes the fastest way each driver has: COPY and array UPDATEs on PostgreSQL (psycopg used directly),
one prepared executemany on SQLite. Values still go through their columns' types, and text is fitted to its
column (clipped, without NUL characters) so one long exchange string never fails a whole write."""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from sqlalchemy import Connection, Dialect, Table, bindparam, insert, update
from sqlalchemy.exc import DBAPIError

from monitor.store.types import ExactDecimal, UTCDateTime

CHUNK = 500  # rows converted at a time: a COPY sends one chunk while the server parses the one before


def insert_many(connection: Connection, table: Table, rows: list[dict[str, Any]]) -> None:
    """Insert rows (all with the same keys) the fastest way the driver has: COPY on PostgreSQL, one prepared
    executemany on SQLite. Values still go through their columns' types (ExactDecimal, UTCDateTime), so they
    are checked and stored exactly as a Core insert would store them; only the per-row statement machinery is
    skipped, which was most of the time of a cycle's write."""
    if connection.dialect.name == "postgresql":
        names = list(rows[0])
        with _driver_errors(f"COPY {table.name}"):  # converted as they are sent: the server parses meanwhile
            _copy(connection, table.name, names, _driver_values(connection, table, names, rows))
        return
    text, order = _insert_statement(table, tuple(rows[0]), connection.dialect)
    connection.exec_driver_sql(text, list(_driver_values(connection, table, list(order), rows)))


@functools.lru_cache(maxsize=64)
def _insert_statement(table: Table, keys: tuple[str, ...], dialect: Dialect) -> tuple[str, tuple[str, ...]]:
    """An INSERT of these columns as SQL text, and its parameters' order: compiled once per table, columns and
    dialect (a batch a second, each table's rows sharing their keys: compiling was a third of a small write)."""
    statement = insert(table).compile(dialect=dialect, column_keys=list(keys))
    return str(statement), tuple(statement.positiontup or ())  # a column with a default must be in the rows


def update_many(connection: Connection, table: Table, rows: list[dict[str, Any]]) -> None:
    """Update rows by id (rows share their keys; "_id" names the row): on PostgreSQL one UPDATE from arrays
    of the new values, elsewhere one executemany."""
    names = [name for name in rows[0] if name != "_id"]
    if connection.dialect.name != "postgresql":
        assigned: dict[str, Any] = {name: bindparam(name) for name in names}
        fits = {name: _fitting(length, None) for name in names if (length := _text_length(table, name))}
        if fits:  # SQLite would take any length; clipped alike on both, a value reads back the same
            rows = [{k: fits[k](v) if k in fits else v for k, v in row.items()} for row in rows]
        connection.execute(update(table).where(table.c.id == bindparam("_id")).values(assigned), rows)
        return
    from psycopg import sql

    dialect = connection.dialect
    values = list(_driver_values(connection, table, names, rows))
    columns = [[row["_id"] for row in rows], *([line[i] for line in values] for i in range(len(names)))]
    types = ["integer", *(table.c[name].type.dialect_impl(dialect).compile(dialect=dialect) for name in names)]
    statement = sql.SQL("UPDATE {} AS t SET {} FROM unnest({}) AS s ({}) WHERE t.id = s.id").format(
        sql.Identifier(table.name),
        sql.SQL(", ").join(sql.SQL("{0} = s.{0}").format(sql.Identifier(name)) for name in names),
        sql.SQL(", ").join(sql.SQL("%s::{}[]").format(sql.SQL(type_)) for type_ in types),
        sql.SQL(", ").join(map(sql.Identifier, ["id", *names])),
    )
    driver = connection.connection.driver_connection
    assert driver is not None
    with _driver_errors(f"UPDATE {table.name}"):
        driver.execute(statement, columns)


def _driver_values(
    connection: Connection, table: Table, names: list[str], rows: list[dict[str, Any]]
) -> Iterator[tuple[Any, ...]]:
    """The rows' values in `names` order, converted by their columns' types for this connection's driver, CHUNK
    rows at a time as they are consumed."""
    dialect = connection.dialect
    processors = []
    for i, name in enumerate(names):
        column_type = table.c[name].type
        process: Callable[[Any], Any] | None
        if isinstance(column_type, ExactDecimal):  # most values: without TypeDecorator's two layers of calls
            process = column_type.direct_processor(dialect)
        else:
            process = column_type.dialect_impl(dialect).bind_processor(dialect)
        length = _text_length(table, name)
        if length:  # exchange strings can be any length
            process = _fitting(length, process)
        if process is None:
            continue
        if isinstance(column_type, UTCDateTime):  # the rows of a write share a few times: convert each once
            process = _memoized(process)
        processors.append((i, process))
    for start in range(0, len(rows), CHUNK):  # column by column (map, zip: no Python loop per value)
        chunk = rows[start : start + CHUNK]
        columns = [[row[name] for row in chunk] for name in names]
        for i, process in processors:
            columns[i] = list(map(process, columns[i]))
        yield from zip(*columns, strict=True)


def _text_length(table: Table, name: str) -> int | None:
    """The length limit of a text column (String, or SQLModel's AutoString, a decorator over it), else None."""
    length = getattr(table.c[name].type, "length", None)
    return length if isinstance(length, int) and length > 0 else None


def _fitting(length: int, process: Callable[[Any], Any] | None) -> Callable[[Any], Any]:
    """Text as its column can take it: clipped to the column's length and without NUL characters (PostgreSQL
    refuses both, failing the whole write)."""

    def fit(value: Any) -> Any:
        if isinstance(value, str):
            if "\x00" in value:
                value = value.replace("\x00", "")
            if len(value) > length:
                value = clip(value, length)
        return value if process is None else process(value)

    return fit


def _memoized(process: Callable[[Any], Any]) -> Callable[[Any], Any]:
    """For values whose equals convert alike (times: equal instants are stored alike; not Decimals, whose
    equals may differ in exponent)."""
    memo: dict[Any, Any] = {}

    def once(value: Any) -> Any:
        try:
            return memo[value]
        except KeyError:
            result = memo[value] = process(value)
            return result

    return once


def _copy(connection: Connection, table: str, names: list[str], values: Iterable[tuple[Any, ...]]) -> None:
    """COPY rows into a PostgreSQL table through the connection's psycopg driver (inside its transaction)."""
    from psycopg import sql

    driver = connection.connection.driver_connection
    assert driver is not None
    statement = sql.SQL("COPY {} ({}) FROM STDIN").format(
        sql.Identifier(table), sql.SQL(", ").join(map(sql.Identifier, names))
    )
    with driver.cursor() as cursor, cursor.copy(statement) as copy:
        for line in values:
            copy.write_row(line)


def clip(text_: str | None, limit: int) -> str | None:
    return text_ if text_ is None or len(text_) <= limit else text_[: limit - 1] + "…"


@contextlib.contextmanager
def _driver_errors(statement: str) -> Iterator[None]:
    """psycopg used directly (COPY, arrays) raises its own errors: give them SQLAlchemy's classes, as every
    other statement has, so the store boundary translates them alike (monitor.store.errors)."""
    import psycopg

    try:
        yield
    except psycopg.Error as exc:
        raise DBAPIError.instance(statement, None, exc, psycopg.Error) from exc
