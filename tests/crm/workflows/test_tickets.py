"""Rules on tickets: an SLA breach escalates the ticket and gives someone a task, through
the tickets service, with the conditions read from the ticket."""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Any

from fastapi.testclient import TestClient
from sqlalchemy import select
from sqlalchemy.orm import Session

from patron.core.clock import utcnow
from patron.core.runtime import Runtime
from patron.crm.models import Activity
from patron.crm.tickets.jobs import check_sla
from patron.crm.tickets.models import Ticket
from tests.conftest import MakeUser, User
from tests.crm.tickets.conftest import History, actor_of, policy  # noqa: F401
from tests.crm.workflows.conftest import MakeRule, Work, runs


def test_an_sla_breach_escalates_the_ticket_and_makes_a_task(
    runtime: Runtime,
    client: TestClient,
    admin: User,
    make_user: MakeUser,
    make_rule: MakeRule,
    work: Work,
    policy: dict[str, Any],  # noqa: F811
    db: Session,
) -> None:
    lead = make_user("manager")
    rule = make_rule(
        {"type": "sla_breach", "target": "first_response"},
        {"type": "set_field", "field": "priority", "value": "urgent"},
        {"type": "create_task", "subject": "Call the customer back", "assignee": lead.id},
        conditions=[{"field": "priority", "op": "ne", "value": "urgent"}],
        name="Escalate breaches",
    )
    history = History(runtime, actor_of(admin, "admin"))
    late = history.create(utcnow() - timedelta(minutes=70))
    already_urgent = history.create(utcnow() - timedelta(minutes=70), priority="urgent")
    assert check_sla(runtime.sessions).breaches >= 1
    work(until_idle=True)

    fired = runs(client, admin, rule_id=rule["id"])
    assert [(r["record_id"], r["status"]) for r in fired] == [(str(late), "succeeded")]
    db.rollback()
    assert db.get_one(Ticket, late).priority == "urgent"
    assert db.get_one(Ticket, already_urgent).priority == "urgent"
    tasks = list(db.scalars(select(Activity).where(Activity.ticket_id == late)))
    assert [(t.kind, t.subject, t.owner_id) for t in tasks] == [
        ("task", "Call the customer back", uuid.UUID(lead.id))
    ]
    assert not list(db.scalars(select(Activity).where(Activity.ticket_id == already_urgent)))
