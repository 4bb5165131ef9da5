"""What a running Patron process holds: its settings, engine and session factory."""

from __future__ import annotations

import gc
from dataclasses import dataclass, field

from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from patron.core.db import (
    GroupCommitter,
    create_db_engine,
    make_read_session_factory,
    make_session_factory,
)
from patron.core.migrations import check_current
from patron.core.settings import Settings


@dataclass
class Runtime:
    settings: Settings
    engine: Engine
    sessions: sessionmaker[Session]
    readers: sessionmaker[Session]
    # Ingest requests share write transactions through this (see GroupCommitter).
    writer: GroupCommitter = field(init=False)

    def __post_init__(self) -> None:
        self.writer = GroupCommitter(self.sessions)

    @classmethod
    def start(cls, settings: Settings, *, check_schema: bool = True) -> Runtime:
        """Connect, and refuse a schema that is behind (the embedded default migrates itself)."""
        engine = create_db_engine(settings)
        if check_schema:
            check_current(engine, auto_migrate=settings.is_embedded())
        return cls(
            settings=settings,
            engine=engine,
            sessions=make_session_factory(engine),
            readers=make_read_session_factory(engine),
        )

    def close(self) -> None:
        self.engine.dispose()


def tune_garbage_collector() -> None:
    """Collect cycles less often in long-running servers; call once start-up is done.

    Every request makes thousands of short-lived dicts and lists (parsed JSON), which
    reference counting frees; with the default threshold the cycle collector still ran
    every 700 of them and walked the heap, which took half the time of parsing a batch.
    What start-up created (modules, the app, the mappers) is frozen out of collections.
    """
    gc.freeze()
    gc.set_threshold(20_000, 20, 20)
