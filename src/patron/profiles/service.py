"""Profiles: a person with traits, computed traits, identities, companies and merges; the
timeline; survivorship rules and computed trait definitions."""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from patron.auth.service import Actor, record_audit
from patron.collect.models import Event, Source
from patron.core.errors import Conflict, InvalidInput, NotFound
from patron.core.pagination import Page, decode_int_cursor, encode_cursor
from patron.crm.models import Company, PersonCompany
from patron.crm.service import companies_of
from patron.identity import service as identity
from patron.identity.models import Identity, Merge, Person, PersonEvent
from patron.profiles.computed import backfill, forget_definitions
from patron.profiles.models import (
    COMPUTED_FUNCTIONS,
    SURVIVORSHIP_RULES,
    ComputedTrait,
    TraitRule,
    TraitValue,
)
from patron.profiles.traits import lineage, refresh_visible

NAME_PATTERN = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,99}$")
NEEDS_PROPERTY = ("sum", "min", "max", "first", "last", "unique_count", "most_frequent")


@dataclass
class Profile:
    person: Person
    identities: list[Identity]
    companies: list[tuple[Company, PersonCompany]]
    merges: list[Merge]
    merged_ids: list[uuid.UUID]
    lineage: dict[str, dict[str, Any]] | None = None


def get_profile(
    session: Session,
    person_id: uuid.UUID,
    *,
    actor: Actor | None = None,
    with_lineage: bool = False,
) -> Profile:
    """A person's whole profile (an id of a merged person finds the survivor), showing only
    the companies ``actor`` may see."""
    person = identity.live_person(session, person_id)
    merged = identity.merged_ids(session, person.id)
    return Profile(
        person=person,
        identities=identity.identities_of(session, person.id),
        companies=companies_of(session, person.id, actor=actor),
        merges=identity.merge_history(session, person.id, merged),
        merged_ids=merged,
        lineage=lineage(session, person.id) if with_lineage else None,
    )


def timeline(
    session: Session,
    person_id: uuid.UUID,
    *,
    limit: int,
    cursor: str | None,
    type: str | None = None,
) -> Page[Event]:
    """A person's events, newest first (log order), optionally of one type."""
    person = identity.live_person(session, person_id)
    base = (
        select(Event)
        .join(PersonEvent, PersonEvent.seq == Event.seq)
        .where(PersonEvent.person_id == person.id)
    )
    if type is not None:
        base = base.where(Event.type == type)
    total = session.scalar(select(func.count()).select_from(base.subquery())) or 0
    after = decode_int_cursor(cursor)
    statement = base.order_by(Event.seq.desc()).limit(limit + 1)
    if after is not None:
        statement = statement.where(Event.seq < after)
    rows = list(session.scalars(statement))
    more = len(rows) > limit
    rows = rows[:limit]
    return Page(rows, total, encode_cursor([rows[-1].seq]) if more and rows else None)


# --- survivorship rules ----------------------------------------------------------------


def list_trait_rules(session: Session) -> list[TraitRule]:
    return list(session.scalars(select(TraitRule).order_by(TraitRule.name)))


def set_trait_rule(
    session: Session,
    *,
    name: str,
    rule: str,
    source_priority: list[str],
    actor: Actor | None,
) -> TraitRule:
    """Choose how a trait's visible value is picked; every profile is updated to match."""
    if rule not in SURVIVORSHIP_RULES:
        raise InvalidInput(f"rule must be one of {', '.join(SURVIVORSHIP_RULES)}", field="rule")
    if not name or len(name) > 200:
        raise InvalidInput("a trait name has 1 to 200 characters", field="name")
    if rule == "source_priority" and not source_priority:
        raise InvalidInput("source_priority needs at least one source", field="source_priority")
    ids = [str(_source_id(session, s)) for s in source_priority]
    row = session.get(TraitRule, name)
    before = {"rule": row.rule, "source_priority": row.source_priority} if row else None
    if row is None:
        row = TraitRule(name=name)
        session.add(row)
    row.rule, row.source_priority = rule, ids
    session.flush()
    holders = list(session.scalars(select(TraitValue.person_id).where(TraitValue.name == name)))
    for start in range(0, len(holders), 1000):
        refresh_visible(session, holders[start : start + 1000])
    record_audit(
        session,
        actor=actor,
        action="update" if before else "create",
        record_type="trait_rule",
        record_id=name,
        before=before,
        after={"rule": rule, "source_priority": ids},
    )
    return row


def _source_id(session: Session, ref: str) -> uuid.UUID:
    try:
        found = session.get(Source, uuid.UUID(ref))
    except ValueError:
        found = session.scalar(select(Source).where(Source.name == ref))
    if found is None:
        raise InvalidInput(f"no source {ref!r}", field="source_priority")
    return found.id


# --- computed traits -------------------------------------------------------------------


def list_computed(session: Session) -> list[ComputedTrait]:
    return list(session.scalars(select(ComputedTrait).order_by(ComputedTrait.id)))


def create_computed(
    session: Session,
    *,
    name: str,
    function: str,
    event: str | None,
    property: str | None,
    window_days: int | None,
    actor: Actor | None,
) -> ComputedTrait:
    """Define a computed trait and compute it for every person from the log."""
    if not NAME_PATTERN.match(name):
        raise InvalidInput(
            "a computed trait name is letters, digits and underscores (1-100)", field="name"
        )
    if function not in COMPUTED_FUNCTIONS:
        raise InvalidInput(
            f"function must be one of {', '.join(COMPUTED_FUNCTIONS)}", field="function"
        )
    if function in NEEDS_PROPERTY and not property:
        raise InvalidInput(f"{function} needs the property it aggregates", field="property")
    if window_days is not None and not 1 <= window_days <= 3650:
        raise InvalidInput("window_days is between 1 and 3650", field="window_days")
    if session.scalar(select(ComputedTrait.id).where(ComputedTrait.name == name)) is not None:
        raise Conflict(f"a computed trait named {name!r} exists", field="name")
    trait = ComputedTrait(
        name=name, function=function, event=event, property=property, window_days=window_days
    )
    session.add(trait)
    session.flush()
    forget_definitions(session)
    backfill(session, trait)
    record_audit(
        session,
        actor=actor,
        action="create",
        record_type="computed_trait",
        record_id=str(trait.id),
        after={"name": name, "function": function, "event": event, "property": property},
    )
    return trait


def delete_computed(session: Session, *, trait_id: int, actor: Actor | None) -> None:
    """Remove a computed trait definition and its values (built-in ones stay)."""
    trait = session.get(ComputedTrait, trait_id)
    if trait is None:
        raise NotFound(f"no computed trait {trait_id}", field="trait_id")
    if trait.builtin:
        raise Conflict(f"{trait.name} is built in and cannot be removed", field="trait_id")
    name = trait.name
    session.delete(trait)
    forget_definitions(session)
    session.flush()
    for person in session.scalars(select(Person).where(Person.computed.is_not(None))):
        if name in (person.computed or {}):
            person.computed = {k: v for k, v in person.computed.items() if k != name}
    record_audit(
        session,
        actor=actor,
        action="delete",
        record_type="computed_trait",
        record_id=str(trait_id),
        before={"name": name},
    )
