"""The settings every connection of Patron's engine starts with."""

from __future__ import annotations

from sqlalchemy import text

from patron.core.db import create_db_engine, ingest_waiting, write_turn
from patron.core.settings import Settings


def test_each_connection_starts_with_the_dialects_settings(database_url: str) -> None:
    engine = create_db_engine(Settings(), database_url)
    try:
        # A rolled-back transaction first: the settings must outlive it on the connection.
        with engine.connect() as connection:
            connection.execute(text("SELECT 1"))
            connection.rollback()
            if engine.dialect.name == "sqlite":
                assert connection.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
                assert connection.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
                assert connection.exec_driver_sql("PRAGMA busy_timeout").scalar() > 0
            else:
                # Reports and counts over millions of rows are costed past jit_above_cost;
                # compiling them cost more than it saved (see patron.core.db).
                assert connection.exec_driver_sql("SHOW jit").scalar() == "off"
    finally:
        engine.dispose()


def test_ingest_waiting_tells_whether_an_ingest_writer_holds_or_awaits_its_turn(
    database_url: str,
) -> None:
    engine = create_db_engine(Settings(), database_url)
    try:
        assert ingest_waiting(engine) is False
        with write_turn(engine, ingest=True):
            # On SQLite the processor sees the ingest writer; PostgreSQL has no turns.
            assert ingest_waiting(engine) is (engine.dialect.name == "sqlite")
        assert ingest_waiting(engine) is False
    finally:
        engine.dispose()
