"""Traits with lineage: every distinct value is kept with its source, times and count, and a
survivorship rule per trait picks the one a profile shows."""

from __future__ import annotations

import hashlib
import uuid
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol, TypeVar, cast

import orjson
from sqlalchemy import Table, bindparam, delete, select
from sqlalchemy.orm import Session

from patron.collect.models import LogEntry
from patron.core.clock import as_utc, utcnow
from patron.core.db import json_dumps
from patron.core.dialect import driver_values, insert_rows, update_rows
from patron.identity.graph import loaded_persons
from patron.profiles.models import TraitRule, TraitValue

EMPTY: tuple[Any, ...] = (None, "", [], {})


class _Observed(Protocol):
    value: Any
    source_id: uuid.UUID | None
    first_seen: datetime
    last_seen: datetime
    count: int
    last_seq: int


V = TypeVar("V", bound=_Observed)


def value_hash(value: Any) -> str:
    return hashlib.sha256(orjson.dumps(value, option=orjson.OPT_SORT_KEYS)).hexdigest()[:32]


def observed_traits(event: LogEntry) -> dict[str, Any]:
    """The person traits a message carries: identify traits, and context.traits on any call."""
    payload = event.payload
    found: dict[str, Any] = {}
    context = payload.get("context")
    if isinstance(context, dict) and isinstance(context.get("traits"), dict):
        found.update(context["traits"])
    if event.type == "identify" and isinstance(payload.get("traits"), dict):
        found.update(payload["traits"])
    return {str(k)[:200]: v for k, v in found.items()}


@dataclass
class Value:
    """One row of ``trait_values``, held in memory while a batch is applied.

    Trait values are read and written with Core statements, not ORM objects: a batch
    creates thousands of them, and the ORM's bookkeeping per object cost more than the
    rest of processing them."""

    person_id: uuid.UUID
    name: str
    value_hash: str
    value: Any
    source_id: uuid.UUID | None
    first_seen: datetime
    last_seen: datetime
    count: int
    last_seq: int

    def key(self) -> tuple[str, str]:
        return (self.name, self.value_hash)

    def absorb(self, other: Value) -> None:
        """Fold another observation of the same value into this one."""
        self.count += other.count
        self.first_seen = min(as_utc(self.first_seen), as_utc(other.first_seen))
        if (as_utc(other.last_seen), other.last_seq) >= (as_utc(self.last_seen), self.last_seq):
            self.last_seen, self.source_id, self.last_seq = (
                other.last_seen,
                other.source_id,
                other.last_seq,
            )


COLUMNS = (
    "person_id",
    "name",
    "value_hash",
    "value",
    "source_id",
    "first_seen",
    "last_seen",
    "count",
    "last_seq",
)
_TABLE = cast(Table, TraitValue.__table__)
# What an update of a held value writes, and the key it was read under.
_UPDATED = ("person_id", "source_id", "first_seen", "last_seen", "count", "last_seq")
_KEY = ("person_id", "name", "value_hash")


def load_values(session: Session, persons: Iterable[uuid.UUID]) -> list[Value]:
    """The trait values of these persons."""
    ids = list(persons)
    found: list[Value] = []
    for start in range(0, len(ids), 500):
        rows = session.execute(
            select(*(_TABLE.c[c] for c in COLUMNS)).where(
                _TABLE.c.person_id.in_(ids[start : start + 500])
            )
        )
        found += [Value(*row) for row in rows]
    return found


def _write(
    session: Session, new: Sequence[Value], changed: Sequence[tuple[Value, uuid.UUID]]
) -> None:
    """Insert new values; update changed ones (keyed by the person they were read under)."""
    to_driver = driver_values(session)
    convert: dict[str, Callable[[Any], Any]] = {
        "person_id": to_driver.uuid,
        "source_id": to_driver.uuid,
        "first_seen": to_driver.datetime,
        "last_seen": to_driver.datetime,
        "value": json_dumps,
    }

    def driven(v: Value, columns: Sequence[str]) -> tuple[Any, ...]:
        """The values of ``columns`` as the driver takes them."""
        return tuple(convert.get(c, _same)(getattr(v, c)) for c in columns)

    if new:
        insert_rows(session, _TABLE, COLUMNS, [driven(v, COLUMNS) for v in new])
    if changed:
        updated = [
            (*driven(v, _UPDATED), to_driver.uuid(was), v.name, v.value_hash) for v, was in changed
        ]
        update_rows(session, _TABLE, _UPDATED, _KEY, updated)


def _same(value: Any) -> Any:
    return value


@dataclass
class Recorded:
    """What :func:`record_traits` changed: the persons, and every value they hold now."""

    persons: set[uuid.UUID]
    values: list[Value]


