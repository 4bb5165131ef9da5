"""Tickets: create, change (status moves run the SLA clock), comment, fetch, list.

Every change is audited and, when it concerns a person, is also a ``track`` event on
them (`Ticket Created`, `Ticket Status Changed`, `Ticket Solved`, `Ticket Comment Added`).
Services take ``at`` (the moment of the change, default now) so that the demo and imports
can record a ticket's history as it happened; it may not be in the future nor before the
ticket's last change.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, case, func, select
from sqlalchemy.orm import Session

from patron.auth.models import User
from patron.auth.service import Actor, record_audit
from patron.core.clock import as_utc, utcnow
from patron.core.dialect import lock_row_for_update
from patron.core.errors import Conflict, InvalidInput, NotFound
from patron.core.pagination import Field, ListQuery, Page, keyset_page
from patron.crm import events
from patron.crm import fields as custom_fields
from patron.crm.access import (
    TICKET,
    TICKET_STAFF,
    can_see_for,
    readable_tickets,
    reads_internal_notes,
    require_ticket_writer,
    visible_company,
    visible_ticket,
    writable_ticket,
)
from patron.crm.records import changed, check_tags, snapshot
from patron.crm.tickets import clock
from patron.crm.tickets.models import SlaPolicy, Ticket, TicketComment
from patron.crm.tickets.policies import CHANNELS, PRIORITIES, match_policy
from patron.identity import service as identity
from patron.identity.models import Person
from patron.profiles.access import visible_person

STATUSES = ("new", "open", "pending", "solved", "closed")
# A ticket starts in one of these; it is solved and closed by changing it.
FIRST_STATUSES = ("new", "open", "pending")
# Where each status may go. Closed is final; a solved ticket can be reopened.
TRANSITIONS: dict[str, tuple[str, ...]] = {
    "new": ("open", "pending", "solved"),
    "open": ("pending", "solved"),
    "pending": ("open", "solved"),
    "solved": ("open", "closed"),
    "closed": (),
}
EDITABLE = (
    "subject",
    "description",
    "person_id",
    "company_id",
    "status",
    "priority",
    "channel",
    "assignee_id",
    "tags",
    "custom",
)
AUDITED = (*EDITABLE, "sla_policy_id")
MAX_SUBJECT = 300
MAX_TEXT = 100_000
# How far ahead of our clock a given ``at`` may be (clocks of two hosts differ a little).
AT_SKEW = timedelta(seconds=5)


# --- changing tickets ------------------------------------------------------------------


def create_ticket(
    session: Session,
    *,
    actor: Actor | None,
    values: Mapping[str, Any],
    at: datetime | None = None,
) -> Ticket:
    """Open a ticket; the first SLA policy that covers its priority and channel sets its
    targets, and its clock starts unless it is created pending."""
    require_ticket_writer(actor)
    _check_known(values)
    now = _moment(at)
    status = _one_of(values.get("status") or "new", STATUSES, "status")
    if status not in FIRST_STATUSES:
        raise InvalidInput(
            f"a ticket starts {', '.join(FIRST_STATUSES)}; solve it by changing it",
            field="status",
        )
    ticket = Ticket(
        subject=_subject(values.get("subject")),
        description=_text(values.get("description"), "description"),
        status=status,
        priority=_one_of(values.get("priority") or "normal", PRIORITIES, "priority"),
        channel=_one_of(values.get("channel") or "api", CHANNELS, "channel"),
        assignee_id=_assignee(session, values.get("assignee_id")),
        tags=check_tags(values.get("tags") or []),
        custom={},
        created_by=actor.email if actor else "system",
        created_at=now,
        updated_at=now,
        sla_clock_seconds=0.0,
        first_response_breached=False,
        resolution_breached=False,
        **_links(session, actor, values),
    )
    ticket.custom = _custom(session, actor, {}, values.get("custom") or {})
    policy = match_policy(session, priority=ticket.priority, channel=ticket.channel)
    clock.apply_policy(ticket, policy)
    clock.settle(ticket, clock.calendar_of(policy) if policy else None, now)
    session.add(ticket)
    session.flush()
    record_audit(
        session,
        actor=actor,
        action="create",
        record_type=TICKET,
        record_id=str(ticket.id),
        after=snapshot(ticket, AUDITED),
    )
    track_ticket_event(
        session, actor, ticket, events.TICKET_CREATED, {"description": ticket.description}
    )
    return ticket


def update_ticket(
    session: Session,
    *,
    actor: Actor | None,
    ticket_id: uuid.UUID,
    changes: Mapping[str, Any],
    at: datetime | None = None,
) -> Ticket:
    """Change the given fields. A new status must be a move the ticket can make (solved
    stops the clock, pending pauses it, reopening resumes it); a new priority or channel
    applies the policy that covers it now."""
    ticket = _workable(session, actor, ticket_id)
    _check_known(changes)
    now = _moment(at, after=_last_moment(ticket))
    before = snapshot(ticket, AUDITED)
    calendar = clock.calendar_of_ticket(session, ticket)
    clock.fold(ticket, calendar, now)
    _apply(session, actor, ticket, changes)
    if "status" in changes:
        _move(ticket, changes["status"], now)
    if before["priority"] != ticket.priority or before["channel"] != ticket.channel:
        policy = match_policy(session, priority=ticket.priority, channel=ticket.channel)
        clock.apply_policy(ticket, policy)
        calendar = clock.calendar_of(policy) if policy else None
    clock.settle(ticket, calendar, now)
    ticket.updated_at = now
    session.flush()
    _audit_change(session, actor, ticket, before)
    _track_status(session, actor, ticket, before["status"])
    return ticket


def add_comment(
    session: Session,
    *,
    actor: Actor | None,
    ticket_id: uuid.UUID,
    body: str,
    public: bool = True,
    from_requester: bool = False,
    at: datetime | None = None,
) -> TicketComment:
    """Reply publicly or add an internal note. The first public reply by staff is the
    ticket's first response (a new ticket becomes open); the requester's own words, logged
    by staff, reopen a pending or solved ticket."""
    ticket = _workable(session, actor, ticket_id)
    text = _text(body, "body")
    if not text.strip():
        raise InvalidInput("a comment needs a body", field="body")
    if from_requester and not public:
        raise InvalidInput("the requester's words are public, not a note", field="public")
    now = _moment(at, after=_last_moment(ticket))
    before = snapshot(ticket, AUDITED)
    calendar = clock.calendar_of_ticket(session, ticket)
    clock.fold(ticket, calendar, now)
    comment = TicketComment(
        ticket_id=ticket.id,
        body=text,
        public=public,
        from_requester=from_requester,
        author_id=actor.user_id if actor else None,
        author_label=actor.email if actor else "system",
        created_at=now,
    )
    session.add(comment)
    if from_requester and ticket.status in ("pending", "solved"):
        _move(ticket, "open", now)
    elif public and not from_requester:
        ticket.first_responded_at = ticket.first_responded_at or now
        if ticket.status == "new":
            _move(ticket, "open", now)
    clock.settle(ticket, calendar, now)
    ticket.updated_at = now
    session.flush()
    record_audit(
        session,
        actor=actor,
        action="comment",
        record_type=TICKET,
        record_id=str(ticket.id),
        after={
            "comment_id": str(comment.id),
            "public": public,
            "from_requester": from_requester,
            "body": text,
        },
    )
    _audit_change(session, actor, ticket, before)
    if public:
        extra = {"comment_id": str(comment.id), "from_requester": from_requester}
        track_ticket_event(session, actor, ticket, events.TICKET_COMMENT_ADDED, extra)
    _track_status(session, actor, ticket, before["status"])
    return comment


def _workable(session: Session, actor: Actor | None, ticket_id: uuid.UUID) -> Ticket:
    """A ticket the actor may change, locked for this transaction on PostgreSQL (two
    changes at once would both count the clock from the same instant)."""
    ticket = writable_ticket(session, actor, ticket_id)
    if lock_row_for_update(session):
        session.refresh(ticket, with_for_update=True)
    if ticket.status == "closed":
        raise Conflict(f"ticket {ticket_id} is closed, and closed is final", field="ticket_id")
    return ticket


def _apply(
    session: Session, actor: Actor | None, ticket: Ticket, changes: Mapping[str, Any]
) -> None:
    """Every field but the status, each checked."""
    if "subject" in changes:
        ticket.subject = _subject(changes["subject"])
    if "description" in changes:
        ticket.description = _text(changes["description"], "description")
    if "priority" in changes:
        ticket.priority = _one_of(changes["priority"], PRIORITIES, "priority")
    if "channel" in changes:
        ticket.channel = _one_of(changes["channel"], CHANNELS, "channel")
    if "assignee_id" in changes:
        ticket.assignee_id = _assignee(session, changes["assignee_id"])
    if "tags" in changes:
        ticket.tags = check_tags(changes["tags"] or [])
    for name, value in _links(session, actor, changes).items():
        setattr(ticket, name, value)
    if "custom" in changes:
        ticket.custom = _custom(session, actor, ticket.custom, changes["custom"] or {})


def _move(ticket: Ticket, status: Any, now: datetime) -> None:
    """Move the ticket to ``status`` (staying put is no move)."""
    target = _one_of(status, STATUSES, "status")
    if target == ticket.status:
        return
    if target not in TRANSITIONS[ticket.status]:
        allowed = ", ".join(TRANSITIONS[ticket.status]) or "nothing"
        raise Conflict(
            f"a {ticket.status} ticket cannot become {target} (it can become {allowed})",
            field="status",
        )
    if target == "solved":
        ticket.solved_at = now
    elif ticket.status == "solved" and target == "open":
        ticket.solved_at = None  # reopened: resolution is measured to the next solve
    if target == "closed":
        ticket.closed_at = now
    ticket.status = target


def _audit_change(
    session: Session, actor: Actor | None, ticket: Ticket, before: dict[str, Any]
) -> None:
    old, new = changed(before, snapshot(ticket, AUDITED))
    if new:
        record_audit(
            session,
            actor=actor,
            action="update",
            record_type=TICKET,
            record_id=str(ticket.id),
            before=old,
            after=new,
        )


# --- checking input --------------------------------------------------------------------


def _check_known(values: Mapping[str, Any]) -> None:
    unknown = sorted(set(values) - set(EDITABLE))
    if unknown:
        raise InvalidInput(f"a ticket has no field {unknown[0]}", field=unknown[0])


def _moment(at: datetime | None, *, after: datetime | None = None) -> datetime:
    """The moment of a change: now, or a given time that is not ahead of now, nor behind
    the ticket's last change (the clock only runs forwards)."""
    now = utcnow()
    if at is None:
        return max(now, as_utc(after)) if after is not None else now
    moment = as_utc(at)
    if moment > now + AT_SKEW:
        raise InvalidInput("a change cannot be dated in the future", field="at")
    if after is not None and moment < as_utc(after):
        raise InvalidInput("a change cannot be dated before the ticket's last one", field="at")
    return moment


