"""Running runs: each action through the CRM's services, labelled with the rule; completed
actions never done twice (retries, a dead worker's run taken over, two workers at once);
signed webhooks to a real receiver, retried with backoff until they get through or fail;
failed runs retried by hand."""

from __future__ import annotations

import json
import threading
import uuid
from datetime import timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select, update
from standardwebhooks import Webhook

from patron.auth.models import AuditEntry
from patron.cli import app
from patron.collect.models import Event
from patron.core.clock import as_utc, utcnow
from patron.core.runtime import Runtime
from patron.crm.models import Activity
from patron.crm.workflows import engine, jobs
from patron.crm.workflows.models import WorkflowRun
from patron.pipeline import Processor
from tests.conftest import MakePerson, MakeUser, User, assert_error
from tests.crm.workflows.conftest import (
    LEAD_STATUS,
    MakeRule,
    Receiver,
    Work,
    patch_contact,
    runs,
)

LATER = timedelta(hours=2)


@pytest.fixture
def pipeline(client: TestClient, admin: User) -> dict[str, Any]:
    stages = [{"name": "Qualified", "probability": 10}, {"name": "Proposal", "probability": 60}]
    answer = client.post(
        "/v1/pipelines", json={"name": "Sales", "stages": stages}, headers=admin.headers
    )
    made: dict[str, Any] = answer.json()
    return made


def won_deal(
    client: TestClient, rep: User, pipeline: dict[str, Any], person: str | None = None
) -> str:
    body = {"name": "Annual plan", "pipeline_id": pipeline["id"], "person_id": person}
    deal = client.post("/v1/deals", json=body, headers=rep.headers).json()
    answer = client.patch(f"/v1/deals/{deal['id']}", json={"status": "won"}, headers=rep.headers)
    assert answer.status_code == 200, answer.text
    return str(deal["id"])


def activities_of(runtime: Runtime, **links: Any) -> list[Activity]:
    with runtime.readers() as session:
        statement = select(Activity).filter_by(**links).order_by(Activity.created_at)
        return list(session.scalars(statement))


def test_a_won_deal_gets_its_onboarding_task_and_note_once(
    runtime: Runtime,
    client: TestClient,
    admin: User,
    make_user: MakeUser,
    make_person: MakePerson,
    make_rule: MakeRule,
    pipeline: dict[str, Any],
    work: Work,
) -> None:
    rep = make_user("sales")
    make_rule(
        {"type": "deal_won"},
        {"type": "create_task", "subject": "Onboard the customer", "due_in_days": 2},
        {"type": "add_note", "body": "Won: onboarding started"},
        name="Onboarding",
    )
    person = make_person("ada@example.com")
    client.post(f"/v1/contacts/{person}/shares", json={"user_id": rep.id}, headers=admin.headers)
    deal = won_deal(client, rep, pipeline, person)
    before = utcnow()
    assert work() == {"succeeded": 1}
    task, note = activities_of(runtime, deal_id=uuid.UUID(deal))
    assert (task.kind, task.subject, str(task.owner_id)) == ("task", "Onboard the customer", rep.id)
    assert str(task.person_id) == person
    assert task.due_at is not None
    assert before + timedelta(days=2) <= as_utc(task.due_at) <= utcnow() + timedelta(days=2)
    assert (note.kind, note.body) == ("note", "Won: onboarding started")
    assert task.created_by == note.created_by == "workflow:Onboarding"
    (run,) = runs(client, admin)
    assert run["status"] == "succeeded"
    assert run["attempts"] == 1
    assert [s["status"] for s in run["steps"]] == ["ok", "ok"]
    assert run["steps"][0]["result"] == {"activity_id": str(task.id)}
    # The rep sees the task among theirs, and the audit log says the rule made it.
    mine = client.get("/v1/my-tasks", headers=rep.headers).json()
    assert [t["id"] for t in mine["upcoming"]] == [str(task.id)]
    with runtime.readers() as session:
        labels = set(
            session.scalars(
                select(AuditEntry.actor_label).where(AuditEntry.record_id == str(task.id))
            )
        )
    assert labels == {"workflow:Onboarding"}
    # Nothing is due any more, and a run put back (as if its end had not been recorded)
    # does not make its completed actions again.
    assert work() == {}
    with runtime.sessions() as session:
        session.execute(update(WorkflowRun).values(status="pending"))
        session.commit()
    assert work() == {"succeeded": 1}
    assert len(activities_of(runtime, deal_id=uuid.UUID(deal))) == 2


