"""Everything that differs between SQLite and PostgreSQL, in one place."""

from __future__ import annotations

import re
import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import (
    JSON,
    ColumnElement,
    FromClause,
    Insert,
    SQLColumnExpression,
    String,
    Table,
    exists,
    func,
    literal,
    select,
    text,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.orm import Session
from sqlalchemy.sql import coercions, roles
from sqlalchemy.sql.visitors import InternalTraversal

from patron.core.clock import as_utc

# Key of the PostgreSQL transaction lock that orders appends to the event log.
EVENT_LOG_LOCK = 0x7061_7472  # "patr"


def dialect_name(session: Session) -> str:
    return session.get_bind().dialect.name


def dialect_insert(session: Session, table: Any) -> Any:
    """The dialect's INSERT, which offers ``on_conflict_do_*`` and ``excluded``.

    Both dialects spell upserts the same way in SQLAlchemy; only the class differs.
    """
    if dialect_name(session) == "postgresql":
        return postgresql.insert(table)
    return sqlite.insert(table)


def insert_ignoring_conflicts(
    session: Session, table: FromClause, index_elements: Sequence[str]
) -> Insert:
    """An INSERT that silently skips rows violating the unique key ``index_elements``."""
    statement: Insert = dialect_insert(session, table).on_conflict_do_nothing(
        index_elements=index_elements
    )
    return statement


def lock_event_log(session: Session) -> None:
    """Serialise appends to the event log until this transaction ends.

    PostgreSQL hands out sequence values before commit, so two concurrent writers could
    commit sequence 8 before 7, and a reader that had moved its cursor past 8 would never
    see 7. Holding this lock from the first insert to the commit makes sequence order equal
    commit order. SQLite needs nothing: BEGIN IMMEDIATE already admits one writer at a time.
    """
    if dialect_name(session) == "postgresql":
        session.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": EVENT_LOG_LOCK})


def lock_row_for_update(session: Session) -> bool:
    """Whether ``SELECT ... FOR UPDATE`` means anything here (PostgreSQL yes, SQLite no)."""
    return dialect_name(session) == "postgresql"


def insert_rows_ignoring_conflicts(
    session: Session,
    table: Table,
    columns: Sequence[str],
    rows: Sequence[Sequence[Any]],
    conflict: Sequence[str],
) -> int:
    """Insert ``rows`` through the driver's executemany; a row hitting ``conflict`` is skipped.

    The bulk path for hot tables: SQLAlchemy's per-row parameter processing costs more than
    the insert itself, so callers hand over values the driver takes as they are (see
    :func:`driver_values`), JSON columns already serialised. Returns the rows inserted.
    Runs in the session's transaction.
    """
    return _insert_rows(session, table, columns, rows, conflict)


def insert_rows(
    session: Session, table: Table, columns: Sequence[str], rows: Sequence[Sequence[Any]]
) -> int:
    """Insert ``rows`` through the driver's executemany, as
    :func:`insert_rows_ignoring_conflicts` does, but a conflicting row is an error."""
    return _insert_rows(session, table, columns, rows, None)


def update_rows(
    session: Session,
    table: Table,
    columns: Sequence[str],
    keys: Sequence[str],
    rows: Sequence[Sequence[Any]],
) -> None:
    """``UPDATE table SET columns WHERE keys`` for each row (the new values of ``columns``,
    then the values of ``keys``), through the driver's executemany: values as for
    :func:`insert_rows`."""
    if not rows:
        return
    postgres = dialect_name(session) == "postgresql"
    quote = session.get_bind().dialect.identifier_preparer.quote

    def bound(name: str) -> str:
        return f"{quote(name)} = {_placeholder(table, name, postgres)}"

    # Identifiers come from the Table and are quoted by the dialect; values are bound.
    sql = (
        f"UPDATE {quote(table.name)} SET {', '.join(map(bound, columns))} "  # noqa: S608
        f"WHERE {' AND '.join(map(bound, keys))}"
    )
    cursor = session.connection().connection.cursor()
    try:
        cursor.executemany(sql, rows)
    finally:
        cursor.close()


def _placeholder(table: Table, column: str, postgres: bool) -> str:
    """The driver's parameter marker for a value of ``column`` (JSON arrives serialised)."""
    if not postgres:
        return "?"
    return "%s::jsonb" if isinstance(table.c[column].type, JSON) else "%s"


def _insert_rows(
    session: Session,
    table: Table,
    columns: Sequence[str],
    rows: Sequence[Sequence[Any]],
    conflict: Sequence[str] | None,
) -> int:
    if not rows:
        return 0
    postgres = dialect_name(session) == "postgresql"
    quote = session.get_bind().dialect.identifier_preparer.quote
    values = ", ".join(_placeholder(table, name, postgres) for name in columns)
    # Identifiers come from the Table and are quoted by the dialect; values are bound.
    sql = (
        f"INSERT INTO {quote(table.name)} ({', '.join(map(quote, columns))}) "  # noqa: S608
        f"VALUES ({values})"
    )
    if conflict is not None:
        sql += f" ON CONFLICT ({', '.join(map(quote, conflict))}) DO NOTHING"
    connection = session.connection().connection
    driver: Any = connection.driver_connection
    cursor = connection.cursor()
    try:
        if postgres:
            cursor.executemany(sql, rows)
            return int(cursor.rowcount)
        # sqlite3 reports no rowcount for upserts that skip; the change counter does.
        before = driver.total_changes
        cursor.executemany(sql, rows)
        return int(driver.total_changes - before)
    finally:
        cursor.close()


def driver_values(session: Session) -> DriverValues:
    """How values of portable column types are handed to this dialect's driver."""
    return POSTGRES_VALUES if dialect_name(session) == "postgresql" else SQLITE_VALUES


class DriverValues:
    """Values as SQLAlchemy's portable types would bind them, for :func:`insert_rows_...`."""

    def __init__(self, *, native: bool) -> None:
        self.native = native

    def uuid(self, value: uuid.UUID | None) -> Any:
        # ``Uuid()`` is CHAR(32) hex on SQLite, native on PostgreSQL.
        if value is None or self.native:
            return value
        return value.hex

    def datetime(self, value: datetime | None) -> Any:
        # ``DateTime`` on SQLite is text "YYYY-MM-DD HH:MM:SS.ffffff" in UTC: the format
        # SQLAlchemy writes, so comparisons between rows written either way stay right.
        if value is None or self.native:
            return value
        return as_utc(value).replace(tzinfo=None).isoformat(" ", "microseconds")


SQLITE_VALUES = DriverValues(native=False)
POSTGRES_VALUES = DriverValues(native=True)


def json_array_contains(
    expr: SQLColumnExpression[Any], value: Any, dialect: str
) -> ColumnElement[bool]:
    """Whether the JSON array ``expr`` holds ``value`` (a tag, a multi-select option)."""
    if dialect == "postgresql":
        return expr.op("@>")(func.jsonb_build_array(value))
    each = func.json_each(expr).table_valued("value")
    return exists(select(literal(1)).select_from(each).where(each.c.value == value))


def json_array_length(expr: SQLColumnExpression[Any], dialect: str) -> ColumnElement[Any]:
    if dialect == "postgresql":
        return func.jsonb_array_length(expr)
    return func.json_array_length(expr)


def month_of(expr: SQLColumnExpression[Any], dialect: str) -> ColumnElement[str]:
    """``YYYY-MM`` of a date column."""
    if dialect == "postgresql":
        return func.to_char(expr, "YYYY-MM")
    return func.strftime("%Y-%m", expr)


def seconds_between(
    start: SQLColumnExpression[Any], end: SQLColumnExpression[Any], dialect: str
) -> ColumnElement[Any]:
    """Seconds from the timestamp ``start`` to ``end`` (fractional; negative if ``end`` is
    earlier). SQLite keeps times as text, which ``julianday`` reads (to about 10 µs)."""
    if dialect == "postgresql":
        # date_part is double precision; EXTRACT is numeric since PostgreSQL 14, and slower.
        return func.date_part("epoch", end - start)
    return (func.julianday(end) - func.julianday(start)) * 86400


# --- JSON members as text, written out literally -----------------------------------------

JSON_KEY = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,99}$")


