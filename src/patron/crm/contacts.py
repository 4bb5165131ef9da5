"""Contacts: the CRM side of persons (owner, lifecycle stage, lead status, tags, custom
fields, archiving), and finding persons by any of it or by name, email, phone or company.

There is no contact table: these are columns of the identity-resolved person.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from patron.auth.service import Actor, owns_alone, record_audit
from patron.collect.messages import MessageError
from patron.collect.models import LogEntry, Source
from patron.core.clock import utcnow
from patron.core.dialect import json_text
from patron.core.errors import InvalidInput
from patron.core.pagination import COUNT_LIMIT, Field, ListQuery, Page, keyset_page
from patron.crm import events
from patron.crm import fields as custom_fields
from patron.crm.access import can_see_for
from patron.crm.leads.models import LEAD_SCORE, PREDICTIVE_SCORE, score_column
from patron.crm.models import PersonCompany, SearchDocument
from patron.crm.records import changed, check_owner, check_tags, snapshot, toggle_archived
from patron.crm.search import SEARCH_COUNT_LIMIT, search_filter
from patron.identity.models import Person
from patron.profiles.access import (
    PERSONS,
    RECORD_TYPE,
    person_count_arms,
    readable_persons,
    sees_every_person,
    writable_person,
)

# Who may see which persons (``profiles.access``), tested on the copies of owner and id
# that search documents keep: a sales rep's search then counts from the documents.
PERSON_DOCUMENTS = PERSONS.over(SearchDocument.owner_id, SearchDocument.record_id)

LIFECYCLE_STAGES = (
    "subscriber",
    "lead",
    "marketingqualifiedlead",
    "salesqualifiedlead",
    "opportunity",
    "customer",
    "evangelist",
    "other",
)
LEAD_STATUSES = (
    "new",
    "open",
    "in_progress",
    "open_deal",
    "unqualified",
    "attempted_to_contact",
    "connected",
    "bad_timing",
)
EDITABLE = ("owner_id", "lifecycle_stage", "lead_status", "tags", "custom")
TRAIT_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,99}$")
SEARCHED_KINDS = ("email", "phone")
TOUCH_KEYS = (
    "utm_source",
    "utm_medium",
    "utm_campaign",
    "utm_term",
    "utm_content",
    "referrer",
    "landing_page",
    "form_id",
    "at",
)

BASE_FIELDS: dict[str, Field] = {
    "id": Field(Person.id, "uuid", uuid.UUID),
    "owner_id": Field(Person.owner_id, "uuid", uuid.UUID),
    "lifecycle_stage": Field(Person.lifecycle_stage),
    "lead_status": Field(Person.lead_status),
    "tags": Field(Person.tags, "list", sortable=False),
    "name": Field(json_text(Person.traits, "name")),
    "email": Field(json_text(Person.traits, "email")),
    "first_seen": Field(Person.first_seen, "datetime", datetime.fromisoformat),
    "last_seen": Field(Person.last_seen, "datetime", datetime.fromisoformat),
    "created_at": Field(Person.created_at, "datetime", datetime.fromisoformat),
    "updated_at": Field(Person.updated_at, "datetime", datetime.fromisoformat),
    "archived_at": Field(Person.archived_at, "datetime", datetime.fromisoformat),
    # Campaign attribution (patron.crm.forms): `first_touch.utm_source:eq:newsletter`.
    **{
        f"{touch}.{key}": Field(json_text(getattr(Person, touch), key))
        for touch in ("first_touch", "latest_touch")
        for key in TOUCH_KEYS
    },
    # The visible scores (an override, else the automatic value), 0 to 100.
    LEAD_SCORE: Field(score_column(LEAD_SCORE), "number", float),
    PREDICTIVE_SCORE: Field(score_column(PREDICTIVE_SCORE), "number", float),
}


def list_fields(session: Session, query: ListQuery | None = None) -> dict[str, Field]:
    """The fields contact lists filter and sort on: CRM columns, custom fields, and any
    ``traits.<name>`` the query mentions (compared as text)."""
    definitions = custom_fields.fields_of(session, RECORD_TYPE)
    out = {**BASE_FIELDS, **custom_fields.list_fields_for(Person.custom, definitions)}
    mentioned = [f.partition(":")[0] for f in (query.filters if query else ())]
    mentioned += [
        s.strip().removeprefix("-") for s in ((query.sort or "") if query else "").split(",")
    ]
    for name in mentioned:
        trait = name.removeprefix("traits.")
        if name.startswith("traits.") and TRAIT_NAME.match(trait):
            out[name] = Field(json_text(Person.traits, trait))
    return out


def list_contacts(
    session: Session,
    *,
    actor: Actor | None,
    query: ListQuery,
    search: str | None = None,
    archived: bool = False,
    company_id: uuid.UUID | None = None,
) -> Page[Person]:
    """Live persons ``actor`` may see, filtered, searched, sorted and paged."""
    conditions = [
        Person.merged_into.is_(None),
        Person.archived_at.is_not(None) if archived else Person.archived_at.is_(None),
    ]
    if company_id is not None:
        linked = select(PersonCompany.person_id).where(PersonCompany.company_id == company_id)
        conditions.append(Person.id.in_(linked))
    statement = select(Person).where(*conditions)
    count_from, count_from_arms = None, None
    if search and (found := search_filter(session, RECORD_TYPE, Person.id, search, entity=Person)):
        statement = statement.where(found.condition)
        if found.count_from is not None and sees_every_person(actor):
            count_from = found.count_from.where(*conditions)
        elif found.count_from is not None and found.by_owner and owns_alone(actor):
            count_from = found.count_from.where(*conditions)
            count_from_arms = PERSON_DOCUMENTS.count_arms(actor)
    return keyset_page(
        session,
        statement,
        fields=list_fields(session, query),
        query=query,
        default_sort="-created_at",
        tiebreak=BASE_FIELDS["id"],
        visible=readable_persons(actor),
        count_arms=person_count_arms(actor),
        count_from=count_from,
        count_from_arms=count_from_arms,
        count_limit=SEARCH_COUNT_LIMIT if search else COUNT_LIMIT,
    )


def _cleaned(session: Session, changes: Mapping[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name, value in changes.items():
        if name == "owner_id":
            out[name] = check_owner(session, value)
        elif name == "lifecycle_stage":
            out[name] = _one_of(value, LIFECYCLE_STAGES, name)
        elif name == "lead_status":
            out[name] = _one_of(value, LEAD_STATUSES, name)
        elif name == "tags":
            out[name] = check_tags(value or [])
    return out


def _one_of(value: Any, allowed: Sequence[str], name: str) -> str | None:
    if value is not None and value not in allowed:
        raise InvalidInput(f"{name} must be one of {', '.join(allowed)}", field=name)
    return None if value is None else str(value)


def update_contact(
    session: Session, *, actor: Actor | None, person_id: uuid.UUID, changes: Mapping[str, Any]
) -> tuple[Person, dict[str, Any], dict[str, Any]]:
    """Change a person's CRM fields; returns the person and what changed (before, after)."""
    person = writable_person(session, actor, person_id)
    before = snapshot(person, EDITABLE)
    cleaned = _cleaned(session, changes)
    custom = person.custom
    if "custom" in changes:
        custom = custom_fields.apply_values(
            person.custom,
            changes["custom"] or {},
            custom_fields.fields_of(session, RECORD_TYPE),
            record_type=RECORD_TYPE,
            can_see=can_see_for(session, actor),
        )
    for name, value in cleaned.items():
        setattr(person, name, value)
    person.custom = custom
    old, new = changed(before, snapshot(person, EDITABLE))
    if new:
        person.updated_at = utcnow()
        record_audit(
            session,
            actor=actor,
            action="update",
            record_type=RECORD_TYPE,
            record_id=str(person.id),
            before=old,
            after=new,
        )
    session.flush()
    _track_changes(session, actor, person.id, old, new)
    return person, old, new


