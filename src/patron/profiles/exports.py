"""Exporting people as JSONL: every live person with traits, computed traits and identities."""

from __future__ import annotations

import sys
import uuid
from collections import defaultdict
from pathlib import Path
from typing import IO, Any

import orjson
from sqlalchemy import select
from sqlalchemy.orm import Session

from patron.identity.models import Identity, Person

CHUNK = 1000


def export_people(session: Session, *, output: Path) -> int:
    """Stream every live person to ``output`` (``-``: stdout); returns the count."""
    if str(output) == "-":
        return _write(session, sys.stdout.buffer)
    with output.open("wb") as handle:
        return _write(session, handle)


def _write(session: Session, handle: IO[bytes]) -> int:
    count, after = 0, -1
    while True:
        persons = list(
            session.scalars(
                select(Person)
                .where(Person.merged_into.is_(None), Person.created_seq > after)
                .order_by(Person.created_seq)
                .limit(CHUNK)
            )
        )
        if not persons:
            return count
        identities = _identities(session, [p.id for p in persons])
        for person in persons:
            handle.write(orjson.dumps(_record(person, identities[person.id])) + b"\n")
        count += len(persons)
        after = persons[-1].created_seq


def _identities(session: Session, ids: list[uuid.UUID]) -> dict[uuid.UUID, list[dict[str, str]]]:
    found: dict[uuid.UUID, list[dict[str, str]]] = defaultdict(list)
    rows = session.execute(
        select(Identity.person_id, Identity.kind, Identity.value)
        .where(Identity.person_id.in_(ids))
        .order_by(Identity.id)
    )
    for person_id, kind, value in rows:
        found[person_id].append({"kind": kind, "value": value})
    return found


def _record(person: Person, identities: list[dict[str, str]]) -> dict[str, Any]:
    return {
        "id": str(person.id),
        "traits": person.traits,
        "computed_traits": person.computed,
        "identities": identities,
        "first_seen": person.first_seen.isoformat() if person.first_seen else None,
        "last_seen": person.last_seen.isoformat() if person.last_seen else None,
        "crm": {
            "owner_id": str(person.owner_id) if person.owner_id else None,
            "lifecycle_stage": person.lifecycle_stage,
            "lead_status": person.lead_status,
            "tags": person.tags,
            "custom": person.custom,
            "archived_at": person.archived_at.isoformat() if person.archived_at else None,
        },
    }