def _last_moment(ticket: Ticket) -> datetime:
    """The latest moment the ticket's record speaks of (a change, or the SLA job's look)."""
    since = ticket.sla_clock_since
    last = as_utc(ticket.updated_at)
    return max(last, as_utc(since)) if since is not None else last


def _one_of(value: Any, allowed: tuple[str, ...], field: str) -> str:
    if value not in allowed:
        raise InvalidInput(f"{field} must be one of {', '.join(allowed)}", field=field)
    return str(value)


def _subject(value: Any) -> str:
    subject = str(value or "").strip()
    if not subject:
        raise InvalidInput("a ticket needs a subject", field="subject")
    if len(subject) > MAX_SUBJECT:
        raise InvalidInput(f"subject has at most {MAX_SUBJECT} characters", field="subject")
    return subject


def _text(value: Any, field: str) -> str:
    text = "" if value is None else str(value)
    if len(text) > MAX_TEXT:
        raise InvalidInput(f"{field} has at most {MAX_TEXT} characters", field=field)
    return text


def _assignee(session: Session, user_id: uuid.UUID | None) -> uuid.UUID | None:
    """An assignee is an active user who works tickets (admin, manager or support)."""
    if user_id is None:
        return None
    user = session.get(User, user_id)
    if user is None or not user.active:
        raise InvalidInput(f"no active user with id {user_id}", field="assignee_id")
    if user.role not in {r.value for r in TICKET_STAFF}:
        raise InvalidInput(
            f"a {user.role} user does not work tickets (admins, managers and support do)",
            field="assignee_id",
        )
    return user_id