# field -> (event, property of the old value, property of the new value)
TRACKED = {
    "owner_id": (events.OWNER_CHANGED, "previous_owner_id", "owner_id"),
    "lifecycle_stage": (events.STAGE_CHANGED, "previous_stage", "stage"),
    "lead_status": (events.LEAD_STATUS_CHANGED, "previous_status", "status"),
}


def _track_changes(
    session: Session,
    actor: Actor | None,
    person_id: uuid.UUID,
    old: dict[str, Any],
    new: dict[str, Any],
) -> None:
    """Write each change to the event log as a track on the person."""
    for name, (event, was, now) in TRACKED.items():
        if name in new:
            properties = {was: old.get(name), now: new[name]}
            events.track_crm_change(
                session, person_id=person_id, event=event, properties=properties, actor=actor
            )
    if "custom" in new:
        before, after = old.get("custom") or {}, new["custom"] or {}
        keys = sorted({*before, *after})
        delta = {k: after.get(k) for k in keys if before.get(k) != after.get(k)}
        # The values travel in context.crm.custom too, so that replaying the log (a
        # rebuild) applies them in order with imports and backends that set them.
        events.track_crm_change(
            session,
            person_id=person_id,
            event=events.CUSTOM_CHANGED,
            properties={"changes": delta},
            actor=actor,
            context={"crm": {"custom": delta}},
        )


