"""Computed traits: functions of a person's events, kept up to date as events arrive.

Each (person, trait) has a small running state, so an event costs a state update rather than
a scan of the person's history, and two states combine when persons merge. Traits with a
sliding window cannot forget old events incrementally; they are recomputed from the
person's events inside the window whenever the person is touched (and by
``refresh_windowed`` for persons who went quiet).
"""

from __future__ import annotations

import uuid
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any

import orjson
from sqlalchemy import delete, inspect, select
from sqlalchemy.orm import Session

from patron.collect.models import Event, LogEntry
from patron.core.clock import as_utc, utcnow
from patron.identity.graph import loaded_persons
from patron.identity.models import PersonEvent
from patron.profiles.models import ComputedState, ComputedTrait

MAX_DISTINCT = 10_000  # values remembered for unique_count and most_frequent
LIFETIME_VALUE = "lifetime_value"


_DEFINITIONS = "patron.computed_definitions"


def definitions(session: Session) -> list[ComputedTrait]:
    """The computed traits, read once per transaction (a batch with many merges asked for
    them hundreds of times); :func:`forget_definitions` after changing them."""
    transaction = session.get_transaction()
    cached = session.info.get(_DEFINITIONS)
    if cached is not None and transaction is not None and cached[0] is transaction:
        return list(cached[1])
    found = list(session.scalars(select(ComputedTrait).order_by(ComputedTrait.id)))
    session.info[_DEFINITIONS] = (transaction, found)
    return list(found)


def forget_definitions(session: Session) -> None:
    session.info.pop(_DEFINITIONS, None)


def _property(payload: Mapping[str, Any], path: str | None) -> Any:
    if path is None:
        return None
    value: Any = payload.get("properties")
    for part in path.split("."):
        if not isinstance(value, dict):
            return None
        value = value.get(part)
    return value


def _number(value: Any) -> float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return None
    return None


def applies(trait: ComputedTrait, event: LogEntry) -> bool:
    return trait.event is None or trait.event == event.event


def _key(value: Any) -> str:
    return orjson.dumps(value, option=orjson.OPT_SORT_KEYS).decode()


def step(trait: ComputedTrait, state: dict[str, Any], event: LogEntry) -> dict[str, Any]:
    """The state after one more matching event."""
    fn = trait.function
    raw = _property(event.payload, trait.property)
    at = as_utc(event.timestamp).isoformat()
    if fn == "count":
        return {"n": int(state.get("n", 0)) + 1}
    if fn in ("sum", "min", "max"):
        number = _number(raw)
        if number is None:
            return state
        if fn == "sum":
            return {"v": float(state.get("v", 0.0)) + number}
        current = state.get("v")
        better = current is None or (number < current if fn == "min" else number > current)
        return {"v": number} if better else state
    if fn == "first":
        return {"t": at, "v": raw} if "t" not in state or at < state["t"] else state
    if fn == "last":
        return {"t": at, "v": raw} if "t" not in state or at >= state["t"] else state
    counts = dict(state.get("c", {}))
    if raw is not None:
        key = _key(raw)
        if key in counts or len(counts) < MAX_DISTINCT:
            counts[key] = counts.get(key, 0) + 1
    return {"c": counts}


def combine(trait: ComputedTrait, a: dict[str, Any], b: dict[str, Any]) -> dict[str, Any]:
    """The state of two persons' histories taken together (for merges)."""
    fn = trait.function
    if not a or not b:
        return a or b
    if fn == "count":
        return {"n": int(a["n"]) + int(b["n"])}
    if fn == "sum":
        return {"v": float(a["v"]) + float(b["v"])}
    if fn in ("min", "max"):
        pick = min if fn == "min" else max
        return {"v": pick(a["v"], b["v"])}
    if fn in ("first", "last"):
        earlier, later = sorted((a, b), key=lambda s: str(s["t"]))
        return earlier if fn == "first" else later
    merged = Counter(a.get("c", {}))
    merged.update(b.get("c", {}))
    return {"c": dict(merged.most_common(MAX_DISTINCT))}