def record_traits(
    session: Session, events: Sequence[LogEntry], owners: Mapping[int, uuid.UUID]
) -> Recorded:
    """Add the batch's trait observations to each owner's values."""
    observations: list[tuple[uuid.UUID, LogEntry, dict[str, Any]]] = []
    for e in events:
        person = owners.get(e.seq)
        traits = observed_traits(e) if person else {}
        if person and traits:
            observations.append((person, e, traits))
    touched = {p for p, _, _ in observations}
    if not touched:
        return Recorded(touched, [])
    # Values are read and written with Core statements, and their persons exist (the
    # resolver inserted the new ones): nothing of the session needs flushing first.
    existing = {(v.person_id, *v.key()): v for v in load_values(session, touched)}
    new: dict[tuple[uuid.UUID, str, str], Value] = {}
    changed: dict[tuple[uuid.UUID, str, str], Value] = {}
    for person, e, traits in observations:
        seen = as_utc(e.timestamp)
        for name, value in traits.items():
            key = (person, name, value_hash(value))
            seen_value = Value(person, name, key[2], value, e.source_id, seen, seen, 1, e.seq)
            row = existing.get(key)
            if row is None:
                new[key] = existing[key] = seen_value
            else:
                row.absorb(seen_value)
                if key not in new:
                    changed[key] = row
    _write(session, list(new.values()), [(v, v.person_id) for v in changed.values()])
    return Recorded(touched, list(existing.values()))


def load_rules(session: Session) -> dict[str, TraitRule]:
    return {r.name: r for r in session.scalars(select(TraitRule))}


def _winner(values: Sequence[V], rule: TraitRule | None) -> V:
    def recent(v: V) -> tuple[datetime, int]:
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


def refresh_visible(
    session: Session, persons: Iterable[uuid.UUID], values: Iterable[Value] | None = None
) -> None:
    """Recompute the traits each person shows from their values and the survivorship rules.

    ``values``: every value of these persons, when the caller holds them already (as
    :func:`record_traits` does); read otherwise."""
    ids = list(persons)
    if not ids:
        return
    rules = load_rules(session)
    grouped: dict[uuid.UUID, dict[str, list[Value]]] = defaultdict(lambda: defaultdict(list))
    for row in load_values(session, ids) if values is None else values:
        grouped[row.person_id][row.name].append(row)
    for person in loaded_persons(session, ids):
        held = grouped.get(person.id, {})
        person.traits = {
            name: _winner(rows, rules.get(name)).value for name, rows in sorted(held.items())
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


def move_traits(session: Session, pairs: Sequence[tuple[uuid.UUID, uuid.UUID]]) -> None:
    """Merge hook, for a group of merges in order: each merged person's values join its
    survivor's (counts add up). The visible traits are refreshed once afterwards
    (:func:`refresh_survivors`)."""
    session.flush()
    persons = {p for pair in pairs for p in pair}
    held: dict[uuid.UUID, dict[tuple[str, str], Value]] = {p: {} for p in persons}
    read_under: dict[int, uuid.UUID] = {}
    for value in load_values(session, persons):
        held[value.person_id][value.key()] = value
        read_under[id(value)] = value.person_id
    gone: list[Value] = []
    for survivor, merged in pairs:
        mine = held[survivor]
        for key, value in held.pop(merged, {}).items():
            own = mine.get(key)
            if own is None:
                value.person_id = survivor
                mine[key] = value
            else:
                own.absorb(value)
                gone.append(value)
        held[merged] = {}
    if gone:
        session.connection().execute(
            delete(_TABLE).where(
                _TABLE.c.person_id == bindparam("k_person"),
                _TABLE.c.name == bindparam("k_name"),
                _TABLE.c.value_hash == bindparam("k_hash"),
            ),
            [
                {"k_person": read_under[id(v)], "k_name": v.name, "k_hash": v.value_hash}
                for v in gone
            ],
        )
    survivors = {survivor for survivor, _ in pairs}
    changed = [(v, read_under[id(v)]) for p in survivors for v in held.get(p, {}).values()]
    _write(session, [], changed)


def refresh_survivors(session: Session, survivors: set[uuid.UUID]) -> None:
    """After-merges hook: what the survivors of a group of merges show, once each."""
    refresh_visible(session, sorted(survivors, key=str))


def forget_traits(session: Session, persons: Sequence[uuid.UUID]) -> None:
    """Reset hook: drop the trait values of persons about to be replayed."""
    session.flush()
    session.execute(delete(TraitValue).where(TraitValue.person_id.in_(list(persons))))
