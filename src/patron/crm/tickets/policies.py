"""SLA policies: which tickets they cover (priorities and channels, first match in the
admins' order), their targets per priority in business minutes, and their business hours
(working days, split hours, holidays, a time zone)."""

from __future__ import annotations

import itertools
import uuid
from collections.abc import Mapping
from datetime import date, datetime
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from patron.auth.service import Actor, record_audit
from patron.core.clock import utcnow
from patron.core.errors import Conflict, InvalidInput, NotFound
from patron.crm.fields import check_year
from patron.crm.records import snapshot
from patron.crm.tickets import clock
from patron.crm.tickets.models import SlaPolicy, Ticket
from patron.crm.tickets.sla import (
    DAYS,
    MINUTES_PER_DAY,
    BusinessCalendar,
    Hours,
    format_clock,
    parse_clock,
)

RECORD_TYPE = "sla_policy"
PRIORITIES = ("low", "normal", "high", "urgent")
CHANNELS = ("email", "web", "phone", "chat", "form", "api")
TARGETS = ("first_response", "resolution")
MAX_HOLIDAYS = 1000
# A target may not be longer than this many weeks of the policy's business hours.
MAX_TARGET_WEEKS = 52
FIELDS = (
    "name",
    "position",
    "priorities",
    "channels",
    "targets",
    "warning_fraction",
    "timezone",
    "working_days",
    "working_hours",
    "day_hours",
    "holidays",
)
# Changing these changes how business time is counted for the policy's open tickets.
CALENDAR_FIELDS = ("timezone", "working_days", "working_hours", "day_hours", "holidays")


def create_policy(session: Session, *, actor: Actor | None, values: Mapping[str, Any]) -> SlaPolicy:
    """Create a policy (admins); it goes last in the order unless ``position`` says."""
    _require_admin(actor)
    for name in ("name", "targets", "timezone", "working_days", "working_hours"):
        if values.get(name) is None:
            raise InvalidInput(f"an SLA policy needs {name}", field=name)
    last = session.scalar(select(func.max(SlaPolicy.position)).where(_live()))
    policy = SlaPolicy(
        position=(last or 0) + 1,
        priorities=[],
        channels=[],
        warning_fraction=0.8,
        day_hours={},
        holidays=[],
    )
    _apply(session, policy, values)
    session.add(policy)
    session.flush()
    record_audit(
        session,
        actor=actor,
        action="create",
        record_type=RECORD_TYPE,
        record_id=str(policy.id),
        after=snapshot(policy, FIELDS),
    )
    return policy


def update_policy(
    session: Session, *, actor: Actor | None, policy_id: uuid.UUID, changes: Mapping[str, Any]
) -> SlaPolicy:
    """Change a policy (admins). New targets apply to tickets that get the policy from now
    on (a ticket keeps the terms it was given); new business hours count from now on for
    the open tickets that have it too."""
    _require_admin(actor)
    policy = get_policy(session, policy_id)
    before = snapshot(policy, FIELDS)
    old_calendar = clock.calendar_of(policy)
    _apply(session, policy, changes)
    policy.updated_at = now = utcnow()
    session.flush()
    after = snapshot(policy, FIELDS)
    if any(before[name] != after[name] for name in CALENDAR_FIELDS):
        _recount_open_tickets(session, policy, old_calendar, now)
    changed = [k for k in FIELDS if before[k] != after[k]]
    if changed:
        record_audit(
            session,
            actor=actor,
            action="update",
            record_type=RECORD_TYPE,
            record_id=str(policy.id),
            before={k: before[k] for k in changed},
            after={k: after[k] for k in changed},
        )
    return policy


def _recount_open_tickets(
    session: Session, policy: SlaPolicy, old: BusinessCalendar, now: datetime
) -> None:
    """Count the business time so far under the old hours, the rest under the new ones."""
    new = clock.calendar_of(policy)
    running = select(Ticket).where(
        Ticket.sla_policy_id == policy.id, Ticket.sla_clock_since.is_not(None)
    )
    for ticket in session.scalars(running):
        clock.fold(ticket, old, now)
        clock.settle(ticket, new, now)


def delete_policy(session: Session, *, actor: Actor | None, policy_id: uuid.UUID) -> None:
    """Retire a policy (admins): it applies to no new ticket; tickets that have it keep
    their clocks and terms."""
    _require_admin(actor)
    policy = get_policy(session, policy_id)
    policy.deleted_at = utcnow()
    record_audit(
        session,
        actor=actor,
        action="delete",
        record_type=RECORD_TYPE,
        record_id=str(policy.id),
        before=snapshot(policy, FIELDS),
    )


