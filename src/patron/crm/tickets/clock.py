"""A ticket's SLA clock and its targets.

One clock per ticket counts business time (the policy's hours) while the ticket is new or
open; it pauses while pending and stops when solved. Both targets read that clock: the
first response is done at the first public reply by staff (or when the ticket is solved
without one), the resolution when it is solved. Every change to a ticket first brings the
clock up to the change (:func:`fold`), then restarts or stops it and sets each target's
due and warning instants from the time left (:func:`settle`).

A target is ``breached`` once its due instant has passed with the target not done (and
stays so: a late answer is a breach answered); ``warning`` once the warning fraction of
it has passed; ``met`` when done in time; ``ok`` otherwise. The state is computed from the
stored columns and the time of asking, so it is right between two runs of the SLA job;
:func:`state_columns` says the same in SQL, for filters and reports.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, and_, case, literal, null, or_
from sqlalchemy.orm import Session

from patron.core.clock import as_utc
from patron.crm.tickets.models import SlaPolicy, Ticket
from patron.crm.tickets.sla import (
    BusinessCalendar,
    Hours,
    calendar_for,
    minutes,
    parse_clock,
    weekly_schedule,
)

TARGETS = ("first_response", "resolution")
# The statuses the clock runs in.
RUNNING = ("new", "open")
STATES = ("ok", "warning", "breached", "met")
# Worst first: a ticket's overall state is the worst of its targets'.
SEVERITY = ("breached", "warning", "ok", "met")


def schedule_of(policy: SlaPolicy) -> tuple[tuple[Hours, ...], ...]:
    """The policy's week of hours, Monday first, as minutes after midnight."""

    def parsed(hours: Sequence[dict[str, str]]) -> list[Hours]:
        return [(parse_clock(h["start"]), parse_clock(h["end"])) for h in hours]

    special = {day: parsed(hours) for day, hours in policy.day_hours.items()}
    return weekly_schedule(policy.working_days, parsed(policy.working_hours), special)


def calendar_of(policy: SlaPolicy) -> BusinessCalendar:
    """The business calendar of a policy (shared between calls while it is unchanged)."""
    holidays = frozenset(date.fromisoformat(d) for d in policy.holidays)
    return calendar_for(policy.timezone, schedule_of(policy), holidays)


def calendar_of_ticket(session: Session, ticket: Ticket) -> BusinessCalendar | None:
    """The calendar of the ticket's policy (None without one)."""
    if ticket.sla_policy_id is None:
        return None
    return calendar_of(session.get_one(SlaPolicy, ticket.sla_policy_id))


def apply_policy(ticket: Ticket, policy: SlaPolicy | None) -> None:
    """Give the ticket a policy's terms for its priority (or none). The business time
    counted so far stays; targets not done are judged afresh against the new terms, and
    targets already done keep the terms they were judged by."""
    terms = policy.targets.get(ticket.priority, {}) if policy is not None else {}
    ticket.sla_policy_id = policy.id if policy is not None else None
    ticket.sla_warning_fraction = policy.warning_fraction if policy is not None else None
    for target in TARGETS:
        if completed_at(ticket, target) is not None:
            continue
        setattr(ticket, f"{target}_target", terms.get(target))
        setattr(ticket, f"{target}_breached", False)
        setattr(ticket, f"{target}_due_at", None)
        setattr(ticket, f"{target}_warn_at", None)


def completed_at(ticket: Ticket, target: str) -> datetime | None:
    """When the target was done: a first response is also done by solving the ticket."""
    if target == "first_response":
        return ticket.first_responded_at or ticket.solved_at
    return ticket.solved_at


def fold(ticket: Ticket, calendar: BusinessCalendar | None, at: datetime) -> None:
    """Count the business time since the clock last started, up to ``at``, and note each
    target whose due instant has passed meanwhile."""
    since = ticket.sla_clock_since
    if since is None or calendar is None:
        return
    since = as_utc(since)
    if at > since:
        ticket.sla_clock_seconds += calendar.working_time(since, at).total_seconds()
        ticket.sla_clock_since = at
    for target in TARGETS:
        due = getattr(ticket, f"{target}_due_at")
        if completed_at(ticket, target) is None and due is not None and at > as_utc(due):
            setattr(ticket, f"{target}_breached", True)


