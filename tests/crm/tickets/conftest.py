"""Fixtures of the ticket tests: policies, users who work tickets, tickets made through the
API or, when their history must lie in the past, through the services with ``at``."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import datetime
from typing import Any

import pytest
from fastapi.testclient import TestClient

from patron.auth.models import Role
from patron.auth.service import Actor
from patron.core.runtime import Runtime
from patron.crm.tickets import service
from tests.conftest import MakeUser, User

ALL_DAYS = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
ROUND_THE_CLOCK = [{"start": "00:00", "end": "24:00"}]


def policy_body(**overrides: Any) -> dict[str, Any]:
    """A 24/7 policy in UTC (business time is real time), every priority: first response
    in 60 minutes, resolution in 240, warning at half of each."""
    body: dict[str, Any] = {
        "name": f"Policy {uuid.uuid4().hex[:6]}",
        "targets": {
            p: {"first_response": 60, "resolution": 240}
            for p in ("low", "normal", "high", "urgent")
        },
        "warning_fraction": 0.5,
        "timezone": "UTC",
        "working_days": ALL_DAYS,
        "working_hours": ROUND_THE_CLOCK,
    }
    return {**body, **overrides}


@pytest.fixture
def policy(client: TestClient, admin: User) -> dict[str, Any]:
    answer = client.post("/v1/sla-policies", json=policy_body(), headers=admin.headers)
    assert answer.status_code == 201, answer.text
    body: dict[str, Any] = answer.json()
    return body


@pytest.fixture
def agent(make_user: MakeUser) -> User:
    """A support user."""
    return make_user("support")


def actor_of(user: User, role: str) -> Actor:
    return Actor(uuid.UUID(user.id), user.email, Role(role))


MakeTicket = Callable[..., dict[str, Any]]


@pytest.fixture
def make_ticket(client: TestClient, agent: User) -> MakeTicket:
    """A ticket made through the API (by the support user unless ``user`` says)."""

    def make(user: User | None = None, **body: Any) -> dict[str, Any]:
        answer = client.post(
            "/v1/tickets",
            json={"subject": "Cannot log in", **body},
            headers=(user or agent).headers,
        )
        assert answer.status_code == 201, answer.text
        made: dict[str, Any] = answer.json()
        return made

    return make


class History:
    """Writes a ticket's history through the services, each step at a given moment."""

    def __init__(self, runtime: Runtime, actor: Actor) -> None:
        self.runtime, self.actor = runtime, actor

    def create(self, at: datetime, **values: Any) -> uuid.UUID:
        with self.runtime.sessions() as session:
            values = {"subject": "Printer on fire", **values}
            ticket = service.create_ticket(session, actor=self.actor, values=values, at=at)
            session.commit()
            return ticket.id

    def change(self, ticket_id: uuid.UUID, at: datetime, **changes: Any) -> None:
        with self.runtime.sessions() as session:
            service.update_ticket(
                session, actor=self.actor, ticket_id=ticket_id, changes=changes, at=at
            )
            session.commit()

    def reply(self, ticket_id: uuid.UUID, at: datetime, **kwargs: Any) -> None:
        with self.runtime.sessions() as session:
            kwargs = {"body": "On it.", **kwargs}
            service.add_comment(session, actor=self.actor, ticket_id=ticket_id, at=at, **kwargs)
            session.commit()


@pytest.fixture
def history(runtime: Runtime, agent: User) -> History:
    return History(runtime, actor_of(agent, "support"))
