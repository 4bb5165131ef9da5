"""The SLA clock of tickets, with their history written in the past: states as time
passes, pauses while pending, times recorded when targets are done, policies that change
with priority, and business hours across a weekend and a DST change."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session

from patron.core.clock import utcnow
from patron.core.errors import InvalidInput
from patron.crm.tickets.models import Ticket
from tests.conftest import User, assert_error
from tests.crm.tickets.conftest import History, policy_body


def ago(minutes: float) -> datetime:
    return utcnow() - timedelta(minutes=minutes)


def when(text: str) -> datetime:
    return datetime.fromisoformat(text)


def sla_of(client: TestClient, user: User, ticket: uuid.UUID) -> dict[str, Any]:
    answer = client.get(f"/v1/tickets/{ticket}", headers=user.headers)
    assert answer.status_code == 200, answer.text
    sla: dict[str, Any] = answer.json()["sla"]
    return sla


def listed(client: TestClient, user: User, *filters: str) -> set[str]:
    answer = client.get("/v1/tickets", params={"filter": list(filters)}, headers=user.headers)
    assert answer.status_code == 200, answer.text
    return {t["id"] for t in answer.json()["items"]}


def test_states_follow_the_clock(
    client: TestClient, agent: User, policy: dict[str, Any], history: History
) -> None:
    created = ago(10)
    fresh = history.create(created)
    warned = history.create(ago(40))  # the warning comes at half of 60 minutes
    late = history.create(ago(70))
    sla = sla_of(client, agent, fresh)
    first = sla["first_response"]
    assert first["state"] == "ok"
    assert when(first["due_at"]) == created + timedelta(minutes=60)
    assert when(first["warning_at"]) == created + timedelta(minutes=30)
    assert 9.9 < first["elapsed_minutes"] < 10.5
    assert 49.5 < first["remaining_minutes"] < 50.1
    assert sla_of(client, agent, warned)["first_response"]["state"] == "warning"
    overdue = sla_of(client, agent, late)
    assert overdue["state"] == "breached"
    assert overdue["first_response"]["state"] == "breached"
    assert overdue["first_response"]["remaining_minutes"] < -9.5
    assert overdue["resolution"]["state"] == "ok"
    # The same states in SQL, as filters, though no job has looked at the tickets yet.
    assert listed(client, agent, "sla_state:eq:ok") == {str(fresh)}
    assert listed(client, agent, "sla_state:eq:warning") == {str(warned)}
    assert listed(client, agent, "sla_state:eq:breached") == {str(late)}
    assert listed(client, agent, "first_response_breached:eq:true") == {str(late)}
    assert listed(client, agent, "resolution_state:eq:ok") == {str(fresh), str(warned), str(late)}
    # Breaching soon: due within the next half hour.
    soon = (utcnow() + timedelta(minutes=30)).isoformat()
    assert listed(client, agent, f"sla_due_at:lt:{soon}") == {str(warned), str(late)}


def test_pending_pauses_the_clock_and_reopening_resumes_it(
    client: TestClient, agent: User, policy: dict[str, Any], history: History
) -> None:
    waiting = history.create(ago(100))
    history.change(waiting, ago(90), status="pending")
    sla = sla_of(client, agent, waiting)
    assert sla["paused"] is True
    resolution = sla["resolution"]
    assert resolution["paused"] is True
    assert resolution["due_at"] is None
    assert resolution["elapsed_minutes"] == pytest.approx(10, abs=0.01)
    assert resolution["remaining_minutes"] == pytest.approx(230, abs=0.01)
    assert resolution["state"] == "ok"
    assert listed(client, agent, "sla_due_at:empty") == {str(waiting)}

    resumed = history.create(ago(200))
    history.reply(resumed, ago(190))
    history.change(resumed, ago(180), status="pending")
    history.change(resumed, ago(30), status="open")
    sla = sla_of(client, agent, resumed)
    assert sla["paused"] is False
    assert sla["first_response"]["state"] == "met"
    assert sla["first_response"]["elapsed_minutes"] == pytest.approx(10, abs=0.01)
    resolution = sla["resolution"]
    assert 49.9 < resolution["elapsed_minutes"] < 50.5  # 20 before the pause, 30 after
    due = when(resolution["due_at"])
    assert abs(due - (ago(30) + timedelta(minutes=220))) < timedelta(seconds=30)


def test_done_targets_record_their_times(
    client: TestClient, agent: User, policy: dict[str, Any], history: History
) -> None:
    slow = history.create(ago(300))
    history.reply(slow, ago(290))
    history.change(slow, ago(50), status="solved")
    fetched = client.get(f"/v1/tickets/{slow}", headers=agent.headers).json()
    assert fetched["first_response_minutes"] == pytest.approx(10, abs=0.01)
    assert fetched["resolution_minutes"] == pytest.approx(250, abs=0.01)
    sla = fetched["sla"]
    assert sla["first_response"]["state"] == "met"
    assert sla["resolution"]["state"] == "breached"  # solved, but late
    assert sla["resolution"]["elapsed_minutes"] == pytest.approx(250, abs=0.01)
    assert sla["state"] == "breached"

    quick = history.create(ago(100))
    history.change(quick, ago(20), status="solved")
    fetched = client.get(f"/v1/tickets/{quick}", headers=agent.headers).json()
    # Solved without a reply: the first response is done too, but there is no time to keep.
    assert fetched["first_response_minutes"] is None
    assert fetched["sla"]["first_response"]["state"] == "breached"  # 80 minutes > 60
    assert fetched["resolution_minutes"] == pytest.approx(80, abs=0.01)
    assert fetched["sla"]["resolution"]["state"] == "met"
    assert fetched["sla"]["due_at"] is None
    assert listed(client, agent, "resolution_breached:eq:true") == {str(slow)}
    assert listed(client, agent, "resolution_state:eq:met") == {str(quick)}
    assert listed(client, agent, "resolution_minutes:gt:100") == {str(slow)}


def test_a_new_priority_brings_the_policy_that_covers_it(
    client: TestClient, admin: User, agent: User, policy: dict[str, Any], history: History
) -> None:
    urgent = client.post(
        "/v1/sla-policies",
        json=policy_body(
            name="Urgent",
            position=0,
            priorities=["urgent"],
            targets={"urgent": {"first_response": 15, "resolution": 60}},
        ),
        headers=admin.headers,
    ).json()
    ticket = history.create(ago(20))
    assert sla_of(client, agent, ticket)["first_response"]["state"] == "ok"
    history.change(ticket, ago(10), priority="urgent")
    sla = sla_of(client, agent, ticket)
    assert sla["policy_id"] == urgent["id"]
    assert sla["first_response"]["target_minutes"] == 15
    # The 20 minutes already counted stay on the clock: over the new 15.
    assert sla["first_response"]["state"] == "breached"
    assert sla["resolution"]["state"] == "ok"
    history.change(ticket, ago(5), priority="low")
    sla = sla_of(client, agent, ticket)
    assert sla["policy_id"] == policy["id"]
    assert sla["first_response"]["state"] == "ok"  # judged afresh: 15 of 60 minutes
    # A target already done keeps the terms it was judged by.
    history.reply(ticket, ago(4))
    history.change(ticket, ago(3), priority="urgent")
    sla = sla_of(client, agent, ticket)
    assert sla["first_response"]["target_minutes"] == 60
    assert sla["first_response"]["state"] == "met"
    assert sla["resolution"]["target_minutes"] == 60


def test_business_hours_across_a_weekend_and_a_dst_change(
    client: TestClient, admin: User, agent: User, history: History, db: Session
) -> None:
    client.post(
        "/v1/sla-policies",
        json=policy_body(
            timezone="Europe/Paris",
            working_days=["mon", "tue", "wed", "thu", "fri"],
            working_hours=[{"start": "09:00", "end": "12:00"}, {"start": "13:00", "end": "17:00"}],
            targets={p: {"first_response": 120, "resolution": 600} for p in ("normal", "low")},
            priorities=["normal", "low"],
        ),
        headers=admin.headers,
    )
    # Friday 28 March 2025, 16:00 in Paris; the clocks go forward on Sunday the 30th.
    friday = datetime(2025, 3, 28, 15, 0, tzinfo=UTC)
    ticket = history.create(friday)
    fetched = client.get(f"/v1/tickets/{ticket}", headers=agent.headers).json()
    # An hour on Friday, an hour on Monday: 10:00 CEST, 08:00 UTC (09:00 before the change).
    first_due = when(fetched["sla"]["first_response"]["due_at"])
    assert first_due == datetime(2025, 3, 31, 8, tzinfo=UTC)
    # 10 hours: 1 on Friday, 7 on Monday (lunch is not working time), 2 on Tuesday.
    resolution_due = when(fetched["sla"]["resolution"]["due_at"])
    assert resolution_due == datetime(2025, 4, 1, 9, tzinfo=UTC)
    history.reply(ticket, datetime(2025, 3, 31, 7, 30, tzinfo=UTC))  # Monday 09:30
    history.change(ticket, datetime(2025, 4, 1, 8, 0, tzinfo=UTC), status="solved")
    done = client.get(f"/v1/tickets/{ticket}", headers=agent.headers).json()
    assert done["first_response_minutes"] == 90
    assert done["resolution_minutes"] == 60 + 7 * 60 + 60
    assert done["sla"]["state"] == "met"
    stored = db.get_one(Ticket, ticket)
    # Friday 16:00 to Monday 09:30 on the wall is 65.5 hours; the clocks skipped one.
    assert stored.first_response_calendar_minutes == 64.5 * 60
    assert stored.resolution_calendar_minutes == 89 * 60


def test_a_history_is_written_in_order_and_never_ahead_of_now(
    client: TestClient, agent: User, policy: dict[str, Any], history: History
) -> None:
    with pytest.raises(InvalidInput) as future:
        history.create(utcnow() + timedelta(hours=1))
    assert future.value.field == "at"
    ticket = history.create(ago(60))
    history.change(ticket, ago(30), status="pending")
    with pytest.raises(InvalidInput) as earlier:
        history.change(ticket, ago(45), status="open")
    assert earlier.value.field == "at"
    assert_error(client.get(f"/v1/tickets/{uuid.uuid4()}", headers=agent.headers), 404)
