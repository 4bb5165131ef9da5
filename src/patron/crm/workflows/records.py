"""The kinds of records rules work on: how to load one, which of its fields a rule may read
and set, and the service a change goes through (so it is checked, audited and an event,
exactly as through the API).

Persons, companies, deals, activities and tickets are built in.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import ColumnElement, inspect, select
from sqlalchemy.orm import Session

from patron.auth.service import Actor
from patron.core.clock import as_utc
from patron.core.errors import NotFound
from patron.crm import activities, companies, contacts, deals
from patron.crm.access import (
    live_company,
    readable_activities,
    readable_companies,
    readable_deals,
    readable_tickets,
)
from patron.crm.models import Activity, Company, Deal
from patron.crm.tickets import policies as ticket_policies
from patron.crm.tickets import service as tickets
from patron.crm.tickets.models import Ticket
from patron.identity import service as identity
from patron.identity.models import Person
from patron.profiles.access import readable_persons

# A task or a note created by a rule is an activity of this kind.
TASK, NOTE = "task", "note"


# What "set a field" turns a JSON value into, per field type (ValueError on a bad value);
# kinds registered from elsewhere (tickets) use them too.


def parse_uuid(value: Any) -> uuid.UUID | None:
    return None if value is None else uuid.UUID(str(value))


def parse_date(value: Any) -> date | None:
    return None if value is None else date.fromisoformat(str(value))


def parse_datetime(value: Any) -> datetime | None:
    return None if value is None else as_utc(datetime.fromisoformat(str(value)))


def parse_bool(value: Any) -> bool:
    if not isinstance(value, bool):
        raise ValueError("expected true or false")
    return value


def parse_text(value: Any) -> str | None:
    if value is not None and not isinstance(value, str):
        raise ValueError("expected text")
    return value


def parse_tags(value: Any) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(t, str) for t in value):
        raise ValueError("expected a list of tags")
    return value


def parse_number(value: Any) -> Any:
    if value is not None and (isinstance(value, bool) or not isinstance(value, int | float)):
        raise ValueError("expected a number")
    return value


def parse_amount(value: Any) -> Decimal | None:
    parse_number(value)
    return None if value is None else Decimal(str(value))


@dataclass(frozen=True)
class RecordKind:
    """One kind of record rules work on."""

    name: str
    model: type[Any]
    # Fetch by id, following merges; NotFound when it is gone.
    load: Callable[[Session, uuid.UUID], Any]
    # Who owns it ("assign an owner" sets this field): owner_id, or a ticket's assignee_id.
    owner_field: str
    # Fields "set a field" may set, each with what turns a JSON value into the service's
    # input (ValueError on a bad one); ``custom.KEY`` comes on top.
    settable: Mapping[str, Callable[[Any], Any]]
    # Change fields through the record's own service, as the system.
    update: Callable[[Session, uuid.UUID, dict[str, Any]], None]
    # The links of a task or note about this record (itself and its person).
    links: Callable[[Any], dict[str, uuid.UUID | None]]
    # Which of these records an actor may see (and so which runs on them).
    readable: Callable[[Actor | None], ColumnElement[bool]]
    # The fields whose changes its service records in the audit log (field_changed fires
    # on these, and on custom.KEY).
    audited: frozenset[str]
    # Allowed values of enumerated fields, checked when a rule is saved.
    choices: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    # Record type of its custom fields (None: it has none).
    custom_type: str | None = None
    # Conditions may also read ``traits.NAME`` (persons).
    has_traits: bool = False

    def columns(self) -> frozenset[str]:
        """The fields conditions may read: the table's columns."""
        return frozenset(c.key for c in inspect(self.model).column_attrs)

    def owner_of(self, record: Any) -> uuid.UUID | None:
        owner: uuid.UUID | None = getattr(record, self.owner_field, None)
        return owner


def _update_person(session: Session, record_id: uuid.UUID, changes: dict[str, Any]) -> None:
    contacts.update_contact(session, actor=None, person_id=record_id, changes=changes)


def _update_company(session: Session, record_id: uuid.UUID, changes: dict[str, Any]) -> None:
    companies.update_company(session, actor=None, company_id=record_id, changes=changes)


def _update_deal(session: Session, record_id: uuid.UUID, changes: dict[str, Any]) -> None:
    deals.update_deal(session, actor=None, deal_id=record_id, changes=changes)


def _update_activity(session: Session, record_id: uuid.UUID, changes: dict[str, Any]) -> None:
    activities.update_activity(session, actor=None, activity_id=record_id, changes=changes)