def get_policy(session: Session, policy_id: uuid.UUID) -> SlaPolicy:
    """A policy that has not been deleted; 404 otherwise."""
    policy = session.get(SlaPolicy, policy_id)
    if policy is None or policy.deleted_at is not None:
        raise NotFound(f"no SLA policy {policy_id}", field="policy_id")
    return policy


def list_policies(session: Session) -> list[SlaPolicy]:
    """The policies in the order they are tried."""
    return list(session.scalars(select(SlaPolicy).where(_live()).order_by(*_order())))


def match_policy(session: Session, *, priority: str, channel: str) -> SlaPolicy | None:
    """The first policy, in order, that covers this priority and channel."""
    for policy in list_policies(session):
        if (not policy.priorities or priority in policy.priorities) and (
            not policy.channels or channel in policy.channels
        ):
            return policy
    return None


def _live() -> Any:
    return SlaPolicy.deleted_at.is_(None)


def _order() -> tuple[Any, ...]:
    return (SlaPolicy.position, SlaPolicy.created_at, SlaPolicy.id)


def _require_admin(actor: Actor | None) -> None:
    if actor is not None:
        actor.require()


# --- checking a policy -----------------------------------------------------------------


def _apply(session: Session, policy: SlaPolicy, values: Mapping[str, Any]) -> None:
    """Set the given fields, each checked, then check the policy as a whole."""
    unknown = sorted(set(values) - set(FIELDS))
    if unknown:
        raise InvalidInput(f"an SLA policy has no field {unknown[0]}", field=unknown[0])
    if "name" in values:
        policy.name = _name(session, values["name"], policy.id)
    if values.get("position") is not None:
        position = values["position"]
        if isinstance(position, bool) or not isinstance(position, int):
            raise InvalidInput("position is a whole number", field="position")
        policy.position = position
    if "priorities" in values:
        policy.priorities = _subset(values["priorities"], PRIORITIES, "priorities")
    if "channels" in values:
        policy.channels = _subset(values["channels"], CHANNELS, "channels")
    if values.get("warning_fraction") is not None:
        policy.warning_fraction = _fraction(values["warning_fraction"])
    if "timezone" in values:
        policy.timezone = _zone(values["timezone"])
    if "working_days" in values:
        policy.working_days = _days(values["working_days"])
    if "working_hours" in values:
        policy.working_hours = _hours(values["working_hours"], "working_hours")
    if "day_hours" in values:
        policy.day_hours = {
            day: _hours(hours, f"day_hours.{day}")
            for day, hours in _mapping(values["day_hours"], "day_hours").items()
        }
    if "holidays" in values:
        policy.holidays = _holidays(values["holidays"])
    if "targets" in values:
        policy.targets = _targets(values["targets"])
    _check_whole(policy)


def _name(session: Session, value: Any, own: uuid.UUID | None) -> str:
    name = str(value or "").strip()
    if not 1 <= len(name) <= 200:
        raise InvalidInput("a policy name has 1 to 200 characters", field="name")
    taken = session.scalar(select(SlaPolicy.id).where(SlaPolicy.name == name, _live()))
    if taken is not None and taken != own:
        raise Conflict(f"an SLA policy named {name!r} exists", field="name")
    return name


def _subset(value: Any, allowed: tuple[str, ...], field: str) -> list[str]:
    if value is None:
        return []
    if not isinstance(value, list) or any(v not in allowed for v in value):
        raise InvalidInput(
            f"{field} is a list of {', '.join(allowed)} (empty: all of them)", field=field
        )
    return [v for v in allowed if v in value]


def _fraction(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 < value < 1:
        raise InvalidInput(
            "warning_fraction is a number between 0 and 1 (0.8: warn at 80% of a target)",
            field="warning_fraction",
        )
    return float(value)


def _zone(value: Any) -> str:
    try:
        ZoneInfo(str(value))
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise InvalidInput(
            f"{value!r} is not a time zone (use an IANA name like Europe/Paris)", field="timezone"
        ) from exc
    return str(value)


def _days(value: Any) -> list[str]:
    if not isinstance(value, list) or not value:
        raise InvalidInput(
            "working_days lists at least one of mon, tue, wed, thu, fri, sat, sun",
            field="working_days",
        )
    if any(v not in DAYS for v in value) or len(set(value)) != len(value):
        raise InvalidInput(
            "working_days are distinct days among mon, tue, wed, thu, fri, sat, sun",
            field="working_days",
        )
    return [d for d in DAYS if d in value]


def _mapping(value: Any, field: str) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict) or any(k not in DAYS for k in value):
        raise InvalidInput(f"{field} maps days (mon ... sun) to their hours", field=field)
    return value