def test_owner_and_fields_are_set_through_the_services(
    runtime: Runtime,
    client: TestClient,
    admin: User,
    make_user: MakeUser,
    make_person: MakePerson,
    make_rule: MakeRule,
    work: Work,
) -> None:
    rep = make_user("sales")
    make_rule(
        {
            "type": "field_changed",
            "record_type": "person",
            "field": "lifecycle_stage",
            "to": "salesqualifiedlead",
        },
        {"type": "assign_owner", "user_id": rep.id},
        {"type": "set_field", "field": "lead_status", "value": "open"},
        {"type": "set_field", "field": "tags", "value": ["hot"]},
        name="SQL to Rita",
        conditions=[{"field": "owner_id", "op": "empty"}],
    )
    person = make_person("ada@example.com")
    answer = client.patch(
        f"/v1/contacts/{person}",
        json={"lifecycle_stage": "salesqualifiedlead"},
        headers=admin.headers,
    )
    assert answer.status_code == 200
    assert work() == {"succeeded": 1}
    contact = client.get(f"/v1/contacts/{person}", headers=admin.headers).json()
    assert (contact["owner_id"], contact["lead_status"], contact["tags"]) == (
        rep.id,
        "open",
        ["hot"],
    )
    # The rep now sees the person (visibility follows the owner the rule set).
    assert client.get(f"/v1/contacts/{person}", headers=rep.headers).status_code == 200
    with runtime.readers() as session:
        changes = list(
            session.scalars(
                select(AuditEntry)
                .where(AuditEntry.record_id == person, AuditEntry.action == "update")
                .order_by(AuditEntry.id)
            )
        )
        crm_events = list(
            session.scalars(select(Event).where(Event.event == "Contact Owner Changed"))
        )
    assert [c.actor_label for c in changes] == [admin.email] + ["workflow:SQL to Rita"] * 3
    assert changes[1].after == {"owner_id": rep.id}
    assert crm_events[0].payload["context"]["patron"]["actor"] == "workflow:SQL to Rita"


def test_a_webhook_is_signed_and_retried_until_the_receiver_takes_it(
    client: TestClient,
    admin: User,
    make_person: MakePerson,
    make_rule: MakeRule,
    receiver: Receiver,
    work: Work,
) -> None:
    receiver.statuses = [500]
    rule = make_rule(
        LEAD_STATUS,
        {"type": "send_webhook", "url": receiver.url},
        name="Tell the warehouse",
    )
    person = make_person("ada@example.com")
    patch_contact(client, admin, person, lead_status="open")
    started = utcnow()
    assert work() == {"retrying": 1}
    (run,) = runs(client, admin)
    assert run["steps"][0]["status"] == "failed"
    assert "500" in run["steps"][0]["error"]
    assert "the receiver answered 500" in run["last_error"]
    # The next attempt waits (backoff); before then, nothing happens.
    assert as_utc_text(run["next_attempt_at"]) >= started + timedelta(seconds=29)
    assert work() == {}
    assert work(now=utcnow() + LATER) == {"succeeded": 1}
    (run,) = runs(client, admin)
    assert run["attempts"] == 2
    assert run["steps"][0]["result"] == {"status_code": 200}
    first, second = receiver.received
    # Both attempts carried the same message: a receiver drops the repeat by its id.
    assert first.headers["webhook-id"] == second.headers["webhook-id"]
    assert first.body == second.body
    verifier = Webhook(rule["webhook_secret"])
    for delivery in receiver.received:
        assert delivery.headers["webhook-signature"].startswith("v1,")
        payload = verifier.verify(delivery.body, delivery.headers)
    assert payload["type"] == "workflow.triggered"
    data = payload["data"]
    assert data["rule"] == {"id": rule["id"], "name": "Tell the warehouse"}
    assert data["record_type"] == "person"
    assert data["record_id"] == person
    assert data["change"]["after"] == {"lead_status": "open"}
    assert data["record"]["lead_status"] == "open"
    # Signed with another secret, the same message does not verify.
    with pytest.raises(Exception, match="signature"):
        Webhook("whsec_" + "A" * 44).verify(second.body, second.headers)