def set_archived(
    session: Session, *, actor: Actor | None, person_id: uuid.UUID, archived: bool
) -> Person:
    """Archive or restore a contact (archived persons leave the contact lists, not the CDP)."""
    person = writable_person(session, actor, person_id)
    toggle_archived(session, actor=actor, record=person, record_type=RECORD_TYPE, archived=archived)
    return person


def fill_from_merged(session: Session, survivor_id: uuid.UUID, merged_id: uuid.UUID) -> None:
    """Merge hook: the survivor keeps its CRM fields and takes the merged person's where its
    own are empty; tags are united; the lifecycle stage is the further of the two. The merged
    person keeps its own values, so an unmerge gives them back."""
    survivor, merged = session.get(Person, survivor_id), session.get(Person, merged_id)
    if survivor is None or merged is None:
        return
    survivor.owner_id = survivor.owner_id or merged.owner_id
    survivor.lead_status = survivor.lead_status or merged.lead_status
    survivor.lifecycle_stage = _further(survivor.lifecycle_stage, merged.lifecycle_stage)
    survivor.tags = list(dict.fromkeys([*(survivor.tags or []), *(merged.tags or [])]))
    survivor.custom = {**(merged.custom or {}), **(survivor.custom or {})}


def _further(a: str | None, b: str | None) -> str | None:
    # "other" is off the funnel: any real stage beats it.
    rank = {s: i for i, s in enumerate(LIFECYCLE_STAGES)} | {"other": -1}
    candidates = [s for s in (a, b) if s is not None]
    return max(candidates, key=lambda s: rank.get(s, -1)) if candidates else None


def record_custom_values(
    session: Session, batch: Sequence[LogEntry], owners: Mapping[int, uuid.UUID]
) -> None:
    """Processing step: ``context.crm.custom`` of a message (a people import with
    ``custom.KEY`` targets, a backend, a CRM edit) sets the person's custom fields.

    Browser sources are ignored (their write key is public). Bad values are dropped: they
    were refused already where people could see why (the import's rejections, the API).
    """
    carrying = [e for e in batch if _crm_custom(e)]
    if not carrying:
        return
    sources = {e.source_id for e in carrying}
    rows = session.execute(select(Source.id, Source.kind).where(Source.id.in_(sources)))
    kinds: dict[uuid.UUID, str] = {row.id: row.kind for row in rows}
    check = custom_fields.values_checker(session)
    for event in carrying:
        person = session.get(Person, owners[event.seq]) if event.seq in owners else None
        if person is None or kinds.get(event.source_id) == "browser":
            continue
        values = {}
        for key, raw in _crm_custom(event).items():
            try:
                values.update(check({key: raw}))
            except InvalidInput:
                continue
        merged = {**person.custom, **values}
        person.custom = {k: v for k, v in merged.items() if v is not None}


def _crm_custom(event: LogEntry) -> dict[str, Any]:
    context = event.payload.get("context")
    crm = context.get("crm") if isinstance(context, dict) else None
    custom = crm.get("custom") if isinstance(crm, dict) else None
    return custom if isinstance(custom, dict) else {}


def import_checker(session: Session) -> Callable[[dict[str, Any]], dict[str, Any]]:
    """For people imports: checks ``custom.KEY`` values, a bad one rejects its row."""
    check = custom_fields.values_checker(session)

    def checked(values: dict[str, Any]) -> dict[str, Any]:
        try:
            return check(values)
        except InvalidInput as exc:
            raise MessageError("invalid_custom_field", exc.message, exc.field) from exc

    return checked