def value_of(trait: ComputedTrait, state: dict[str, Any]) -> Any:
    """The trait value a state stands for."""
    fn = trait.function
    if fn == "count":
        return int(state.get("n", 0))
    if fn == "sum":
        return float(state.get("v", 0.0))
    if fn in ("min", "max", "first", "last"):
        return state.get("v")
    counts: dict[str, int] = state.get("c", {})
    if fn == "unique_count":
        return len(counts)
    if not counts:
        return None
    best = max(counts.items(), key=lambda kv: (kv[1], kv[0]))[0]
    return orjson.loads(best)


def update_computed(
    session: Session, events: Sequence[LogEntry], owners: Mapping[int, uuid.UUID]
) -> None:
    """Fold a batch of events into the running states of their persons' computed traits."""
    traits = definitions(session)
    persons = {owners[e.seq] for e in events if e.seq in owners}
    if not traits or not persons:
        return
    states = _load_states(session, persons)
    running = [t for t in traits if t.window_days is None]
    for e in events:
        person = owners.get(e.seq)
        if person is None:
            continue
        for trait in running:
            if applies(trait, e):
                key = (person, trait.id)
                states[key] = _state_row(session, states, key)
                states[key].state = step(trait, states[key].state, e)
    windowed = [t for t in traits if t.window_days is not None]
    if windowed:
        _recompute_windowed(session, persons, windowed, states)
    _publish(session, persons, traits, states)


def _load_states(
    session: Session, persons: Iterable[uuid.UUID]
) -> dict[tuple[uuid.UUID, int], ComputedState]:
    rows = session.scalars(select(ComputedState).where(ComputedState.person_id.in_(list(persons))))
    return {(r.person_id, r.trait_id): r for r in rows}


def _state_row(
    session: Session,
    states: dict[tuple[uuid.UUID, int], ComputedState],
    key: tuple[uuid.UUID, int],
) -> ComputedState:
    row = states.get(key)
    if row is None:
        row = ComputedState(person_id=key[0], trait_id=key[1], state={})
        session.add(row)
    return row


def _recompute_windowed(
    session: Session,
    persons: Iterable[uuid.UUID],
    traits: Sequence[ComputedTrait],
    states: dict[tuple[uuid.UUID, int], ComputedState],
    now: datetime | None = None,
) -> None:
    now = now or utcnow()
    widest = max(t.window_days or 0 for t in traits)
    since = now - timedelta(days=widest)
    rows = session.execute(
        select(PersonEvent.person_id, Event)
        .join(Event, Event.seq == PersonEvent.seq)
        .where(PersonEvent.person_id.in_(list(persons)), Event.timestamp >= since)
        .order_by(Event.seq)
    )
    fresh: dict[tuple[uuid.UUID, int], dict[str, Any]] = {
        (p, t.id): {} for p in persons for t in traits
    }
    for person, event in rows:
        for trait in traits:
            cutoff = now - timedelta(days=trait.window_days or 0)
            if applies(trait, event) and as_utc(event.timestamp) >= cutoff:
                fresh[(person, trait.id)] = step(trait, fresh[(person, trait.id)], event)
    for key, state in fresh.items():
        row = states[key] = _state_row(session, states, key)
        row.state = state


def _publish(
    session: Session,
    persons: Iterable[uuid.UUID],
    traits: Sequence[ComputedTrait],
    states: Mapping[tuple[uuid.UUID, int], ComputedState],
) -> None:
    for person in loaded_persons(session, persons):
        person.computed = {
            t.name: value_of(t, row.state if (row := states.get((person.id, t.id))) else {})
            for t in traits
        }


