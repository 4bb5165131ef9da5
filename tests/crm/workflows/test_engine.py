"""Matching changes against rules: which changes fire which rule, conditions on the record as
it is, a run per rule and change written in the change's transaction (never twice, never for
a rolled-back change), the cache of rules, and loops between rules stopped at a depth."""

from __future__ import annotations

import uuid

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select, update
from sqlalchemy.exc import IntegrityError

from patron.auth.service import record_audit
from patron.core.clock import utcnow
from patron.core.runtime import Runtime
from patron.crm import contacts
from patron.crm.models import Activity
from patron.crm.workflows import engine
from patron.crm.workflows.engine import condition_holds, same_value
from patron.crm.workflows.models import WorkflowRule, WorkflowRun
from tests.conftest import MakePerson, MakeUser, User
from tests.crm.workflows.conftest import LEAD_STATUS, MakeRule, Work, patch_contact, runs

NOTE = {"type": "add_note", "body": "Seen by a rule"}
HOOK = {"type": "send_webhook", "url": "http://127.0.0.1:9/never-called"}


def count_runs(runtime: Runtime) -> int:
    with runtime.readers() as session:
        return session.scalar(select(func.count()).select_from(WorkflowRun)) or 0


def test_field_changes_fire_the_rules_that_wait_for_them(
    client: TestClient, admin: User, make_rule: MakeRule, make_person: MakePerson
) -> None:
    person = make_person("ada@example.com", country="PT")
    any_change = make_rule(
        {"type": "field_changed", "record_type": "person", "field": "lifecycle_stage"}, NOTE
    )
    to_sql = make_rule(
        {
            "type": "field_changed",
            "record_type": "person",
            "field": "lifecycle_stage",
            "to": "salesqualifiedlead",
        },
        NOTE,
    )
    from_lead = make_rule(
        {
            "type": "field_changed",
            "record_type": "person",
            "field": "lifecycle_stage",
            "from": "lead",
        },
        NOTE,
    )
    from_empty = make_rule(
        {
            "type": "field_changed",
            "record_type": "person",
            "field": "lifecycle_stage",
            "from": None,
        },
        NOTE,
    )
    other_field = make_rule(LEAD_STATUS, NOTE)
    patch_contact(client, admin, person, lifecycle_stage="lead")
    patch_contact(client, admin, person, lifecycle_stage="salesqualifiedlead")
    patch_contact(client, admin, person, lifecycle_stage="salesqualifiedlead")  # no change
    fired = runs(client, admin)
    by_rule: dict[str, int] = {}
    for run in fired:
        by_rule[run["rule_id"]] = by_rule.get(run["rule_id"], 0) + 1
        assert run["record_type"] == "person"
        assert run["record_id"] == person
        assert run["status"] == "pending"
        assert run["depth"] == 0
        assert run["trigger_key"].startswith("audit:")
        assert run["change"]["action"] == "update"
    assert by_rule == {
        any_change["id"]: 2,
        to_sql["id"]: 1,
        from_lead["id"]: 1,
        from_empty["id"]: 1,
    }
    assert other_field["id"] not in by_rule
    first = min(fired, key=lambda r: r["id"])
    assert first["change"]["before"] == {"lifecycle_stage": None}
    assert first["change"]["after"] == {"lifecycle_stage": "lead"}
    assert first["change"]["actor"] == admin.email


def test_conditions_are_checked_on_the_record_as_it_is(
    client: TestClient,
    admin: User,
    make_user: MakeUser,
    make_rule: MakeRule,
    make_person: MakePerson,
) -> None:
    client.post(
        "/v1/custom-fields",
        json={"record_type": "person", "key": "seats", "label": "Seats", "type": "number"},
        headers=admin.headers,
    )
    rep = make_user("sales")
    rule = make_rule(
        LEAD_STATUS,
        NOTE,
        conditions=[
            {"field": "owner_id", "op": "empty"},
            {"field": "traits.country", "op": "in", "value": ["PT", "ES"]},
            {"field": "custom.seats", "op": "gt", "value": 10},
            {"field": "tags", "op": "contains", "value": "vip"},
        ],
    )
    fits = make_person("fits@example.com", country="PT")
    owned = make_person("owned@example.com", country="PT")
    far = make_person("far@example.com", country="JP")
    small = make_person("small@example.com", country="ES")
    for person, seats, owner in (
        (fits, 50, None),
        (owned, 50, rep.id),
        (far, 50, None),
        (small, 5, None),
    ):
        patch_contact(client, admin, person, custom={"seats": seats}, tags=["vip"], owner_id=owner)
        patch_contact(client, admin, person, lead_status="open")
    assert [r["record_id"] for r in runs(client, admin, rule_id=rule["id"])] == [fits]


