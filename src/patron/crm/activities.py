"""Activities: tasks, calls, meetings, notes and logged emails on persons, companies,
deals and tickets; "my tasks"; reminders as notifications."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from email_validator import EmailNotValidError, validate_email
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from patron.auth.service import Actor, actor_label, record_audit
from patron.core.clock import as_utc, utcnow
from patron.core.errors import Conflict, Forbidden, InvalidInput, NotFound
from patron.core.pagination import Field, ListQuery, Page, keyset_page
from patron.crm import events
from patron.crm.access import (
    ACTIVITY,
    readable_activities,
    require_activity_writer,
    visible_activity,
    visible_ticket,
    writable_company,
    writable_deal,
)
from patron.crm.models import Activity, Deal
from patron.crm.records import changed, check_owner, snapshot
from patron.crm.tickets.models import Ticket
from patron.identity import service as identity
from patron.profiles.access import writable_person

KINDS = ("task", "call", "meeting", "note", "email")
PRIORITIES = ("low", "normal", "high")
DIRECTIONS = ("inbound", "outbound")
OUTCOMES = ("connected", "no_answer", "left_voicemail", "busy", "wrong_number")
MAX_BODY = 100_000
MAX_ATTENDEES = 200
# Which fields each kind takes, beyond subject, body, links, owner_id and occurred_at.
KIND_FIELDS = {
    "task": {"due_at", "remind_at", "priority", "done"},
    "call": {"direction", "duration_seconds", "outcome"},
    "meeting": {"starts_at", "ends_at", "attendees"},
    "note": set(),
    "email": {"direction"},
}
COMMON = {
    "subject",
    "body",
    "person_id",
    "company_id",
    "deal_id",
    "ticket_id",
    "owner_id",
    "occurred_at",
}
AUDITED = (
    "subject",
    "body",
    "person_id",
    "company_id",
    "deal_id",
    "ticket_id",
    "owner_id",
    "due_at",
    "remind_at",
    "priority",
    "done_at",
    "direction",
    "duration_seconds",
    "outcome",
    "starts_at",
    "ends_at",
)
# What the activity list filters and sorts on (`GET /v1/activities`).
LIST_FIELDS: dict[str, Field] = {
    "id": Field(Activity.id, "uuid", uuid.UUID),
    "kind": Field(Activity.kind),
    "subject": Field(Activity.subject),
    "person_id": Field(Activity.person_id, "uuid", uuid.UUID),
    "company_id": Field(Activity.company_id, "uuid", uuid.UUID),
    "deal_id": Field(Activity.deal_id, "uuid", uuid.UUID),
    "ticket_id": Field(Activity.ticket_id, "uuid", uuid.UUID),
    "owner_id": Field(Activity.owner_id, "uuid", uuid.UUID),
    "created_by": Field(Activity.created_by),
    "occurred_at": Field(Activity.occurred_at, "datetime", datetime.fromisoformat),
    "due_at": Field(Activity.due_at, "datetime", datetime.fromisoformat),
    "done_at": Field(Activity.done_at, "datetime", datetime.fromisoformat),
    "priority": Field(Activity.priority),
    "direction": Field(Activity.direction),
    "outcome": Field(Activity.outcome),
    "duration_seconds": Field(Activity.duration_seconds, "number", int),
    "created_at": Field(Activity.created_at, "datetime", datetime.fromisoformat),
}
# Logging these on a person is also an event on them (the list of CRM changes).
LOGGED_EVENTS = {"call": events.CALL_LOGGED, "note": events.NOTE_ADDED}


def _one_of(value: Any, allowed: tuple[str, ...], field: str) -> str | None:
    if value is not None and value not in allowed:
        raise InvalidInput(f"{field} must be one of {', '.join(allowed)}", field=field)
    return None if value is None else str(value)


def _time(value: datetime | None) -> datetime | None:
    return None if value is None else as_utc(value)


def _links(
    session: Session, actor: Actor | None, values: Mapping[str, Any]
) -> dict[str, uuid.UUID | None]:
    """The linked records, which the actor must be allowed to change (a 400 naming the
    field for one they cannot see, 403 for one they may only read). A ticket needs only be
    visible: whoever sees a customer's ticket may log a call about it."""
    checks: dict[str, Callable[[Session, Actor | None, uuid.UUID], Any]] = {
        "person_id": writable_person,
        "company_id": writable_company,
        "deal_id": writable_deal,
        "ticket_id": visible_ticket,
    }
    out: dict[str, uuid.UUID | None] = {}
    for name, check in checks.items():
        if name not in values:
            continue
        if values[name] is None:
            out[name] = None
            continue
        try:
            record = check(session, actor, values[name])
        except NotFound as exc:
            raise InvalidInput(f"no {name[:-3]} {values[name]} you can see", field=name) from exc
        out[name] = record.id
    return out


