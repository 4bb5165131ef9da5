"""Traits with lineage: every distinct value is kept with its source, times and count, and a
survivorship rule per trait picks the one a profile shows."""

from __future__ import annotations

import hashlib
import uuid
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any

import orjson
from sqlalchemy import delete, select, update
from sqlalchemy.orm import Session

from patron.collect.models import Event
from patron.core.clock import as_utc, utcnow
from patron.identity.models import Person
from patron.profiles.models import TraitRule, TraitValue

EMPTY: tuple[Any, ...] = (None, "", [], {})


def value_hash(value: Any) -> str:
    return hashlib.sha256(orjson.dumps(value, option=orjson.OPT_SORT_KEYS)).hexdigest()[:32]


def observed_traits(event: Event) -> dict[str, Any]:
    """The person traits a message carries: identify traits, and context.traits on any call."""
    payload = event.payload
    found: dict[str, Any] = {}
    context = payload.get("context")
    if isinstance(context, dict) and isinstance(context.get("traits"), dict):
        found.update(context["traits"])
    if event.type == "identify" and isinstance(payload.get("traits"), dict):
        found.update(payload["traits"])
    return {str(k)[:200]: v for k, v in found.items()}


def record_traits(
    session: Session, events: Sequence[Event], owners: Mapping[int, uuid.UUID]
) -> set[uuid.UUID]:
    """Add the batch's trait observations to each owner's values; returns persons changed."""
    observations: list[tuple[uuid.UUID, Event, dict[str, Any]]] = []
    for e in events:
        person = owners.get(e.seq)
        traits = observed_traits(e) if person else {}
        if person and traits:
            observations.append((person, e, traits))
    touched = {p for p, _, _ in observations}
    if not touched:
        return touched
    existing = {
        (row.person_id, row.name, row.value_hash): row
        for row in session.scalars(select(TraitValue).where(TraitValue.person_id.in_(touched)))
    }
    for person, e, traits in observations:
        seen = as_utc(e.timestamp)
        for name, value in traits.items():
            key = (person, name, value_hash(value))
            row = existing.get(key)
            if row is None:
                row = TraitValue(
                    person_id=person,
                    name=name,
                    value_hash=key[2],
                    value=value,
                    source_id=e.source_id,
                    first_seen=seen,
                    last_seen=seen,
                    count=1,
                    last_seq=e.seq,
                )
                session.add(row)
                existing[key] = row
                continue
            row.count += 1
            row.first_seen = min(as_utc(row.first_seen), seen)
            if seen >= as_utc(row.last_seen):
                row.last_seen, row.source_id, row.last_seq = seen, e.source_id, e.seq
    session.flush()
    return touched


def load_rules(session: Session) -> dict[str, TraitRule]:
    return {r.name: r for r in session.scalars(select(TraitRule))}


def _winner(values: Sequence[TraitValue], rule: TraitRule | None) -> TraitValue:
    def recent(v: TraitValue) -> tuple[datetime, int]:
        return (as_utc(v.last_seen), v.last_seq)

    name = rule.rule if rule else "most_recent"
    if name == "first_seen":
        return min(values, key=lambda v: (as_utc(v.first_seen), v.last_seq))
    if name == "most_frequent":
        return max(values, key=lambda v: (v.count, recent(v)))
    if name == "non_empty":
        filled = [v for v in values if v.value not in EMPTY]
        return max(filled or values, key=recent)
    if name == "source_priority" and rule is not None:
        order = {str(s): n for n, s in enumerate(rule.source_priority)}
        rank = len(order)
        return min(values, key=lambda v: (order.get(str(v.source_id), rank), _neg(recent(v))))
    return max(values, key=recent)


def _neg(key: tuple[datetime, int]) -> tuple[float, int]:
    return (-key[0].timestamp(), -key[1])


def refresh_visible(session: Session, persons: Iterable[uuid.UUID]) -> None:
    """Recompute the traits each person shows from their values and the survivorship rules."""
    ids = list(persons)
    if not ids:
        return
    rules = load_rules(session)
    grouped: dict[uuid.UUID, dict[str, list[TraitValue]]] = defaultdict(lambda: defaultdict(list))
    for row in session.scalars(select(TraitValue).where(TraitValue.person_id.in_(ids))):
        grouped[row.person_id][row.name].append(row)
    for person in session.scalars(select(Person).where(Person.id.in_(ids))):
        values = grouped.get(person.id, {})
        person.traits = {
            name: _winner(rows, rules.get(name)).value for name, rows in sorted(values.items())
        }
        person.updated_at = utcnow()


def lineage(session: Session, person_id: uuid.UUID) -> dict[str, dict[str, Any]]:
    """Per trait: the value shown, the rule that chose it, and every value with its source."""
    rules = load_rules(session)
    grouped: dict[str, list[TraitValue]] = defaultdict(list)
    for row in session.scalars(select(TraitValue).where(TraitValue.person_id == person_id)):
        grouped[row.name].append(row)
    out: dict[str, dict[str, Any]] = {}
    for name, rows in sorted(grouped.items()):
        rule = rules.get(name)
        winner = _winner(rows, rule)
        out[name] = {
            "value": winner.value,
            "rule": rule.rule if rule else "most_recent",
            "source_id": winner.source_id,
            "observed_at": winner.last_seen,
            "values": [
                {
                    "value": r.value,
                    "source_id": r.source_id,
                    "first_seen": r.first_seen,
                    "last_seen": r.last_seen,
                    "count": r.count,
                }
                for r in sorted(rows, key=lambda r: as_utc(r.last_seen), reverse=True)
            ],
        }
    return out


def move_traits(session: Session, survivor: uuid.UUID, merged: uuid.UUID) -> None:
    """Merge hook: the merged person's values join the survivor's (counts add up); the
    visible traits are refreshed once for a group of merges (:func:`refresh_survivors`)."""
    session.flush()
    mine = {
        (r.name, r.value_hash): r
        for r in session.scalars(select(TraitValue).where(TraitValue.person_id == survivor))
    }
    theirs = list(session.scalars(select(TraitValue).where(TraitValue.person_id == merged)))
    for row in theirs:
        own = mine.get((row.name, row.value_hash))
        if own is None:
            continue
        own.count += row.count
        own.first_seen = min(as_utc(own.first_seen), as_utc(row.first_seen))
        if as_utc(row.last_seen) > as_utc(own.last_seen):
            own.last_seen, own.source_id, own.last_seq = row.last_seen, row.source_id, row.last_seq
        session.delete(row)
    session.flush()
    session.execute(
        update(TraitValue).where(TraitValue.person_id == merged).values(person_id=survivor)
    )


def refresh_survivors(session: Session, survivors: set[uuid.UUID]) -> None:
    """After-merges hook: what the survivors of a group of merges show, once each."""
    refresh_visible(session, sorted(survivors, key=str))


def forget_traits(session: Session, persons: Sequence[uuid.UUID]) -> None:
    """Reset hook: drop the trait values of persons about to be replayed."""
    session.flush()
    session.execute(delete(TraitValue).where(TraitValue.person_id.in_(list(persons))))
