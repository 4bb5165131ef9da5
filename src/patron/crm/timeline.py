"""One timeline per person, company and deal: CDP events, CRM activities, changes (the
audit log: field changes, stage changes, merges), and support tickets with their comments,
interleaved newest first.

Each source is read in the timeline's order from the cursor on, one page's
worth at most, and the pages are merged: a keyset page costs three index reads whatever
the history's length. Ties in time are broken by source, then by each source's own key.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, Select, and_, false, func, or_, select
from sqlalchemy.orm import Session

from patron.auth.models import AuditEntry
from patron.auth.service import Actor
from patron.collect.models import Event
from patron.core.clock import as_utc
from patron.core.errors import InvalidInput
from patron.core.pagination import Page, decode_cursor, encode_cursor
from patron.crm.access import (
    activities_on_visible_record,
    reads_internal_notes,
    tickets_on_visible_record,
    visible_company,
    visible_deal,
)
from patron.crm.models import Activity, PersonCompany
from patron.crm.tickets.models import Ticket, TicketComment
from patron.identity import service as identity
from patron.identity.models import Person, PersonEvent
from patron.profiles.access import readable_persons, visible_person

ACTIVITY_KINDS = ("task", "call", "meeting", "note", "email")
KINDS = ("event", "change", *ACTIVITY_KINDS, "ticket", "comment")
EVENT, ACTIVITY, CHANGE, TICKET, COMMENT = 0, 1, 2, 3, 4
# Sources keyed by an integer; the others by a UUID.
INTEGER_KEYS = (EVENT, CHANGE)


@dataclass
class Entry:
    kind: str  # event, change, ticket, comment, or the activity's kind
    at: datetime
    id: str
    title: str
    data: dict[str, Any]
    rank: int
    key: Any


@dataclass
class Scope:
    """What one record's timeline draws from."""

    persons: list[uuid.UUID]  # whose events (and whose activities, for a person)
    activities: ColumnElement[bool]
    record_type: str
    record_id: str
    tickets: ColumnElement[bool] = field(default_factory=false)


def person_scope(session: Session, actor: Actor | None, person_id: uuid.UUID) -> Scope:
    person = visible_person(session, actor, person_id)
    ids = [person.id, *identity.merged_ids(session, person.id)]
    return Scope(
        [person.id],
        Activity.person_id.in_(ids),
        "person",
        str(person.id),
        tickets=Ticket.person_id.in_(ids),
    )


def company_scope(session: Session, actor: Actor | None, company_id: uuid.UUID) -> Scope:
    company = visible_company(session, actor, company_id)
    persons = list(
        session.scalars(
            select(Person.id)
            .join(PersonCompany, PersonCompany.person_id == Person.id)
            .where(PersonCompany.company_id == company.id, readable_persons(actor))
        )
    )
    return Scope(
        persons,
        Activity.company_id == company.id,
        "company",
        str(company.id),
        tickets=Ticket.company_id == company.id,
    )


def deal_scope(session: Session, actor: Actor | None, deal_id: uuid.UUID) -> Scope:
    deal = visible_deal(session, actor, deal_id)
    persons: list[uuid.UUID] = []
    if deal.person_id is not None:
        person = identity.live_person(session, deal.person_id)
        seen = session.scalar(
            select(Person.id).where(Person.id == person.id, readable_persons(actor))
        )
        persons = [person.id] if seen else []
    return Scope(persons, Activity.deal_id == deal.id, "deal", str(deal.id))


def timeline(
    session: Session,
    *,
    actor: Actor | None,
    scope: Scope,
    kinds: Sequence[str] = (),
    limit: int = 50,
    cursor: str | None = None,
) -> Page[Entry]:
    """One page of the scope's timeline, newest first, of the given kinds (default all)."""
    wanted = set(kinds or KINDS)
    unknown = sorted(wanted - set(KINDS))
    if unknown:
        raise InvalidInput(f"kind {unknown[0]!r} is not one of {', '.join(KINDS)}", field="kind")
    after = _cursor(cursor)
    sources: list[tuple[int, Select[Any], Any, Any]] = []
    if "event" in wanted and scope.persons:
        events = (
            select(Event)
            .join(PersonEvent, PersonEvent.seq == Event.seq)
            .where(PersonEvent.person_id.in_(scope.persons))
        )
        sources.append((EVENT, events, Event.timestamp, Event.seq))
    activity_kinds = [k for k in ACTIVITY_KINDS if k in wanted]
    if activity_kinds:
        activities = select(Activity).where(
            scope.activities,
            Activity.kind.in_(activity_kinds),
            activities_on_visible_record(actor),
        )
        sources.append((ACTIVITY, activities, Activity.occurred_at, Activity.id))
    if "change" in wanted:
        changes = select(AuditEntry).where(
            AuditEntry.record_type == scope.record_type, AuditEntry.record_id == scope.record_id
        )
        sources.append((CHANGE, changes, AuditEntry.at, AuditEntry.id))
    sources += _ticket_sources(actor, scope, wanted)
    total = 0
    entries: list[Entry] = []
    for rank, statement, at, key in sources:
        total += session.scalar(select(func.count()).select_from(statement.subquery())) or 0
        if after is not None:
            statement = statement.where(_beyond(rank, at, key, after))
        rows = session.scalars(statement.order_by(at.desc(), key.desc()).limit(limit + 1))
        entries += [_entry(rank, row) for row in rows]
    entries.sort(key=lambda e: (as_utc(e.at), e.rank, e.key), reverse=True)
    page = entries[:limit]
    more = len(entries) > limit
    next_cursor = None
    if more and page:
        last = page[-1]
        next_cursor = encode_cursor([last.at.isoformat(), last.rank, str(last.key)])
    return Page(page, total, next_cursor)


