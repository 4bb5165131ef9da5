"""Everything that differs between SQLite and PostgreSQL, in one place."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import (
    ColumnElement,
    FromClause,
    Insert,
    SQLColumnExpression,
    exists,
    func,
    literal,
    select,
    text,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

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