def _attendees(value: Any) -> list[str]:
    if not isinstance(value, list) or len(value) > MAX_ATTENDEES:
        raise InvalidInput(
            f"attendees is a list of at most {MAX_ATTENDEES} emails", field="attendees"
        )
    out = []
    for item in value:
        try:
            out.append(validate_email(str(item), check_deliverability=False).normalized.lower())
        except EmailNotValidError as exc:
            raise InvalidInput(
                f"attendee {item!r} is not an email address", field="attendees"
            ) from exc
    return out


def _apply(session: Session, activity: Activity, values: Mapping[str, Any], now: datetime) -> None:
    """Set the given fields on an activity, each checked."""
    allowed = COMMON | KIND_FIELDS[activity.kind]
    unknown = sorted(set(values) - allowed)
    if unknown:
        raise InvalidInput(f"a {activity.kind} has no field {unknown[0]}", field=unknown[0])
    if "subject" in values:
        activity.subject = str(values["subject"] or "").strip()[:300]
    if "body" in values:
        if len(values["body"] or "") > MAX_BODY:
            raise InvalidInput(f"body is at most {MAX_BODY} characters", field="body")
        activity.body = values["body"] or ""
    if "owner_id" in values:
        activity.owner_id = check_owner(session, values["owner_id"])
    if "occurred_at" in values and values["occurred_at"] is not None:
        activity.occurred_at = as_utc(values["occurred_at"])
    for name in ("due_at", "remind_at", "starts_at", "ends_at"):
        if name in values:
            setattr(activity, name, _time(values[name]))
    if "remind_at" in values:
        activity.reminder_dismissed_at = None  # a new reminder time comes due again
    if "priority" in values:
        activity.priority = _one_of(values["priority"], PRIORITIES, "priority") or "normal"
    if "direction" in values:
        activity.direction = _one_of(values["direction"], DIRECTIONS, "direction")
    if "outcome" in values:
        activity.outcome = _one_of(values["outcome"], OUTCOMES, "outcome")
    if "duration_seconds" in values:
        seconds = values["duration_seconds"]
        if seconds is not None and not 0 <= seconds <= 7 * 86400:
            raise InvalidInput("duration_seconds is 0 to a week", field="duration_seconds")
        activity.duration_seconds = seconds
    if "attendees" in values:
        activity.details = {**activity.details, "attendees": _attendees(values["attendees"])}
    if "done" in values:
        activity.done_at = (activity.done_at or now) if values["done"] else None


def _check_complete(activity: Activity) -> None:
    """What each kind needs, checked after all fields are set."""
    links = (activity.person_id, activity.company_id, activity.deal_id, activity.ticket_id)
    if all(link is None for link in links):
        raise InvalidInput(
            "link the activity to a person, a company, a deal or a ticket", field="person_id"
        )
    if activity.kind in ("task", "meeting", "email") and not activity.subject:
        raise InvalidInput(f"a {activity.kind} needs a subject", field="subject")
    if activity.kind == "note" and not activity.body.strip():
        raise InvalidInput("a note needs a body", field="body")
    if activity.kind == "call" and activity.direction is None:
        raise InvalidInput("a call needs a direction (inbound or outbound)", field="direction")
    if activity.kind == "meeting":
        if activity.starts_at is None:
            raise InvalidInput("a meeting needs starts_at", field="starts_at")
        if activity.ends_at is not None and as_utc(activity.ends_at) < as_utc(activity.starts_at):
            raise InvalidInput("a meeting cannot end before it starts", field="ends_at")