def test_condition_operators() -> None:
    assert condition_holds(None, "empty", None)
    assert condition_holds([], "empty", None)
    assert condition_holds("x", "not_empty", None)
    assert not condition_holds("", "not_empty", None)
    assert condition_holds("1000", "eq", 1000)
    assert condition_holds(1000.0, "eq", "1000")
    assert not condition_holds("abc", "eq", "ABC")
    assert condition_holds("abc", "ne", "ABC")
    assert condition_holds(None, "ne", "x")
    assert not condition_holds(None, "eq", "x")
    assert condition_holds(uuid.UUID(int=1), "eq", str(uuid.UUID(int=1)))
    assert condition_holds("Acme Corp", "contains", "acme")
    assert condition_holds(["a", "vip"], "contains", "vip")
    assert condition_holds(["a", "b"], "eq", ["a", "b"])
    assert not condition_holds(["a"], "eq", "a")
    assert condition_holds("lead", "in", ["lead", "customer"])
    assert condition_holds(["x", "lead"], "in", ["lead"])
    assert condition_holds(12, "gt", 10)
    assert condition_holds("2026-01-02", "gt", "2026-01-01")
    assert not condition_holds(None, "gt", 1)
    assert not condition_holds("abc", "lt", 5)
    assert same_value(None, None)
    assert not same_value(None, "")


def test_deal_triggers_fire_on_stage_and_outcome(
    client: TestClient, admin: User, make_rule: MakeRule, make_person: MakePerson
) -> None:
    stages = [{"name": n, "probability": p} for n, p in (("A", 10), ("B", 50), ("C", 90))]
    pipeline = client.post(
        "/v1/pipelines", json={"name": "P", "stages": stages}, headers=admin.headers
    ).json()
    a, b, c = (s["id"] for s in pipeline["stages"])
    to_b = make_rule({"type": "stage_changed", "to": b}, NOTE, name="to B")
    any_stage = make_rule({"type": "stage_changed"}, NOTE, name="any stage")
    won = make_rule({"type": "deal_won"}, NOTE, name="won")
    lost = make_rule({"type": "deal_lost"}, NOTE, name="lost")
    created = make_rule({"type": "record_created", "record_type": "deal"}, NOTE, name="created")
    big = make_rule(
        {"type": "field_changed", "record_type": "deal", "field": "amount", "to": 5000},
        NOTE,
        name="big",
    )
    deal = client.post(
        "/v1/deals",
        json={"name": "D", "pipeline_id": pipeline["id"], "amount": 100, "currency": "EUR"},
        headers=admin.headers,
    ).json()
    url = f"/v1/deals/{deal['id']}"
    for change in (
        {"stage_id": b},
        {"stage_id": c},
        {"amount": 5000},
        {"status": "won"},
        {"status": "open"},
        {"status": "lost", "lost_reason": "Price"},
    ):
        assert client.patch(url, json=change, headers=admin.headers).status_code == 200
    names = sorted(r["rule_name"] for r in runs(client, admin, record_id=deal["id"]))
    assert names == ["any stage", "any stage", "big", "created", "lost", "to B", "won"]
    assert {to_b["id"], any_stage["id"], won["id"], lost["id"], created["id"], big["id"]} == {
        r["rule_id"] for r in runs(client, admin)
    }
    assert a


