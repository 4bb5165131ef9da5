"""The demo's support desk: tickets inside, near and past their SLAs, and solved ones."""

from __future__ import annotations

import json
from collections import Counter

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select
from sqlalchemy.orm import Session
from typer.testing import CliRunner

from patron.auth.models import AuditEntry, User
from patron.cli import app
from patron.core.settings import Settings
from patron.crm.tickets import service
from patron.crm.tickets.models import SlaPolicy, Ticket, TicketComment


def test_the_demo_has_a_support_desk_at_work(
    settings: Settings,
    monkeypatch: pytest.MonkeyPatch,
    runtime: object,
    db: Session,
    client: TestClient,
) -> None:
    monkeypatch.setenv("PATRON_DATABASE_URL", str(settings.database_url))
    monkeypatch.setenv("PATRON_DATA_DIR", str(settings.data_dir))
    loaded = CliRunner().invoke(app, ["demo", "--people", "60", "--json"])
    assert loaded.exit_code == 0, loaded.output
    db.rollback()
    assert db.scalar(select(func.count()).select_from(SlaPolicy)) == 2
    tickets = list(db.scalars(select(Ticket)))
    assert len(tickets) == 40
    sid = db.scalar(select(User.id).where(User.email == "sid.park@example.com"))
    assert sum(t.assignee_id == sid for t in tickets) >= 30
    assert any(t.assignee_id is None for t in tickets)  # the queue
    assert all(t.person_id is not None for t in tickets)
    states = Counter(service.sla_view(db, t).state for t in tickets)
    assert set(states) == {"ok", "warning", "breached", "met"}
    assert states["warning"] >= 5
    assert states["breached"] >= 5
    assert {t.status for t in tickets} == {"new", "open", "pending", "solved", "closed"}
    assert db.scalar(select(func.count()).select_from(TicketComment)) >= 30
    announced = Counter(
        db.scalars(select(AuditEntry.action).where(AuditEntry.action.like("sla_%")))
    )
    assert announced["sla_warning"] > 0
    assert announced["sla_breach"] > 0
    # Sid signs in with the admin's password and finds his desk through the API.
    password = json.loads(loaded.stdout)["admin_password"]
    signed = client.post(
        "/v1/session", json={"email": "sid.park@example.com", "password": password}
    )
    assert signed.status_code == 200
    breached = client.get("/v1/tickets", params={"filter": "sla_state:eq:breached"})
    assert breached.status_code == 200
    assert breached.json()["total"] == states["breached"]