def create_activity(
    session: Session, *, actor: Actor | None, kind: str, values: Mapping[str, Any]
) -> Activity:
    """Log an activity (or create a task); the owner defaults to the actor."""
    require_activity_writer(actor)
    if kind not in KINDS:
        raise InvalidInput(f"kind must be one of {', '.join(KINDS)}", field="kind")
    now = utcnow()
    activity = Activity(
        kind=kind,
        created_by=actor_label(actor),
        owner_id=actor.user_id if actor else None,
        occurred_at=now,
        priority="normal" if kind == "task" else None,
        details={},
        subject="",
        body="",
    )
    links = _links(session, actor, values)
    _apply(session, activity, {k: v for k, v in values.items() if k not in links}, now)
    for name, value in links.items():
        setattr(activity, name, value)
    _check_complete(activity)
    session.add(activity)
    session.flush()
    record_audit(
        session,
        actor=actor,
        action="create",
        record_type=ACTIVITY,
        record_id=str(activity.id),
        after={"kind": kind, **snapshot(activity, AUDITED)},
    )
    _touch_deal(session, activity, now)
    if kind in LOGGED_EVENTS:
        _track(session, actor, activity, LOGGED_EVENTS[kind])
    if kind == "task" and activity.done_at is not None:
        _track(session, actor, activity, events.TASK_COMPLETED)
    return activity


def update_activity(
    session: Session, *, actor: Actor | None, activity_id: uuid.UUID, changes: Mapping[str, Any]
) -> Activity:
    """Change an activity (completing a task is ``done: true``)."""
    activity = _writable(session, actor, activity_id)
    before = snapshot(activity, AUDITED)
    was_done = activity.done_at is not None
    now = utcnow()
    links = _links(session, actor, changes)
    _apply(session, activity, {k: v for k, v in changes.items() if k not in links}, now)
    for name, value in links.items():
        setattr(activity, name, value)
    _check_complete(activity)
    activity.updated_at = now
    session.flush()
    old, new = changed(before, snapshot(activity, AUDITED))
    if new:
        record_audit(
            session,
            actor=actor,
            action="update",
            record_type=ACTIVITY,
            record_id=str(activity.id),
            before=old,
            after=new,
        )
    _touch_deal(session, activity, now)
    if activity.kind == "task" and not was_done and activity.done_at is not None:
        _track(session, actor, activity, events.TASK_COMPLETED)
    return activity


def delete_activity(session: Session, *, actor: Actor | None, activity_id: uuid.UUID) -> None:
    activity = _writable(session, actor, activity_id)
    before = {"kind": activity.kind, **snapshot(activity, AUDITED)}
    session.delete(activity)
    record_audit(
        session,
        actor=actor,
        action="delete",
        record_type=ACTIVITY,
        record_id=str(activity_id),
        before=before,
    )


def _writable(session: Session, actor: Actor | None, activity_id: uuid.UUID) -> Activity:
    """Those who may log activities change the ones they can see; sales and support users
    only their own (someone else's note is not theirs to rewrite)."""
    activity = visible_activity(session, actor, activity_id)
    require_activity_writer(actor)
    mine = actor is None or actor.user_id == activity.owner_id or actor.email == activity.created_by
    if not mine and actor is not None and actor.role.value in ("sales", "marketing"):
        raise Forbidden("only the owner of this activity can change it")
    return activity


def get_activity(session: Session, *, actor: Actor | None, activity_id: uuid.UUID) -> Activity:
    return visible_activity(session, actor, activity_id)


def _touch_deal(session: Session, activity: Activity, now: datetime) -> None:
    """Activity on a deal keeps it from rotting."""
    if activity.deal_id is not None:
        deal = session.get(Deal, activity.deal_id)
        if deal is not None:
            deal.last_activity_at = now