def test_tickets_and_forms_fire_on_their_audit_entries(
    runtime: Runtime, client: TestClient, admin: User, make_rule: MakeRule
) -> None:
    """The contract with tickets (sla_warning / sla_breach with a target) and forms
    (form_submitted on the person, with the form id): their audit entries fire rules."""
    breach = make_rule({"type": "sla_breach", "target": "resolution"}, HOOK, name="breach")
    warning = make_rule({"type": "sla_warning"}, HOOK, name="warning")
    form_id = uuid.uuid4()
    form = make_rule({"type": "form_submitted", "form_id": str(form_id)}, HOOK, name="form")
    ticket, person = uuid.uuid4(), uuid.uuid4()
    with runtime.sessions() as session:
        for action, target in (
            ("sla_breach", "first_response"),
            ("sla_breach", "resolution"),
            ("sla_warning", "resolution"),
        ):
            record_audit(
                session,
                actor=None,
                action=action,
                record_type="ticket",
                record_id=str(ticket),
                after={"target": target, "due_at": "2026-01-01"},
            )
        for submitted in (form_id, uuid.uuid4()):
            record_audit(
                session,
                actor=None,
                action="form_submitted",
                record_type="person",
                record_id=str(person),
                after={"form_id": str(submitted), "submission_id": 1},
            )
        session.commit()
    fired = {(r["rule_id"], r["record_id"]) for r in runs(client, admin)}
    assert fired == {
        (breach["id"], str(ticket)),
        (warning["id"], str(ticket)),
        (form["id"], str(person)),
    }


def test_a_change_rolled_back_leaves_no_run(
    runtime: Runtime, make_rule: MakeRule, make_person: MakePerson
) -> None:
    make_rule(LEAD_STATUS, NOTE)
    person = uuid.UUID(make_person("ada@example.com"))
    with runtime.sessions() as session:
        contacts.update_contact(
            session, actor=None, person_id=person, changes={"lead_status": "open"}
        )
        # In the change's transaction, its run is there ...
        assert session.scalar(select(func.count()).select_from(WorkflowRun)) == 1
        session.rollback()
    # ... and goes with it.
    assert count_runs(runtime) == 0
    with runtime.sessions() as session:
        contacts.update_contact(
            session, actor=None, person_id=person, changes={"lead_status": "open"}
        )
        session.commit()
    assert count_runs(runtime) == 1


def test_a_trigger_runs_a_rule_once(
    runtime: Runtime, make_rule: MakeRule, make_person: MakePerson
) -> None:
    make_rule(LEAD_STATUS, NOTE)
    person = uuid.UUID(make_person("ada@example.com"))
    with runtime.sessions() as session:
        contacts.update_contact(
            session, actor=None, person_id=person, changes={"lead_status": "open"}
        )
        session.commit()
    with runtime.sessions() as session:
        run = session.scalars(select(WorkflowRun)).one()
        session.add(
            WorkflowRun(
                rule_id=run.rule_id,
                trigger_key=run.trigger_key,
                record_type=run.record_type,
                record_id=run.record_id,
                rule_name=run.rule_name,
            )
        )
        with pytest.raises(IntegrityError):
            session.flush()


def test_disabled_and_deleted_rules_stop_firing_even_in_a_stale_cache(
    runtime: Runtime,
    client: TestClient,
    admin: User,
    make_rule: MakeRule,
    make_person: MakePerson,
    work: Work,
) -> None:
    rule = make_rule(LEAD_STATUS, NOTE)
    person = make_person("ada@example.com")
    patch_contact(client, admin, person, lead_status="open")
    assert count_runs(runtime) == 1
    # Another process disables the rule: this one's cache does not know yet.
    with runtime.sessions() as session:
        session.execute(update(WorkflowRule).values(enabled=False))
        session.commit()
    patch_contact(client, admin, person, lead_status="new")
    assert count_runs(runtime) == 1
    # Enabled again through the API (this process's cache is refreshed on commit).
    url = f"/v1/workflow-rules/{rule['id']}"
    assert client.patch(url, json={"enabled": True}, headers=admin.headers).status_code == 200
    patch_contact(client, admin, person, lead_status="open")
    assert count_runs(runtime) == 2
    # Deleted: no more runs, and a run still waiting is cancelled, not run.
    assert client.delete(url, headers=admin.headers).status_code == 204
    patch_contact(client, admin, person, lead_status="new")
    assert count_runs(runtime) == 2
    assert work() == {"cancelled": 2}
    with runtime.readers() as session:
        assert session.scalar(select(func.count()).select_from(Activity)) == 0
    assert {r["status"] for r in runs(client, admin)} == {"cancelled"}


