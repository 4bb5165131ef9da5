"""The event catalog: what each source sends, derived from the log by the processor."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import case, select
from sqlalchemy.orm import Session

from patron.collect.models import EventCatalogEntry, LogEntry
from patron.core.clock import as_utc
from patron.core.dialect import dialect_insert


def record_in_catalog(session: Session, events: Sequence[LogEntry]) -> None:
    """Count each (source, type, name) of the batch into the catalog."""
    groups: dict[tuple[object, str, str], list[datetime]] = {}
    for e in events:
        key = (e.source_id, e.type, e.event or "")
        groups.setdefault(key, []).append(as_utc(e.received_at))
    if not groups:
        return
    rows = [
        {
            "source_id": source_id,
            "type": kind,
            "name": name,
            "count": len(times),
            "first_seen": min(times),
            "last_seen": max(times),
        }
        for (source_id, kind, name), times in groups.items()
    ]
    table = EventCatalogEntry.__table__
    statement = dialect_insert(session, table)
    new = statement.excluded
    statement = statement.on_conflict_do_update(
        index_elements=["source_id", "type", "name"],
        set_={
            "count": table.c.count + new["count"],
            "first_seen": case(
                (new.first_seen < table.c.first_seen, new.first_seen), else_=table.c.first_seen
            ),
            "last_seen": case(
                (new.last_seen > table.c.last_seen, new.last_seen), else_=table.c.last_seen
            ),
        },
    )
    session.execute(statement, rows)


def catalog_for(session: Session, source_id: object) -> list[EventCatalogEntry]:
    """What one source has sent, most frequent first."""
    return list(
        session.scalars(
            select(EventCatalogEntry)
            .where(EventCatalogEntry.source_id == source_id)
            .order_by(EventCatalogEntry.count.desc())
        )
    )