def _update_ticket(session: Session, record_id: uuid.UUID, changes: dict[str, Any]) -> None:
    tickets.update_ticket(session, actor=None, ticket_id=record_id, changes=changes)


def loader(model: type[Any], name: str) -> Callable[[Session, uuid.UUID], Any]:
    """Fetch a record of ``model`` by id; NotFound when it is gone."""

    def load(session: Session, record_id: uuid.UUID) -> Any:
        found = session.get(model, record_id)
        if found is None:
            raise NotFound(f"no {name} with id {record_id}", field="record_id")
        return found

    return load


KINDS: dict[str, RecordKind] = {
    "person": RecordKind(
        name="person",
        model=Person,
        load=identity.live_person,
        owner_field="owner_id",
        settable={
            "owner_id": parse_uuid,
            "lifecycle_stage": parse_text,
            "lead_status": parse_text,
            "tags": parse_tags,
        },
        update=_update_person,
        audited=frozenset({*contacts.EDITABLE, "archived_at"} - {"custom"}),
        links=lambda p: {"person_id": p.id},
        readable=readable_persons,
        choices={
            "lifecycle_stage": contacts.LIFECYCLE_STAGES,
            "lead_status": contacts.LEAD_STATUSES,
        },
        custom_type="person",
        has_traits=True,
    ),
    "company": RecordKind(
        name="company",
        model=Company,
        load=live_company,
        owner_field="owner_id",
        settable={
            "name": parse_text,
            "domain": parse_text,
            "industry": parse_text,
            "size": parse_number,
            "owner_id": parse_uuid,
            "tags": parse_tags,
        },
        update=_update_company,
        audited=frozenset({*companies.EDITABLE, "archived_at"} - {"custom"}),
        links=lambda c: {"company_id": c.id},
        readable=readable_companies,
        custom_type="company",
    ),
    "deal": RecordKind(
        name="deal",
        model=Deal,
        load=loader(Deal, "deal"),
        owner_field="owner_id",
        settable={
            "name": parse_text,
            "amount": parse_amount,
            "currency": parse_text,
            "expected_close_date": parse_date,
            "owner_id": parse_uuid,
            "stage_id": parse_uuid,
            "status": parse_text,
        },
        update=_update_deal,
        audited=frozenset(deals.EDITABLE) - {"custom"},
        links=lambda d: {"deal_id": d.id, "person_id": d.person_id},
        readable=readable_deals,
        choices={"status": deals.STATUSES},
        custom_type="deal",
    ),
    "activity": RecordKind(
        name="activity",
        model=Activity,
        load=loader(Activity, "activity"),
        owner_field="owner_id",
        settable={
            "subject": parse_text,
            "body": parse_text,
            "priority": parse_text,
            "due_at": parse_datetime,
            "done": parse_bool,
            "owner_id": parse_uuid,
        },
        update=_update_activity,
        audited=frozenset(activities.AUDITED),
        links=lambda a: {
            "person_id": a.person_id,
            "company_id": a.company_id,
            "deal_id": a.deal_id,
        },
        readable=readable_activities,
        choices={"priority": activities.PRIORITIES},
    ),
    "ticket": RecordKind(
        name="ticket",
        model=Ticket,
        load=loader(Ticket, "ticket"),
        owner_field="assignee_id",
        settable={
            "status": parse_text,
            "priority": parse_text,
            "assignee_id": parse_uuid,
            "tags": parse_tags,
        },
        update=_update_ticket,
        audited=frozenset(tickets.AUDITED) - {"custom"},
        links=lambda t: {"ticket_id": t.id, "person_id": t.person_id},
        readable=readable_tickets,
        choices={"status": tickets.STATUSES, "priority": ticket_policies.PRIORITIES},
        custom_type="ticket",
    ),
}


def kind_of(record_type: str) -> RecordKind | None:
    """The registered kind of a record type (``task`` is an activity), or None."""
    return KINDS.get("activity" if record_type == TASK else record_type)


def readable_ids(actor: Actor | None, kind: RecordKind) -> Any:
    """The ids of the records of ``kind`` that ``actor`` may see, as a subquery."""
    return select(kind.model.id).where(kind.readable(actor))


def field_value(kind: RecordKind, record: Any, name: str) -> Any:
    """A field of a record as a condition reads it: a column, ``custom.KEY`` or (persons)
    ``traits.NAME``; None when the record has no such value."""
    if name.startswith("custom."):
        return (getattr(record, "custom", None) or {}).get(name.removeprefix("custom."))
    if name.startswith("traits.") and kind.has_traits:
        return (getattr(record, "traits", None) or {}).get(name.removeprefix("traits."))
    return getattr(record, name, None)
