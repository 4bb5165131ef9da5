"""The processing loop: read the event log in order and derive state from it.

One cursor per processor, stored in the same transaction as the state each step derives,
so a crash between two steps repeats nothing and skips nothing. Steps are handlers called
with each batch of events in log order; later domains (identity, profiles, segments,
destinations) add their handlers here.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from patron.collect.catalog import record_in_catalog
from patron.collect.models import Event, ProcessingCursor
from patron.core.clock import utcnow
from patron.core.dialect import lock_row_for_update

log = logging.getLogger("patron.pipeline")

Handler = Callable[[Session, Sequence[Event]], None]
DEFAULT_HANDLERS: tuple[Handler, ...] = (record_in_catalog,)


@dataclass
class Processor:
    sessions: sessionmaker[Session]
    name: str = "main"
    batch_size: int = 500
    handlers: Sequence[Handler] = field(default_factory=lambda: DEFAULT_HANDLERS)

    def step(self) -> int:
        """Process the next batch of the log; returns how many events it handled."""
        with self.sessions() as session, session.begin():
            cursor = self._claim_cursor(session)
            events = list(
                session.scalars(
                    select(Event)
                    .where(Event.seq > cursor.position)
                    .order_by(Event.seq)
                    .limit(self.batch_size)
                )
            )
            if not events:
                return 0
            for handler in self.handlers:
                handler(session, events)
            cursor.position = events[-1].seq
            cursor.updated_at = utcnow()
            return len(events)

    def _claim_cursor(self, session: Session) -> ProcessingCursor:
        # On PostgreSQL the row lock makes concurrent workers take turns, so the log is
        # still applied in order; SQLite's IMMEDIATE transaction already does the same.
        statement = select(ProcessingCursor).where(ProcessingCursor.name == self.name)
        if lock_row_for_update(session):
            statement = statement.with_for_update()
        cursor = session.scalar(statement)
        if cursor is None:
            cursor = ProcessingCursor(name=self.name, position=0)
            session.add(cursor)
            session.flush()
        return cursor

    def drain(self) -> int:
        """Process until the log is empty; returns the number of events handled."""
        total = 0
        while handled := self.step():
            total += handled
        return total

    def run(self, stop: threading.Event, idle_seconds: float) -> None:
        """Process until ``stop`` is set, sleeping ``idle_seconds`` when there is nothing new."""
        while not stop.is_set():
            try:
                if self.step() == 0:
                    stop.wait(idle_seconds)
            except Exception:
                # A bad step is rolled back and retried; the loop must outlive it.
                log.exception("processing step failed; retrying")
                stop.wait(max(idle_seconds, 1.0))


def position(session: Session, name: str = "main") -> int:
    """How far the named processor has read."""
    cursor = session.get(ProcessingCursor, name)
    return cursor.position if cursor else 0
