"""The SLA check: warnings and breaches announced once each per ticket and target, as
audit entries and as events on the requester; scheduled in the processor, and by hand."""

from __future__ import annotations

import json
import uuid
from datetime import timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select
from sqlalchemy.orm import Session
from typer.testing import CliRunner

from patron.auth.models import AuditEntry
from patron.cli import app
from patron.core.clock import as_utc, utcnow
from patron.core.runtime import Runtime
from patron.crm.tickets.jobs import JOB_NAME, check_sla
from patron.crm.tickets.models import Ticket
from patron.pipeline import JOBS, Processor
from tests.conftest import MakePerson, User
from tests.crm.tickets.conftest import History, actor_of
from tests.crm.tickets.test_tickets import crm_events


@pytest.fixture
def by_admin(runtime: Runtime, admin: User) -> History:
    """History written by an admin, who may name any requester."""
    return History(runtime, actor_of(admin, "admin"))


def ago(minutes: float) -> Any:
    return utcnow() - timedelta(minutes=minutes)


def announcements(db: Session, ticket: uuid.UUID) -> list[tuple[str, dict[str, Any] | None]]:
    db.rollback()
    rows = db.scalars(
        select(AuditEntry)
        .where(
            AuditEntry.record_type == "ticket",
            AuditEntry.record_id == str(ticket),
            AuditEntry.action.in_(("sla_warning", "sla_breach")),
        )
        .order_by(AuditEntry.id)
    )
    return [(e.action, e.after) for e in rows]


def test_warnings_and_breaches_are_announced_once(
    runtime: Runtime,
    policy: dict[str, Any],
    by_admin: History,
    make_person: MakePerson,
    db: Session,
) -> None:
    person = make_person("dee@example.com")
    warned = by_admin.create(ago(40), person_id=uuid.UUID(person))
    first = check_sla(runtime.sessions)
    assert (first.warnings, first.breaches) == (1, 0)
    due = db.get_one(Ticket, warned).first_response_due_at
    assert due is not None
    assert announcements(db, warned) == [
        ("sla_warning", {"target": "first_response", "due_at": as_utc(due).isoformat()})
    ]
    events = crm_events(db, "Ticket SLA")
    assert [e.event for e in events] == ["Ticket SLA Warning"]
    properties = events[0].payload["properties"]
    assert properties["ticket_id"] == str(warned)
    assert properties["target"] == "first_response"
    assert properties["target_minutes"] == 60
    assert events[0].payload["context"]["patron"] == {"actor": "system", "person_id": person}
    again = check_sla(runtime.sessions)
    assert (again.warnings, again.breaches) == (0, 0)
    assert len(announcements(db, warned)) == 1

    late = by_admin.create(ago(70), person_id=uuid.UUID(person))
    done = check_sla(runtime.sessions)
    # Found already breached: a warning now would be too late to act on.
    assert (done.warnings, done.breaches) == (0, 1)
    assert [a for a, _ in announcements(db, late)] == ["sla_breach"]
    assert [e.event for e in crm_events(db, "Ticket SLA")][-1] == "Ticket SLA Breached"
    assert check_sla(runtime.sessions).breaches == 0
    # Later, the first ticket's deadline passes and both resolutions near theirs.
    later = check_sla(runtime.sessions, now=utcnow() + timedelta(minutes=100))
    assert (later.warnings, later.breaches) == (2, 1)
    again = check_sla(runtime.sessions, now=utcnow() + timedelta(minutes=100))
    assert (again.warnings, again.breaches) == (0, 0)


def test_a_breach_is_announced_even_when_answered_before_the_check(
    runtime: Runtime, policy: dict[str, Any], history: History, db: Session
) -> None:
    ticket = history.create(ago(200))
    history.reply(ticket, ago(100))  # 100 minutes: 40 late
    history.change(ticket, ago(90), status="solved")  # resolution met in 110 of 240
    done = check_sla(runtime.sessions)
    assert done.breaches == 1
    assert announcements(db, ticket)[0][1]["target"] == "first_response"  # type: ignore[index]
    db.rollback()
    stored = db.get_one(Ticket, ticket)
    assert stored.first_response_breached is True
    assert stored.resolution_breached is False
    assert stored.sla_next_check_at is None  # nothing more to say about it


def test_a_paused_ticket_that_passed_its_warning_is_warned(
    runtime: Runtime, policy: dict[str, Any], history: History, db: Session
) -> None:
    ticket = history.create(ago(60))
    history.reply(ticket, ago(59))
    history.change(ticket, ago(50), status="pending")
    history.change(ticket, ago(45), status="open")
    history.change(ticket, ago(10), status="pending")  # 10 + 35 = 45 minutes: not 120 yet
    assert check_sla(runtime.sessions).warnings == 0
    long_wait = history.create(ago(300))
    history.reply(long_wait, ago(299))
    history.change(long_wait, ago(170), status="pending")  # 130 of 240: past the warning
    done = check_sla(runtime.sessions)
    assert (done.warnings, done.breaches) == (1, 0)
    assert announcements(db, long_wait)[0][1] == {  # the warning instant passed before
        "target": "resolution",
        "due_at": None,  # paused: due when the clock runs again
    }


def test_the_processor_runs_the_check_on_schedule(
    runtime: Runtime, policy: dict[str, Any], history: History, db: Session
) -> None:
    assert [job.name for job in JOBS if job.name == JOB_NAME] == [JOB_NAME]
    job = next(job for job in JOBS if job.name == JOB_NAME)
    assert job.every_seconds(runtime.settings) == 30
    assert job.every_seconds(runtime.settings.model_copy(update={"sla_check_seconds": 0})) == 0
    ticket = history.create(ago(40))
    processor = Processor(runtime.sessions, settings=runtime.settings)
    processor.run_due_jobs({JOB_NAME: 0.0})  # the interval passed long ago
    assert [a for a, _ in announcements(db, ticket)] == ["sla_warning"]


def test_the_cli_checks_now(
    runtime: Runtime,
    policy: dict[str, Any],
    history: History,
    cli: CliRunner,
    client: TestClient,
) -> None:
    history.create(ago(40))
    history.create(ago(70))
    result = cli.invoke(app, ["tickets", "sla-check", "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout) == {"checked": 2, "warnings": 1, "breaches": 1}
    human = cli.invoke(app, ["tickets", "sla-check"])
    assert human.exit_code == 0
    assert "0 warnings and 0 breaches" in human.output