def test_a_rule_edited_elsewhere_fires_as_it_is_now(
    runtime: Runtime,
    client: TestClient,
    admin: User,
    make_rule: MakeRule,
    make_person: MakePerson,
) -> None:
    make_rule(LEAD_STATUS, NOTE)
    person = make_person("ada@example.com")
    patch_contact(client, admin, person, lead_status="open")
    assert count_runs(runtime) == 1
    # Another process moves the rule to another field; this one's copy still has the old.
    with runtime.sessions() as session:
        session.execute(
            update(WorkflowRule).values(trigger={"field": "lifecycle_stage"}, updated_at=utcnow())
        )
        session.commit()
    patch_contact(client, admin, person, lead_status="new")
    assert count_runs(runtime) == 1
    patch_contact(client, admin, person, lifecycle_stage="lead")
    assert count_runs(runtime) == 2


def test_a_loop_through_two_rules_stops_at_the_depth(
    client: TestClient,
    admin: User,
    make_rule: MakeRule,
    make_person: MakePerson,
    work: Work,
    runtime: Runtime,
) -> None:
    """Each rule is fine alone; together every note makes a task and every task a note.
    The chain is cut at PATRON_WORKFLOW_MAX_DEPTH, and the cut is recorded."""
    make_rule(
        {"type": "record_created", "record_type": "activity", "kind": "note"},
        {"type": "create_task", "subject": "Follow the note up"},
        name="note makes task",
    )
    make_rule({"type": "record_created", "record_type": "task"}, NOTE, name="task makes note")
    person = make_person("ada@example.com")
    answer = client.post(
        "/v1/activities",
        json={"kind": "note", "person_id": person, "body": "First call went well"},
        headers=admin.headers,
    )
    assert answer.status_code == 201
    outcomes = work(until_idle=True)
    depth = runtime.settings.workflow_max_depth
    assert outcomes == {"succeeded": depth}
    chain = sorted(runs(client, admin), key=lambda r: r["depth"])
    assert [r["depth"] for r in chain] == list(range(depth + 1))
    assert [r["status"] for r in chain] == ["succeeded"] * depth + ["loop_stopped"]
    stopped = chain[-1]
    assert stopped["parent_run_id"] == chain[-2]["id"]
    assert "PATRON_WORKFLOW_MAX_DEPTH" in stopped["last_error"]
    assert stopped["steps"][0]["status"] == "pending"  # never run
    with runtime.readers() as session:
        made = session.scalar(select(func.count()).select_from(Activity)) or 0
    assert made == 1 + depth  # the first note and one activity per run that ran
    # A shallower limit cuts the next chain sooner.
    client.post(
        "/v1/activities",
        json={"kind": "note", "person_id": person, "body": "Another"},
        headers=admin.headers,
    )
    assert work(until_idle=True, workflow_max_depth=2) == {"succeeded": 2}


def test_a_rule_firing_too_often_on_one_record_is_stopped(
    client: TestClient,
    admin: User,
    make_rule: MakeRule,
    make_person: MakePerson,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A loop that passes through the event log escapes the chain depth; the rate of one
    rule on one record still stops it."""
    monkeypatch.setattr(engine, "RECORD_RATE_LIMIT", 3)
    make_rule(LEAD_STATUS, NOTE)
    person, other = make_person("ada@example.com"), make_person("bob@example.com")
    for status in ("open", "new", "open", "new"):
        patch_contact(client, admin, person, lead_status=status)
    patch_contact(client, admin, other, lead_status="open")
    statuses = [
        (r["record_id"], r["status"]) for r in sorted(runs(client, admin), key=lambda r: r["id"])
    ]
    assert statuses == [(person, "pending")] * 3 + [(person, "loop_stopped"), (other, "pending")]
    stopped = runs(client, admin, status="loop_stopped")[0]
    assert "ran 3 times on this record in the last hour" in stopped["last_error"]