def _links(
    session: Session, actor: Actor | None, values: Mapping[str, Any]
) -> dict[str, uuid.UUID | None]:
    """The requester and company: records the actor may see (a 400 naming them)."""
    out: dict[str, uuid.UUID | None] = {}
    for name, fetch in (("person_id", visible_person), ("company_id", visible_company)):
        if name not in values:
            continue
        value = values[name]
        if value is None:
            out[name] = None
            continue
        try:
            out[name] = fetch(session, actor, value).id
        except NotFound as exc:
            raise InvalidInput(f"no {name[:-3]} {value} you can see", field=name) from exc
    return out


def _custom(
    session: Session, actor: Actor | None, current: Mapping[str, Any], changes: Mapping[str, Any]
) -> dict[str, Any]:
    return custom_fields.apply_values(
        current,
        changes,
        custom_fields.fields_of(session, TICKET),
        record_type=TICKET,
        can_see=can_see_for(session, actor),
    )


# --- events ----------------------------------------------------------------------------


def _track_status(
    session: Session, actor: Actor | None, ticket: Ticket, previous: str | None
) -> None:
    if ticket.status == previous:
        return
    moved = {"previous_status": previous}
    track_ticket_event(session, actor, ticket, events.TICKET_STATUS_CHANGED, moved)
    if ticket.status == "solved":
        track_ticket_event(session, actor, ticket, events.TICKET_SOLVED, {})