def _ticket_sources(
    actor: Actor | None, scope: Scope, wanted: set[str]
) -> list[tuple[int, Select[Any], Any, Any]]:
    """The scope's tickets and their comments that ``actor`` may see (internal notes only
    for those who work tickets)."""
    sources: list[tuple[int, Select[Any], Any, Any]] = []
    if "ticket" in wanted:
        tickets = select(Ticket).where(scope.tickets, tickets_on_visible_record(actor))
        sources.append((TICKET, tickets, Ticket.created_at, Ticket.id))
    if "comment" in wanted:
        comments = (
            select(TicketComment)
            .join(Ticket, Ticket.id == TicketComment.ticket_id)
            .where(scope.tickets, tickets_on_visible_record(actor))
        )
        if not reads_internal_notes(actor):
            comments = comments.where(TicketComment.public.is_(True))
        sources.append((COMMENT, comments, TicketComment.created_at, TicketComment.id))
    return sources


def _cursor(cursor: str | None) -> tuple[datetime, int, str] | None:
    if cursor is None:
        return None
    values = decode_cursor(cursor)
    try:
        at, rank, key = values
        return datetime.fromisoformat(at), int(rank), str(key)
    except (ValueError, TypeError) as exc:
        raise InvalidInput("cursor is not one this API issued", field="cursor") from exc


def _beyond(rank: int, at: Any, key: Any, after: tuple[datetime, int, str]) -> ColumnElement[bool]:
    """Rows of one source that come after the cursor in (time, source, key) descending."""
    when, cursor_rank, cursor_key = after
    if rank < cursor_rank:
        return at <= when  # type: ignore[no-any-return]
    if rank > cursor_rank:
        return at < when  # type: ignore[no-any-return]
    try:
        typed: Any = int(cursor_key) if rank in INTEGER_KEYS else uuid.UUID(cursor_key)
    except ValueError:
        return false()
    return or_(at < when, and_(at == when, key < typed))


def _entry(rank: int, row: Any) -> Entry:
    if rank == EVENT:
        title = row.event or row.type
        data = {"seq": row.seq, "type": row.type, "event": row.event, "payload": row.payload}
        return Entry("event", row.timestamp, str(row.seq), title, data, rank, row.seq)
    if rank == ACTIVITY:
        data = {
            "subject": row.subject,
            "body": row.body,
            "owner_id": str(row.owner_id) if row.owner_id else None,
            "person_id": str(row.person_id) if row.person_id else None,
            "company_id": str(row.company_id) if row.company_id else None,
            "deal_id": str(row.deal_id) if row.deal_id else None,
            "ticket_id": str(row.ticket_id) if row.ticket_id else None,
            "done": row.done_at is not None,
            "due_at": row.due_at.isoformat() if row.due_at else None,
            "direction": row.direction,
            "outcome": row.outcome,
            "details": row.details,
        }
        return Entry(
            row.kind, row.occurred_at, str(row.id), row.subject or row.kind, data, rank, row.id
        )
    if rank == TICKET:
        return _ticket_entry(row)
    if rank == COMMENT:
        return _comment_entry(row)
    data = {
        "action": row.action,
        "actor": row.actor_label,
        "before": row.before,
        "after": row.after,
    }
    return Entry("change", row.at, str(row.id), row.action, data, rank, row.id)


def _ticket_entry(ticket: Ticket) -> Entry:
    data = {
        "subject": ticket.subject,
        "body": ticket.description,
        "status": ticket.status,
        "priority": ticket.priority,
        "channel": ticket.channel,
        "assignee_id": str(ticket.assignee_id) if ticket.assignee_id else None,
        "person_id": str(ticket.person_id) if ticket.person_id else None,
        "company_id": str(ticket.company_id) if ticket.company_id else None,
        "solved_at": ticket.solved_at.isoformat() if ticket.solved_at else None,
    }
    return Entry(
        "ticket", ticket.created_at, str(ticket.id), ticket.subject, data, TICKET, ticket.id
    )


def _comment_entry(comment: TicketComment) -> Entry:
    if comment.from_requester:
        title = "Requester wrote"
    else:
        title = "Public reply" if comment.public else "Internal note"
    data = {
        "ticket_id": str(comment.ticket_id),
        "body": comment.body,
        "public": comment.public,
        "from_requester": comment.from_requester,
        "author": comment.author_label,
    }
    return Entry("comment", comment.created_at, str(comment.id), title, data, COMMENT, comment.id)