def _track(session: Session, actor: Actor | None, activity: Activity, event: str) -> None:
    """The activity's event goes on its person, or its deal's or ticket's person."""
    person_id = activity.person_id
    if person_id is None and activity.deal_id is not None:
        deal = session.get(Deal, activity.deal_id)
        person_id = deal.person_id if deal else None
    if person_id is None and activity.ticket_id is not None:
        ticket = session.get(Ticket, activity.ticket_id)
        person_id = ticket.person_id if ticket else None
    if person_id is None:
        return
    person = identity.live_person(session, person_id)
    properties: dict[str, Any] = {
        "activity_id": str(activity.id),
        "kind": activity.kind,
        "subject": activity.subject,
    }
    for name in ("deal_id", "company_id", "ticket_id"):
        value = getattr(activity, name)
        if value is not None:
            properties[name] = str(value)
    if activity.kind == "call":
        properties.update(
            direction=activity.direction,
            duration_seconds=activity.duration_seconds,
            outcome=activity.outcome,
        )
    events.track_crm_change(
        session, person_id=person.id, event=event, properties=properties, actor=actor
    )


# --- my tasks and reminders ------------------------------------------------------------


@dataclass
class MyTasks:
    overdue: list[Activity]
    today: list[Activity]
    upcoming: list[Activity]


def list_activities(
    session: Session, *, actor: Actor | None, query: ListQuery, search: str | None = None
) -> Page[Activity]:
    """Activities ``actor`` may see, filtered (kind, owner, linked records, dates...),
    searched by subject, sorted (newest first by default) and paged."""
    statement = select(Activity).where(readable_activities(actor))
    if search:
        for word in search.lower().split()[:10]:
            statement = statement.where(
                func.lower(Activity.subject).contains(word, autoescape=True)
            )
    return keyset_page(
        session,
        statement,
        fields=LIST_FIELDS,
        query=query,
        default_sort="-occurred_at",
        tiebreak=LIST_FIELDS["id"],
    )


def my_tasks(session: Session, *, actor: Actor, tz: str = "UTC", limit: int = 200) -> MyTasks:
    """The actor's open tasks: overdue, due today (in ``tz``), and upcoming (later, or
    with no due time), each soonest first."""
    try:
        zone = ZoneInfo(tz)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise InvalidInput(f"{tz!r} is not a time zone (use an IANA name)", field="tz") from exc
    now = utcnow()
    local = now.astimezone(zone)
    end_of_day = local.replace(hour=0, minute=0, second=0, microsecond=0) + timedelta(days=1)
    end = end_of_day.astimezone(now.tzinfo)
    base = select(Activity).where(
        Activity.kind == "task", Activity.owner_id == actor.user_id, Activity.done_at.is_(None)
    )
    ordered = (Activity.due_at.is_(None), Activity.due_at, Activity.id)
    overdue = session.scalars(base.where(Activity.due_at < now).order_by(*ordered).limit(limit))
    today = session.scalars(
        base.where(Activity.due_at >= now, Activity.due_at < end).order_by(*ordered).limit(limit)
    )
    later = base.where((Activity.due_at >= end) | Activity.due_at.is_(None))
    upcoming = session.scalars(later.order_by(*ordered).limit(limit))
    return MyTasks(list(overdue), list(today), list(upcoming))


def notifications(session: Session, *, actor: Actor) -> list[Activity]:
    """The actor's reminders that have come due: open tasks whose ``remind_at`` has passed
    and that they have not dismissed, the newest first. Nothing has to run for a reminder
    to come due: it is a question asked of the tasks."""
    return list(
        session.scalars(
            select(Activity)
            .where(
                Activity.kind == "task",
                Activity.owner_id == actor.user_id,
                Activity.done_at.is_(None),
                Activity.remind_at <= utcnow(),
                Activity.reminder_dismissed_at.is_(None),
            )
            .order_by(Activity.remind_at.desc(), Activity.id)
        )
    )


def dismiss_notification(session: Session, *, actor: Actor, activity_id: uuid.UUID) -> Activity:
    """Dismiss a due reminder of one's own; dismissing twice is a 409."""
    task = session.scalar(
        select(Activity).where(
            Activity.id == activity_id,
            Activity.kind == "task",
            Activity.owner_id == actor.user_id,
            readable_activities(actor),
        )
    )
    if task is None or task.remind_at is None or as_utc(task.remind_at) > utcnow():
        raise NotFound(f"no due reminder {activity_id} of yours", field="notification_id")
    if task.reminder_dismissed_at is not None:
        raise Conflict("this reminder was already dismissed", field="notification_id")
    task.reminder_dismissed_at = utcnow()
    return task