def settle(ticket: Ticket, calendar: BusinessCalendar | None, at: datetime) -> None:
    """After a change at ``at`` (the clock folded up to it): run or stand the clock as the
    status says, record targets done now, and set each target's due and warning instants."""
    running = ticket.status in RUNNING and calendar is not None
    ticket.sla_clock_since = at if running else None
    for target in TARGETS:
        _settle_target(ticket, target, calendar, at, running)
    ticket.sla_next_check_at = next_check(ticket, at)


def _settle_target(
    ticket: Ticket, target: str, calendar: BusinessCalendar | None, at: datetime, running: bool
) -> None:
    goal = getattr(ticket, f"{target}_target")
    if goal is None:
        for name in ("due_at", "warn_at"):
            setattr(ticket, f"{target}_{name}", None)
        return
    elapsed = timedelta(seconds=ticket.sla_clock_seconds)
    done = completed_at(ticket, target)
    if done is not None:
        if as_utc(done) == at:  # done by this very change
            _record_done(ticket, target, elapsed, at)
        return
    setattr(ticket, f"{target}_minutes", None)  # a reopened ticket is measured again
    setattr(ticket, f"{target}_calendar_minutes", None)
    allowed = timedelta(minutes=goal)
    if elapsed > allowed:
        setattr(ticket, f"{target}_breached", True)
    fraction = ticket.sla_warning_fraction or 0.8
    for name, amount in (("due_at", allowed), ("warn_at", allowed * fraction)):
        column = f"{target}_{name}"
        left = amount - elapsed
        current = getattr(ticket, column)
        if left > timedelta(0):
            # Paused: no due instant until the clock runs again.
            value = calendar.add(at, left) if running and calendar is not None else None
        elif current is not None and as_utc(current) <= at:
            value = as_utc(current)  # passed while the clock ran: that instant stays
        else:
            value = at  # used up by a change of terms: it is due now
        setattr(ticket, column, value)


def _record_done(ticket: Ticket, target: str, elapsed: timedelta, done: datetime) -> None:
    """Whether a target just done was late, and the business and calendar minutes it took."""
    if elapsed > timedelta(minutes=getattr(ticket, f"{target}_target")):
        setattr(ticket, f"{target}_breached", True)
    if target == "first_response" and ticket.first_responded_at is None:
        return  # solved without a reply: done, but there was no response to time
    setattr(ticket, f"{target}_minutes", round(minutes(elapsed), 4))
    calendar_time = done - as_utc(ticket.created_at)
    setattr(ticket, f"{target}_calendar_minutes", round(minutes(calendar_time), 4))


def next_check(ticket: Ticket, at: datetime) -> datetime | None:
    """When the SLA job next has an event to emit for this ticket: a breach not yet
    announced (now, if it is already known), or a warning instant not yet announced."""
    moments: list[datetime] = []
    for target in TARGETS:
        if getattr(ticket, f"{target}_target") is None:
            continue
        if getattr(ticket, f"{target}_breach_sent_at") is not None:
            continue
        done = completed_at(ticket, target) is not None
        due = getattr(ticket, f"{target}_due_at")
        warn = getattr(ticket, f"{target}_warn_at")
        if getattr(ticket, f"{target}_breached"):
            moments.append(at)
        elif not done and due is not None:
            moments.append(as_utc(due))
        if not done and warn is not None and getattr(ticket, f"{target}_warning_sent_at") is None:
            moments.append(as_utc(warn))
    return min(moments, default=None)


# --- reading the state ------------------------------------------------------------------


@dataclass
class TargetView:
    """One target as a ticket shows it."""

    target: str
    target_minutes: int
    due_at: datetime | None
    warning_at: datetime | None
    elapsed_minutes: float
    remaining_minutes: float
    state: str
    paused: bool
    completed_at: datetime | None


