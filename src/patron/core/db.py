"""Engines and sessions for both dialects.

SQLite runs in WAL mode with a busy timeout, and transactions begin IMMEDIATE so that two
writers queue on the lock instead of failing half-way with SQLITE_BUSY. Read-only work
uses :func:`make_read_session_factory`, whose transactions begin DEFERRED and so never
wait for, or hold up, a writer.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session, sessionmaker

from patron.core.settings import Settings


def normalise_url(url: str) -> str:
    """Pick psycopg 3 for plain ``postgresql://`` URLs (SQLAlchemy would pick psycopg2)."""
    parsed = make_url(url)
    if parsed.drivername in ("postgresql", "postgres"):
        parsed = parsed.set(drivername="postgresql+psycopg")
    return parsed.render_as_string(hide_password=False)


def create_db_engine(settings: Settings, url: str | None = None) -> Engine:
    """Create the engine for ``url`` (default: the configured database)."""
    url = normalise_url(url or settings.resolved_database_url())
    if make_url(url).get_backend_name() == "sqlite":
        return _sqlite_engine(url, settings)
    return create_engine(url, pool_size=10, max_overflow=20, pool_pre_ping=True)


def _sqlite_engine(url: str, settings: Settings) -> Engine:
    database = make_url(url).database
    if database and database != ":memory:":
        Path(database).parent.mkdir(parents=True, exist_ok=True)
    engine = create_engine(url, connect_args={"check_same_thread": False}, pool_size=10)
    synchronous = settings.sqlite_synchronous
    busy_ms = settings.sqlite_busy_timeout_ms

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Let SQLAlchemy, not the sqlite3 module, decide when transactions begin.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute(f"PRAGMA synchronous={synchronous}")
        cursor.execute(f"PRAGMA busy_timeout={int(busy_ms)}")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(connection: Any) -> None:
        mode = connection.get_execution_options().get(SQLITE_BEGIN, "IMMEDIATE")
        connection.exec_driver_sql(f"BEGIN {mode}")

    return engine


SQLITE_BEGIN = "patron_sqlite_begin"


def make_session_factory(engine: Engine) -> sessionmaker[Session]:
    """Sessions for work that writes."""
    return sessionmaker(engine, expire_on_commit=False)


def make_read_session_factory(engine: Engine) -> sessionmaker[Session]:
    """Sessions for work that only reads (on PostgreSQL the same as any session)."""
    return sessionmaker(
        engine.execution_options(**{SQLITE_BEGIN: "DEFERRED"}), expire_on_commit=False
    )


@contextmanager
def transaction(factory: sessionmaker[Session]) -> Iterator[Session]:
    """One unit of work: commit when the block ends, roll back when it raises."""
    with factory() as session, session.begin():
        yield session