def as_utc_text(value: str) -> Any:
    from datetime import datetime

    return as_utc(datetime.fromisoformat(value))


def test_a_receiver_that_never_answers_in_time_fails_the_run_after_its_attempts(
    client: TestClient,
    admin: User,
    make_person: MakePerson,
    make_rule: MakeRule,
    receiver: Receiver,
    work: Work,
) -> None:
    receiver.delay = 1.0
    make_rule(
        LEAD_STATUS,
        {"type": "add_note", "body": "Status changed"},
        {"type": "send_webhook", "url": receiver.url},
    )
    person = make_person("ada@example.com")
    patch_contact(client, admin, person, lead_status="open")
    quick = {"workflow_webhook_timeout_seconds": 0.2, "workflow_max_attempts": 2}
    assert work(**quick) == {"retrying": 1}
    assert work(now=utcnow() + LATER, **quick) == {"failed": 1}
    (run,) = runs(client, admin)
    assert run["status"] == "failed"
    assert run["attempts"] == 2
    assert "Timeout" in run["last_error"]
    assert "after 2 attempts" in run["last_error"]
    assert [s["status"] for s in run["steps"]] == ["ok", "failed"]
    assert run["steps"][1]["attempts"] == 2
    assert run["finished_at"] is not None
    # Fixed on the receiver's side: an admin retries; the note is not written twice.
    receiver.delay = 0
    retry = client.post(f"/v1/workflow-runs/{run['id']}/retry", headers=admin.headers)
    assert retry.status_code == 200
    assert retry.json()["status"] == "pending"
    assert work() == {"succeeded": 1}
    (run,) = runs(client, admin)
    assert [s["status"] for s in run["steps"]] == ["ok", "ok"]
    notes = client.get(f"/v1/contacts/{person}/timeline?kind=note", headers=admin.headers).json()
    assert len(notes["items"]) == 1
    assert_error(
        client.post(f"/v1/workflow-runs/{run['id']}/retry", headers=admin.headers), 409, "run_id"
    )
    assert_error(
        client.post("/v1/workflow-runs/999999/retry", headers=admin.headers), 404, "run_id"
    )


def test_an_action_that_cannot_succeed_fails_at_once(
    runtime: Runtime,
    client: TestClient,
    admin: User,
    make_user: MakeUser,
    make_person: MakePerson,
    make_rule: MakeRule,
    work: Work,
) -> None:
    """Bad input is not cured by waiting: a user deactivated after the rule was saved."""
    rep = make_user("sales")
    make_rule(
        LEAD_STATUS,
        {"type": "assign_owner", "user_id": rep.id},
    )
    from patron.auth.models import User as UserRow

    with runtime.sessions() as session:
        session.execute(update(UserRow).where(UserRow.email == rep.email).values(active=False))
        session.commit()
    person = make_person("ada@example.com")
    patch_contact(client, admin, person, lead_status="open")
    assert work() == {"failed": 1}
    (run,) = runs(client, admin)
    assert run["attempts"] == 1
    assert "no active user" in run["last_error"]
    assert client.get(f"/v1/contacts/{person}", headers=admin.headers).json()["owner_id"] is None