def elapsed(ticket: Ticket, calendar: BusinessCalendar | None, now: datetime) -> timedelta:
    """Business time on the clock at ``now``."""
    counted = timedelta(seconds=ticket.sla_clock_seconds)
    since = ticket.sla_clock_since
    if since is None or calendar is None or now <= as_utc(since):
        return counted
    return counted + calendar.working_time(as_utc(since), now)


def target_view(
    ticket: Ticket, target: str, calendar: BusinessCalendar | None, now: datetime
) -> TargetView | None:
    """The state of one target at ``now`` (None if the ticket has no such target)."""
    goal = getattr(ticket, f"{target}_target")
    if goal is None:
        return None
    done = completed_at(ticket, target)
    due, warn = getattr(ticket, f"{target}_due_at"), getattr(ticket, f"{target}_warn_at")
    due, warn = (as_utc(due) if due else None), (as_utc(warn) if warn else None)
    stored = getattr(ticket, f"{target}_minutes")
    taken = (
        stored
        if done is not None and stored is not None
        else minutes(elapsed(ticket, calendar, now))
    )
    breached = bool(getattr(ticket, f"{target}_breached"))
    if done is not None:
        state = "breached" if breached else "met"
    elif breached or (due is not None and now > due):
        state = "breached"
    elif warn is not None and now >= warn:
        state = "warning"
    else:
        state = "ok"
    return TargetView(
        target=target,
        target_minutes=goal,
        due_at=due,
        warning_at=warn,
        elapsed_minutes=round(taken, 2),
        remaining_minutes=round(goal - taken, 2),
        state=state,
        paused=done is None and ticket.sla_clock_since is None,
        completed_at=as_utc(done) if done else None,
    )


def overall(states: Sequence[str | None]) -> str | None:
    """The worst of the targets' states (None when the ticket has no targets)."""
    for state in SEVERITY:
        if state in states:
            return state
    return None


# --- the same in SQL --------------------------------------------------------------------


def completed_column(target: str) -> Any:
    """Whether a target is done, in SQL (see :func:`completed_at`)."""
    if target == "first_response":
        return or_(Ticket.first_responded_at.is_not(None), Ticket.solved_at.is_not(None))
    return Ticket.solved_at.is_not(None)


def state_column(target: str, now: datetime) -> ColumnElement[Any]:
    """A target's state at ``now`` as a SQL expression (null without the target)."""
    goal = getattr(Ticket, f"{target}_target")
    breached = getattr(Ticket, f"{target}_breached")
    due, warn = getattr(Ticket, f"{target}_due_at"), getattr(Ticket, f"{target}_warn_at")
    return case(
        (goal.is_(None), null()),
        (and_(completed_column(target), breached), literal("breached")),
        (completed_column(target), literal("met")),
        (or_(breached, due < now), literal("breached")),
        (warn <= now, literal("warning")),
        else_=literal("ok"),
    )


def overall_column(now: datetime) -> ColumnElement[Any]:
    """The ticket's overall state at ``now``: the worst of its targets'."""
    states = [state_column(t, now) for t in TARGETS]
    return case(
        *((or_(*(s == name for s in states)), literal(name)) for name in SEVERITY),
        else_=null(),
    )


def due_column() -> ColumnElement[Any]:
    """The earliest due instant of a target not yet done (null when none is running)."""
    first_due, res_due = Ticket.first_response_due_at, Ticket.resolution_due_at
    first = and_(
        Ticket.first_response_target.is_not(None),
        ~completed_column("first_response"),
        first_due.is_not(None),
    )
    resolution = and_(
        Ticket.resolution_target.is_not(None),
        ~completed_column("resolution"),
        res_due.is_not(None),
    )
    return case(
        (and_(first, or_(~resolution, first_due <= res_due)), first_due),
        (resolution, res_due),
        else_=null(),
    )


def breached_column(target: str, now: datetime) -> ColumnElement[bool]:
    """Whether a target is breached at ``now`` (false without the target)."""
    goal = getattr(Ticket, f"{target}_target")
    breached = getattr(Ticket, f"{target}_breached")
    due = getattr(Ticket, f"{target}_due_at")
    return and_(goal.is_not(None), or_(breached, and_(~completed_column(target), due < now)))
