"""Exporting the event log as JSONL."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import IO

import orjson
from sqlalchemy import ColumnElement, select
from sqlalchemy.orm import Session

from patron.collect.models import Event
from patron.collect.service import get_source_by_name

CHUNK = 2000


def export_events(session: Session, *, output: Path, source_name: str | None = None) -> int:
    """Stream every event (or one source's) to ``output`` in log order; returns the count."""
    conditions: list[ColumnElement[bool]] = []
    if source_name is not None:
        conditions.append(Event.source_id == get_source_by_name(session, source_name).id)
    if str(output) == "-":
        return _write(session, sys.stdout.buffer, conditions)
    with output.open("wb") as handle:
        return _write(session, handle, conditions)


def _write(session: Session, handle: IO[bytes], conditions: list[ColumnElement[bool]]) -> int:
    count, after = 0, 0
    while True:
        # Keyset chunks keep memory flat however long the log is.
        rows = session.execute(
            select(Event.seq, Event.payload)
            .where(Event.seq > after, *conditions)
            .order_by(Event.seq)
            .limit(CHUNK)
        ).all()
        if not rows:
            return count
        for _seq, payload in rows:
            handle.write(orjson.dumps(payload) + b"\n")
        count += len(rows)
        after = rows[-1][0]