def track_ticket_event(
    session: Session, actor: Actor | None, ticket: Ticket, event: str, extra: dict[str, Any]
) -> None:
    """A ticket's event goes on its requester as they are now (after merges); a ticket
    without a requester has nobody to put it on."""
    if ticket.person_id is None:
        return
    person = identity.live_person(session, ticket.person_id)
    properties = {
        "ticket_id": str(ticket.id),
        "subject": ticket.subject,
        "status": ticket.status,
        "priority": ticket.priority,
        "channel": ticket.channel,
        **extra,
    }
    if "description" in properties:  # events are small; the ticket holds the whole text
        properties["description"] = str(properties["description"])[:2000]
    events.track_crm_change(
        session, person_id=person.id, event=event, properties=properties, actor=actor
    )


# --- reading tickets -------------------------------------------------------------------


def get_ticket(session: Session, *, actor: Actor | None, ticket_id: uuid.UUID) -> Ticket:
    """A ticket ``actor`` may see (404 otherwise)."""
    return visible_ticket(session, actor, ticket_id)


def requester_condition(session: Session, person_id: uuid.UUID) -> ColumnElement[bool]:
    """Tickets of a person: those made for them and for the persons merged into them."""
    return Ticket.person_id.in_([person_id, *identity.merged_ids(session, person_id)])


def _parse_bool(value: str) -> bool:
    if value.lower() in ("true", "1", "yes"):
        return True
    if value.lower() in ("false", "0", "no"):
        return False
    raise ValueError("expected true or false")


def _when(value: str) -> datetime:
    return as_utc(datetime.fromisoformat(value))