def test_two_workers_never_run_a_run_twice(
    runtime: Runtime,
    client: TestClient,
    admin: User,
    make_user: MakeUser,
    make_rule: MakeRule,
    pipeline: dict[str, Any],
    work: Work,
) -> None:
    rep = make_user("sales")
    make_rule({"type": "deal_won"}, {"type": "create_task", "subject": "Onboard"})
    deals = [won_deal(client, rep, pipeline) for _ in range(12)]
    results: list[Any] = []
    workers = [threading.Thread(target=lambda: results.append(work())) for _ in range(2)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    assert sum(sum(r.values()) for r in results) == 12
    tasks = activities_of(runtime, kind="task")
    assert sorted(str(t.deal_id) for t in tasks) == sorted(deals)
    assert {r["status"] for r in runs(client, admin)} == {"succeeded"}


def test_a_dead_workers_run_is_taken_over_after_its_lease(
    runtime: Runtime,
    client: TestClient,
    admin: User,
    make_person: MakePerson,
    make_rule: MakeRule,
    work: Work,
) -> None:
    make_rule(
        LEAD_STATUS,
        {"type": "add_note", "body": "Noted"},
    )
    person = make_person("ada@example.com")
    patch_contact(client, admin, person, lead_status="open")
    # A worker claims the run and dies before doing anything.
    claim, claimed = engine._claim(runtime.sessions, runtime.settings, utcnow())
    assert len(claimed) == 1
    assert work() == {}  # leased: nobody else takes it
    assert work(now=utcnow() + engine.LEASE + timedelta(minutes=1)) == {"succeeded": 1}
    (run,) = runs(client, admin)
    assert run["attempts"] == 2
    # The dead worker wakes up: the run is no longer its own, it does nothing.
    assert (
        engine._execute(runtime.sessions, runtime.settings, claimed[0], claim, utcnow()) == "lost"
    )
    notes = client.get(f"/v1/contacts/{person}/timeline?kind=note", headers=admin.headers).json()
    assert len(notes["items"]) == 1


def test_runs_are_listed_by_rule_status_and_record_and_seen_like_their_records(
    client: TestClient,
    admin: User,
    make_user: MakeUser,
    make_person: MakePerson,
    make_rule: MakeRule,
) -> None:
    rule = make_rule(
        LEAD_STATUS,
        {"type": "add_note", "body": "x"},
    )
    manager = make_user("manager")
    rep = make_user("sales")
    team = client.post("/v1/teams", json={"name": "Field"}, headers=admin.headers).json()
    for member in (manager, rep):
        client.post(
            f"/v1/teams/{team['id']}/members", json={"user_id": member.id}, headers=admin.headers
        )
    theirs = make_person("theirs@example.com")
    others = make_person("others@example.com")
    stranger = make_user("sales")
    client.patch(f"/v1/contacts/{theirs}", json={"owner_id": rep.id}, headers=admin.headers)
    client.patch(f"/v1/contacts/{others}", json={"owner_id": stranger.id}, headers=admin.headers)
    for person in (theirs, others):
        patch_contact(client, admin, person, lead_status="open")
    assert len(runs(client, admin)) == 2
    assert [r["record_id"] for r in runs(client, manager)] == [theirs]
    assert [r["record_id"] for r in runs(client, admin, record_id=others)] == [others]
    assert len(runs(client, admin, status="pending", rule_id=rule["id"])) == 2
    assert runs(client, admin, status="failed") == []
    page = client.get(
        f"/v1/workflow-rules/{rule['id']}/runs", params={"limit": 1}, headers=admin.headers
    ).json()
    assert page["total"] == 2
    assert page["next_cursor"]
    assert_error(
        client.get("/v1/workflow-runs", params={"status": "odd"}, headers=admin.headers),
        400,
        "status",
    )
    hidden = next(r for r in runs(client, admin) if r["record_id"] == others)
    assert_error(client.get(f"/v1/workflow-runs/{hidden['id']}", headers=manager.headers), 404)
    assert client.get(f"/v1/workflow-runs/{hidden['id']}", headers=admin.headers).status_code == 200


def test_the_command_line_runs_what_is_due(
    client: TestClient,
    admin: User,
    make_person: MakePerson,
    make_rule: MakeRule,
    cli: Any,
) -> None:
    make_rule(
        LEAD_STATUS,
        {"type": "add_note", "body": "x"},
    )
    person = make_person("ada@example.com")
    patch_contact(client, admin, person, lead_status="open")
    result = cli.invoke(app, ["workflows", "run", "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout) == {"succeeded": 1}
    again = cli.invoke(app, ["workflows", "run"])
    assert again.exit_code == 0
    assert "nothing was due" in again.output


def test_the_processor_does_the_runs_in_a_thread_of_their_own(
    runtime: Runtime,
    client: TestClient,
    admin: User,
    make_person: MakePerson,
    make_rule: MakeRule,
) -> None:
    make_rule(LEAD_STATUS, {"type": "add_note", "body": "x"})
    person = make_person("ada@example.com")
    patch_contact(client, admin, person, lead_status="open")
    processor = Processor(runtime.sessions, settings=runtime.settings)
    processor.run_due_jobs({"workflows": -1e9})  # its interval has long passed
    jobs.wait(timeout=60)
    assert [r["status"] for r in runs(client, admin)] == ["succeeded"]