class JsonText(ColumnElement[str]):
    """The text of a top-level member of a JSON column, with its key written into the SQL
    rather than bound as a parameter, so that an index on the same expression serves
    filters and sorts on it (SQLite matches index expressions only against literal SQL).

    ``key`` must be a plain name (letters, digits, underscores): it is part of the SQL.
    """

    inherit_cache = True
    type = String()
    # What SQLAlchemy's statement cache and traversals see of it.
    _traverse_internals = [
        ("column", InternalTraversal.dp_clauseelement),
        ("key_name", InternalTraversal.dp_string),
    ]

    def __init__(self, column: ColumnElement[Any] | Any, key: str) -> None:
        if not JSON_KEY.match(key):
            raise ValueError(f"not a plain JSON key: {key!r}")
        self.column = coercions.expect(roles.ExpressionElementRole, column)
        self.key_name = key


@compiles(JsonText, "sqlite")
def _json_text_sqlite(element: JsonText, compiler: Any, **kw: Any) -> str:
    column = compiler.process(element.column, **kw)
    return f"CAST(json_extract({column}, '$.\"{element.key_name}\"') AS TEXT)"


@compiles(JsonText, "postgresql")
def _json_text_postgresql(element: JsonText, compiler: Any, **kw: Any) -> str:
    column = compiler.process(element.column, **kw)
    return f"({column} ->> '{element.key_name}')"


def json_text(column: Any, key: str) -> ColumnElement[str]:
    """``column[key]`` as text (null when missing), indexable on both dialects."""
    return JsonText(column, key)