def list_fields(session: Session, now: datetime) -> dict[str, Field]:
    """What ticket lists filter and sort on, with the SLA states as of ``now``."""
    live_person = func.coalesce(
        select(Person.merged_into).where(Person.id == Ticket.person_id).scalar_subquery(),
        Ticket.person_id,
    )
    rank = case({p: i for i, p in enumerate(PRIORITIES)}, value=Ticket.priority)
    fields: dict[str, Field] = {
        "id": Field(Ticket.id, "uuid", uuid.UUID),
        "subject": Field(Ticket.subject),
        "status": Field(Ticket.status),
        "priority": Field(Ticket.priority),
        # low 0, normal 1, high 2, urgent 3: `sort=-priority_rank` puts urgent first.
        "priority_rank": Field(rank, "number", int),
        "channel": Field(Ticket.channel),
        # The requester as they are now: tickets of persons merged into them match too.
        "person_id": Field(live_person, "uuid", uuid.UUID),
        "company_id": Field(Ticket.company_id, "uuid", uuid.UUID),
        "assignee_id": Field(Ticket.assignee_id, "uuid", uuid.UUID),
        "sla_policy_id": Field(Ticket.sla_policy_id, "uuid", uuid.UUID),
        "created_by": Field(Ticket.created_by),
        "tags": Field(Ticket.tags, "list", sortable=False),
        "sla_state": Field(clock.overall_column(now)),
        "sla_due_at": Field(clock.due_column(), "datetime", _when),
    }
    for name in ("created_at", "updated_at", "first_responded_at", "solved_at", "closed_at"):
        fields[name] = Field(getattr(Ticket, name), "datetime", _when)
    for target in clock.TARGETS:
        fields[f"{target}_state"] = Field(clock.state_column(target, now))
        fields[f"{target}_due_at"] = Field(getattr(Ticket, f"{target}_due_at"), "datetime", _when)
        fields[f"{target}_breached"] = Field(
            clock.breached_column(target, now), "bool", _parse_bool
        )
        fields[f"{target}_minutes"] = Field(getattr(Ticket, f"{target}_minutes"), "number", float)
    definitions = custom_fields.fields_of(session, TICKET)
    return {**fields, **custom_fields.list_fields_for(Ticket.custom, definitions)}


def list_tickets(
    session: Session,
    *,
    actor: Actor | None,
    query: ListQuery,
    search: str | None = None,
    now: datetime | None = None,
) -> Page[Ticket]:
    """Tickets ``actor`` may see, filtered (any column, ``sla_state``, due times, custom
    fields), searched by subject, sorted (newest first by default) and paged."""
    statement = select(Ticket).where(readable_tickets(actor))
    if search:
        for word in search.lower().split()[:10]:
            statement = statement.where(func.lower(Ticket.subject).contains(word, autoescape=True))
    fields = list_fields(session, now or utcnow())
    return keyset_page(
        session,
        statement,
        fields=fields,
        query=query,
        default_sort="-created_at",
        tiebreak=fields["id"],
    )


COMMENT_FIELDS: dict[str, Field] = {
    "id": Field(TicketComment.id, "uuid", uuid.UUID),
    "created_at": Field(TicketComment.created_at, "datetime", _when),
    "public": Field(TicketComment.public, "bool", _parse_bool),
    "from_requester": Field(TicketComment.from_requester, "bool", _parse_bool),
    "author_id": Field(TicketComment.author_id, "uuid", uuid.UUID),
}


def list_comments(
    session: Session, *, actor: Actor | None, ticket_id: uuid.UUID, query: ListQuery
) -> Page[TicketComment]:
    """A ticket's comments, oldest first; internal notes only for those who work tickets."""
    ticket = visible_ticket(session, actor, ticket_id)
    statement = select(TicketComment).where(TicketComment.ticket_id == ticket.id)
    if not reads_internal_notes(actor):
        statement = statement.where(TicketComment.public.is_(True))
    return keyset_page(
        session,
        statement,
        fields=COMMENT_FIELDS,
        query=query,
        default_sort="created_at",
        tiebreak=COMMENT_FIELDS["id"],
    )


@dataclass
class SlaView:
    """A ticket's SLA as of a moment: its policy, overall state and each target."""

    policy_id: uuid.UUID | None
    policy_name: str | None
    state: str | None
    paused: bool
    due_at: datetime | None
    targets: dict[str, clock.TargetView]


def sla_view(session: Session, ticket: Ticket, now: datetime | None = None) -> SlaView:
    """The ticket's SLA right now, computed from its clock (right even if the SLA job has
    not run since a target came due)."""
    moment = now or utcnow()
    policy = session.get(SlaPolicy, ticket.sla_policy_id) if ticket.sla_policy_id else None
    calendar = clock.calendar_of(policy) if policy else None
    targets = {
        target: view
        for target in clock.TARGETS
        if (view := clock.target_view(ticket, target, calendar, moment)) is not None
    }
    running = [v.due_at for v in targets.values() if v.completed_at is None and v.due_at]
    return SlaView(
        policy_id=policy.id if policy else None,
        policy_name=policy.name if policy else None,
        state=clock.overall([v.state for v in targets.values()]),
        paused=any(v.paused for v in targets.values()),
        due_at=min(running, default=None),
        targets=targets,
    )
