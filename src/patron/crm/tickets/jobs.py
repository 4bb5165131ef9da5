"""Background work of tickets: the SLA check, which announces warnings and breaches.

Each target of each ticket is announced at most once as warned and once as breached: an
audit entry (``sla_warning`` / ``sla_breach``, by the system, with the target and its due
instant, which workflow rules trigger on) and a ``track`` event on the requester (`Ticket
SLA Warning` / `Ticket SLA Breached`). The ticket remembers what was announced, in the
same transaction. A target found already breached is announced as breached only: its
warning would come too late to act on. A breach found when a target is done late (a reply
after the deadline, before the check ran) is still announced.

Tickets carry ``sla_next_check_at``, the next moment they have something to announce, so
a check reads only those, through an index. On PostgreSQL, concurrent checks skip each
other's locked rows.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from patron.auth.service import record_audit
from patron.core.clock import as_utc, utcnow
from patron.core.dialect import lock_row_for_update
from patron.core.settings import Settings
from patron.crm import events
from patron.crm.access import TICKET
from patron.crm.records import jsonable
from patron.crm.tickets import clock
from patron.crm.tickets.models import Ticket
from patron.crm.tickets.service import track_ticket_event

BATCH = 200
JOB_NAME = "ticket SLA check"


@dataclass
class SlaCheck:
    """What one check did."""

    checked: int = 0
    warnings: int = 0
    breaches: int = 0


def check_sla(
    sessions: sessionmaker[Session], *, now: datetime | None = None, batch: int = BATCH
) -> SlaCheck:
    """Announce every SLA warning and breach that has come due, a batch of tickets per
    transaction."""
    moment = now or utcnow()
    result = SlaCheck()
    after: uuid.UUID | None = None
    while True:
        with sessions() as session, session.begin():
            statement = (
                select(Ticket)
                .where(Ticket.sla_next_check_at <= moment)
                .order_by(Ticket.id)
                .limit(batch)
            )
            if after is not None:
                statement = statement.where(Ticket.id > after)
            if lock_row_for_update(session):
                statement = statement.with_for_update(skip_locked=True)
            tickets = list(session.scalars(statement))
            for ticket in tickets:
                check_ticket(session, ticket, moment, result)
        if len(tickets) < batch:
            return result
        after = tickets[-1].id


def run(sessions: sessionmaker[Session], _settings: Settings) -> int:
    """The scheduled job (``pipeline.JOBS``): returns how many events it announced."""
    done = check_sla(sessions)
    return done.warnings + done.breaches


def check_ticket(session: Session, ticket: Ticket, now: datetime, result: SlaCheck) -> None:
    """Bring one ticket's clock to ``now`` and announce what it has passed."""
    calendar = clock.calendar_of_ticket(session, ticket)
    clock.fold(ticket, calendar, now)
    result.checked += 1
    for target in clock.TARGETS:
        if getattr(ticket, f"{target}_target") is None:
            continue
        if getattr(ticket, f"{target}_breached"):
            if getattr(ticket, f"{target}_breach_sent_at") is None:
                _announce(session, ticket, target, "breach", now)
                result.breaches += 1
            continue
        warn = getattr(ticket, f"{target}_warn_at")
        due_for_warning = (
            clock.completed_at(ticket, target) is None
            and warn is not None
            and as_utc(warn) <= now
            and getattr(ticket, f"{target}_warning_sent_at") is None
        )
        if due_for_warning:
            _announce(session, ticket, target, "warning", now)
            result.warnings += 1
    clock.settle(ticket, calendar, now)


def _announce(session: Session, ticket: Ticket, target: str, kind: str, now: datetime) -> None:
    due = getattr(ticket, f"{target}_due_at")
    due = as_utc(due) if due is not None else None
    record_audit(
        session,
        actor=None,
        action=f"sla_{kind}",
        record_type=TICKET,
        record_id=str(ticket.id),
        after={"target": target, "due_at": jsonable(due)},
    )
    event = events.TICKET_SLA_BREACHED if kind == "breach" else events.TICKET_SLA_WARNING
    extra = {
        "target": target,
        "due_at": jsonable(due),
        "target_minutes": getattr(ticket, f"{target}_target"),
    }
    track_ticket_event(session, None, ticket, event, extra)
    setattr(ticket, f"{target}_{kind}_sent_at", now)
    if kind == "breach" and getattr(ticket, f"{target}_warning_sent_at") is None:
        setattr(ticket, f"{target}_warning_sent_at", now)  # too late to warn: never will