def _hours(value: Any, field: str) -> list[dict[str, str]]:
    """Periods of a day, each ``{"start": "09:00", "end": "12:00"}``: at least one, each
    starting before it ends, none overlapping another (``24:00`` ends the day)."""
    if not isinstance(value, list) or not value:
        raise InvalidInput(
            f'{field} needs at least one period like {{"start": "09:00", "end": "17:00"}}',
            field=field,
        )
    periods = sorted(_period(item, field) for item in value)
    for (_, end), (start, _) in itertools.pairwise(periods):
        if start < end:
            raise InvalidInput(f"{field}: periods overlap", field=field)
    return [{"start": format_clock(s), "end": format_clock(e)} for s, e in periods]


def _period(item: Any, field: str) -> Hours:
    if not isinstance(item, dict) or set(item) != {"start", "end"}:
        raise InvalidInput(
            f'{field}: a period is {{"start": "HH:MM", "end": "HH:MM"}}', field=field
        )
    start, end = _minute(item["start"], field), _minute(item["end"], field)
    if start >= MINUTES_PER_DAY or end <= start:
        raise InvalidInput(
            f"{field}: the period {item['start']}-{item['end']} does not start before it ends",
            field=field,
        )
    return start, end


def _minute(value: Any, field: str) -> int:
    try:
        return parse_clock(value if isinstance(value, str) else repr(value))
    except ValueError as exc:
        raise InvalidInput(f"{field}: {exc}", field=field) from exc


def _holidays(value: Any) -> list[str]:
    if value is None:
        return []
    if not isinstance(value, list) or len(value) > MAX_HOLIDAYS:
        raise InvalidInput(
            f"holidays is a list of at most {MAX_HOLIDAYS} dates (YYYY-MM-DD)", field="holidays"
        )
    days: set[date] = set()
    for item in value:
        try:
            day = date.fromisoformat(item) if isinstance(item, str) else None
            if day is None:
                raise ValueError("expected YYYY-MM-DD")
            check_year(day.year)
        except ValueError as exc:
            raise InvalidInput(
                f"holidays: {item!r} is not a date: {exc}", field="holidays"
            ) from exc
        days.add(day)
    return [d.isoformat() for d in sorted(days)]


def _targets(value: Any) -> dict[str, dict[str, int | None]]:
    if not isinstance(value, dict) or any(k not in PRIORITIES for k in value):
        raise InvalidInput(
            f"targets maps priorities ({', '.join(PRIORITIES)}) to "
            '{"first_response": minutes, "resolution": minutes}',
            field="targets",
        )
    out: dict[str, dict[str, int | None]] = {}
    for priority, terms in value.items():
        field = f"targets.{priority}"
        if not isinstance(terms, dict) or not set(terms) <= set(TARGETS):
            raise InvalidInput(
                f'{field} is {{"first_response": minutes, "resolution": minutes}}', field=field
            )
        out[priority] = {t: _target(terms.get(t), f"{field}.{t}") for t in TARGETS}
        if all(v is None for v in out[priority].values()):
            raise InvalidInput(f"{field} needs at least one target", field=field)
    return {p: out[p] for p in PRIORITIES if p in out}


def _target(value: Any, field: str) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise InvalidInput(f"{field} is a whole number of business minutes, above 0", field=field)
    return value


def _check_whole(policy: SlaPolicy) -> None:
    """Every priority the policy covers has targets, and no target is longer than a year
    of its business hours (which also keeps every deadline within reach)."""
    week = clock.schedule_of(policy)
    extra = sorted(set(policy.day_hours) - set(policy.working_days))
    if extra:
        raise InvalidInput(f"day_hours.{extra[0]} is not a working day", field="day_hours")
    for priority in policy.priorities or PRIORITIES:
        if priority not in policy.targets:
            raise InvalidInput(
                f"the policy covers {priority} tickets but has no targets for them",
                field=f"targets.{priority}",
            )
    limit = MAX_TARGET_WEEKS * sum(end - start for day in week for start, end in day)
    for priority, terms in policy.targets.items():
        for target, minutes in terms.items():
            if minutes is not None and minutes > limit:
                raise InvalidInput(
                    f"targets.{priority}.{target} is at most a year of this policy's business "
                    f"hours ({limit} minutes)",
                    field=f"targets.{priority}.{target}",
                )