def move_computed(session: Session, pairs: Sequence[tuple[uuid.UUID, uuid.UUID]]) -> None:
    """Merge hook, for a group of merges in order: combine each merged person's running
    states into its survivor's (the values shown are recomputed once afterwards, by
    :func:`publish_survivors`)."""
    traits = definitions(session)
    if not traits:
        return
    session.flush()
    states = _load_states(session, {p for pair in pairs for p in pair})
    for survivor, merged in pairs:
        for trait in traits:
            theirs = states.pop((merged, trait.id), None)
            if theirs is None:
                continue
            mine = _state_row(session, states, (survivor, trait.id))
            states[(survivor, trait.id)] = mine
            mine.state = combine(trait, mine.state, theirs.state)
            if inspect(theirs).pending:  # made for a survivor earlier in this group
                session.expunge(theirs)
            else:
                session.delete(theirs)
    session.flush()


def publish_survivors(session: Session, survivors: set[uuid.UUID]) -> None:
    """After-merges hook: sliding windows over each survivor's (now joined) events, and the
    computed traits it shows, once each."""
    traits = definitions(session)
    if not traits or not survivors:
        return
    persons = sorted(survivors, key=str)
    states = _load_states(session, persons)
    windowed = [t for t in traits if t.window_days is not None]
    if windowed:
        _recompute_windowed(session, persons, windowed, states)
        session.flush()
    _publish(session, persons, traits, states)


def forget_computed(session: Session, persons: Sequence[uuid.UUID]) -> None:
    """Reset hook: drop the states of persons about to be replayed."""
    session.flush()
    session.execute(delete(ComputedState).where(ComputedState.person_id.in_(list(persons))))


def backfill(session: Session, trait: ComputedTrait, chunk: int = 2000) -> int:
    """Compute a new trait for everyone from the log; returns the persons it touched."""
    last: uuid.UUID | None = None
    touched = 0
    while True:
        statement = select(PersonEvent.person_id).distinct().order_by(PersonEvent.person_id)
        if last is not None:
            statement = statement.where(PersonEvent.person_id > last)
        persons = list(session.scalars(statement.limit(chunk)))
        if not persons:
            return touched
        _rebuild_for(session, persons, trait)
        touched += len(persons)
        last = persons[-1]


def _rebuild_for(session: Session, persons: Sequence[uuid.UUID], trait: ComputedTrait) -> None:
    states = _load_states(session, persons)
    if trait.window_days is not None:
        _recompute_windowed(session, persons, [trait], states)
    else:
        fresh: dict[uuid.UUID, dict[str, Any]] = {p: {} for p in persons}
        rows = session.execute(
            select(PersonEvent.person_id, Event)
            .join(Event, Event.seq == PersonEvent.seq)
            .where(PersonEvent.person_id.in_(list(persons)))
            .order_by(Event.seq)
        )
        for person, event in rows:
            if applies(trait, event):
                fresh[person] = step(trait, fresh[person], event)
        for person, state in fresh.items():
            row = _state_row(session, states, (person, trait.id))
            states[(person, trait.id)] = row
            row.state = state
    session.flush()
    _publish(session, persons, definitions(session), states)


def refresh_windowed(session: Session, now: datetime | None = None, chunk: int = 1000) -> int:
    """Recompute sliding-window traits whose value is not empty, as old events leave the
    window for persons who sent nothing new. Returns how many persons were refreshed."""
    windowed = [t for t in definitions(session) if t.window_days is not None]
    if not windowed:
        return 0
    ids = [t.id for t in windowed]
    persons = sorted(
        {
            row.person_id
            for row in session.scalars(select(ComputedState).where(ComputedState.trait_id.in_(ids)))
            if row.state
        },
        key=str,
    )
    everything = definitions(session)
    for start in range(0, len(persons), chunk):
        part = persons[start : start + chunk]
        states = _load_states(session, part)
        _recompute_windowed(session, part, windowed, states, now=now)
        session.flush()
        _publish(session, part, everything, states)
    return len(persons)
