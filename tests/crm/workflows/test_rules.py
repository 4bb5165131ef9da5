"""Defining workflow rules: what is accepted, what is refused (and which field is named),
rules that would trigger themselves, the secret shown once, edits, deletion, the audit."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient

from tests.conftest import MakePerson, MakeUser, User, assert_error
from tests.crm.workflows.conftest import LEAD_STATUS, MakeRule, Work, patch_contact

NOTE = {"type": "add_note", "body": "Checked by the rule"}


@pytest.fixture
def pipeline(client: TestClient, admin: User) -> dict[str, Any]:
    stages = [{"name": "Qualified", "probability": 10}, {"name": "Won", "probability": 90}]
    answer = client.post(
        "/v1/pipelines", json={"name": "Sales", "stages": stages}, headers=admin.headers
    )
    assert answer.status_code == 201, answer.text
    made: dict[str, Any] = answer.json()
    return made


def post(client: TestClient, admin: User, trigger: Any, *actions: Any, **extra: Any) -> Any:
    body = {"name": "R", "trigger": trigger, "actions": list(actions), **extra}
    return client.post("/v1/workflow-rules", json=body, headers=admin.headers)


def test_a_rule_is_saved_with_its_secret_shown_once(
    client: TestClient, admin: User, make_rule: MakeRule
) -> None:
    made = make_rule(
        {"type": "deal_won"},
        {"type": "create_task", "subject": "Onboard them", "due_in_days": 2},
        {"type": "send_webhook", "url": "https://example.com/hook"},
        name="Onboarding",
        conditions=[{"field": "amount", "op": "gt", "value": 1000}],
    )
    assert made["webhook_secret"].startswith("whsec_")
    assert made["trigger"] == {"type": "deal_won", "record_type": "deal"}
    assert made["actions"][0] == {
        "type": "create_task",
        "subject": "Onboard them",
        "due_in_hours": None,
        "due_in_days": 2,
        "assignee": "owner",
        "priority": "normal",
    }
    fetched = client.get(f"/v1/workflow-rules/{made['id']}", headers=admin.headers).json()
    assert "webhook_secret" not in fetched
    assert fetched["name"] == "Onboarding"
    assert fetched["enabled"] is True
    listed = client.get("/v1/workflow-rules", headers=admin.headers).json()
    assert [r["id"] for r in listed["items"]] == [made["id"]]
    assert listed["total"] == 1
    assert all("webhook_secret" not in r for r in listed["items"])
    rotated = client.post(f"/v1/workflow-rules/{made['id']}/rotate-secret", headers=admin.headers)
    assert rotated.status_code == 200
    assert rotated.json()["webhook_secret"] not in (made["webhook_secret"], None)
    audit = client.get(
        "/v1/audit",
        params={"record_type": "workflow_rule", "record_id": made["id"]},
        headers=admin.headers,
    ).json()["items"]
    assert [e["action"] for e in audit] == ["rotate_secret", "create"]
    assert "webhook_secret" not in str(audit)


def test_every_trigger_type_is_accepted(
    client: TestClient, admin: User, make_rule: MakeRule, pipeline: dict[str, Any]
) -> None:
    stage = pipeline["stages"][1]["id"]
    hook = {"type": "send_webhook", "url": "http://127.0.0.1:9/hook"}
    triggers = [
        {"type": "record_created", "record_type": "company"},
        {"type": "record_created", "record_type": "deal"},
        {"type": "record_created", "record_type": "task"},
        {"type": "record_created", "record_type": "activity", "kind": "call"},
        {"type": "record_created", "record_type": "ticket"},
        {"type": "field_changed", "record_type": "person", "field": "lifecycle_stage"},
        {"type": "field_changed", "record_type": "company", "field": "owner_id", "to": None},
        {"type": "field_changed", "record_type": "deal", "field": "amount", "from": 10},
        {"type": "field_changed", "record_type": "ticket", "field": "status", "to": "solved"},
        {"type": "stage_changed", "to": stage},
        {"type": "deal_lost"},
        {"type": "sla_warning", "target": "first_response"},
        {"type": "sla_breach"},
        {"type": "form_submitted", "form_id": "0b1d0c6e-4a7e-4d0a-9a55-3f8a9e1c2b11"},
    ]
    for trigger in triggers:
        made = make_rule(trigger, hook)
        assert made["trigger"]["type"] == trigger["type"]
    assert make_rule(triggers[6], hook)["trigger"] == {**triggers[6], "to": None}
    assert "from" not in make_rule(triggers[5], hook)["trigger"]


@pytest.mark.parametrize(
    ("body", "status", "field"),
    [
        (
            {"trigger": {"type": "record_created", "record_type": "person"}},
            400,
            "trigger.record_type",
        ),
        ({"trigger": {"type": "record_created"}}, 400, "trigger.record_type"),
        ({"trigger": {"type": "deal_won", "record_type": "person"}}, 400, "trigger.record_type"),
        ({"trigger": {"type": "field_changed", "record_type": "person"}}, 400, "trigger.field"),
        (
            {"trigger": {"type": "field_changed", "record_type": "person", "field": "email"}},
            400,
            "trigger.field",
        ),
        (
            {"trigger": {"type": "field_changed", "record_type": "deal", "field": "custom.nope"}},
            400,
            "trigger.field",
        ),
        (
            {"trigger": {**LEAD_STATUS, "form_id": "0b1d0c6e-4a7e-4d0a-9a55-3f8a9e1c2b11"}},
            400,
            "trigger.form_id",
        ),
        (
            {
                "trigger": {
                    "type": "field_changed",
                    "record_type": "deal",
                    "field": "owner_id",
                    "to": "someone",
                }
            },
            400,
            "trigger.to",
        ),
        (
            {"trigger": {"type": "stage_changed", "to": "7c0c8a52-5d43-4d8e-bf43-0a4b0b6a3f7e"}},
            400,
            "trigger.to",
        ),
        (
            {"trigger": {"type": "record_created", "record_type": "deal", "kind": "task"}},
            400,
            "trigger.kind",
        ),
        (
            {
                "trigger": {
                    "type": "field_changed",
                    "record_type": "person",
                    "field": "lifecycle_stage",
                    "to": "boss",
                }
            },
            400,
            "trigger.to",
        ),
        ({"trigger": {"type": "sla_breach", "target": "lunch"}}, 422, None),
        ({"trigger": {"type": "no_such_trigger"}}, 422, None),
        ({"conditions": [{"field": "nope", "op": "eq", "value": 1}]}, 400, "conditions[0].field"),
        (
            {"conditions": [{"field": "traits.x y", "op": "eq", "value": 1}]},
            400,
            "conditions[0].field",
        ),
        ({"conditions": [{"field": "custom.nope", "op": "empty"}]}, 400, "conditions[0].field"),
        (
            {"conditions": [{"field": "owner_id", "op": "in", "value": "x"}]},
            400,
            "conditions[0].value",
        ),
        (
            {"conditions": [{"field": "owner_id", "op": "empty", "value": "x"}]},
            400,
            "conditions[0].value",
        ),
        (
            {"conditions": [{"field": "owner_id", "op": "gt", "value": {"a": 1}}]},
            400,
            "conditions[0].value",
        ),
        ({"conditions": [{"field": "owner_id", "op": "like", "value": 1}]}, 422, None),
        ({"actions": []}, 422, None),
        (
            {"actions": [{"type": "set_field", "field": "email", "value": "x"}]},
            400,
            "actions[0].field",
        ),
        (
            {"actions": [{"type": "set_field", "field": "lifecycle_stage", "value": "boss"}]},
            400,
            "actions[0].value",
        ),
        (
            {"actions": [{"type": "set_field", "field": "tags", "value": "vip"}]},
            400,
            "actions[0].value",
        ),
        (
            {"actions": [{"type": "set_field", "field": "owner_id", "value": "not-an-id"}]},
            400,
            "actions[0].value",
        ),
        (
            {
                "actions": [
                    {"type": "assign_owner", "user_id": "0b1d0c6e-4a7e-4d0a-9a55-3f8a9e1c2b11"}
                ]
            },
            400,
            "actions[0].user_id",
        ),
        (
            {
                "actions": [
                    {"type": "create_task", "subject": "x", "due_in_days": 1, "due_in_hours": 2}
                ]
            },
            400,
            "actions[0]",
        ),
        ({"actions": [{"type": "create_task", "subject": ""}]}, 422, None),
        (
            {"actions": [{"type": "send_webhook", "url": "ftp://example.com/x"}]},
            400,
            "actions[0].url",
        ),
        ({"actions": [{"type": "send_webhook", "url": "https://"}]}, 400, "actions[0].url"),
        ({"actions": [{"type": "launch_rocket"}]}, 422, None),
        (
            {
                "trigger": {"type": "record_created", "record_type": "deal"},
                "actions": [{"type": "set_field", "field": "status", "value": "lost"}],
            },
            400,
            "actions[0].value",
        ),
        (
            {
                "trigger": {"type": "record_created", "record_type": "deal"},
                "actions": [
                    {
                        "type": "set_field",
                        "field": "stage_id",
                        "value": "7c0c8a52-5d43-4d8e-bf43-0a4b0b6a3f7e",
                    }
                ],
            },
            400,
            "actions[0].value",
        ),
        ({"name": "   "}, 400, "name"),
        ({"name": "<script>alert(1)</script>\x00"}, 422, None),
    ],
)
def test_bad_rules_are_refused_naming_the_field(
    client: TestClient, admin: User, body: dict[str, Any], status: int, field: str | None
) -> None:
    rule = {
        "name": "R",
        "trigger": {"type": "field_changed", "record_type": "person", "field": "lifecycle_stage"},
        "actions": [NOTE],
        **body,
    }
    answer = client.post("/v1/workflow-rules", json=rule, headers=admin.headers)
    assert_error(answer, status, field)
    assert client.get("/v1/workflow-rules", headers=admin.headers).json()["total"] == 0


def test_ticket_rules_take_conditions_and_record_actions(client: TestClient, admin: User) -> None:
    """Tickets are a kind of record rules work on: conditions on their fields, the fields a
    rule may set, and the values those fields take are checked when the rule is saved."""
    trigger = {"type": "sla_breach"}
    conditions = [{"field": "priority", "op": "eq", "value": "urgent"}]
    assert post(client, admin, trigger, NOTE, conditions=conditions).status_code == 201
    wrong = [{"field": "colour", "op": "eq", "value": "red"}]
    assert_error(post(client, admin, trigger, NOTE, conditions=wrong), 400, "conditions[0].field")
    unknown = {"type": "set_field", "field": "subject", "value": "x"}
    assert_error(post(client, admin, trigger, unknown), 400, "actions[0].field")
    escalate = {"type": "set_field", "field": "priority", "value": "urgent"}
    assert post(client, admin, trigger, escalate).status_code == 201


@pytest.mark.parametrize(
    ("trigger", "action"),
    [
        (LEAD_STATUS, {"type": "set_field", "field": "lead_status", "value": "open"}),
        (
            {**LEAD_STATUS, "to": "open"},
            {"type": "set_field", "field": "lead_status", "value": "open"},
        ),
        (
            {**LEAD_STATUS, "from": "new"},
            {"type": "set_field", "field": "lead_status", "value": "open"},
        ),
        (
            {"type": "record_created", "record_type": "task"},
            {"type": "create_task", "subject": "Again"},
        ),
        ({"type": "record_created", "record_type": "activity"}, NOTE),
        ({"type": "record_created", "record_type": "activity", "kind": "note"}, NOTE),
        (
            {"type": "field_changed", "record_type": "company", "field": "owner_id"},
            {"type": "assign_owner", "user_id": "ADMIN"},
        ),
        ({"type": "deal_won"}, {"type": "set_field", "field": "status", "value": "won"}),
        (
            {"type": "field_changed", "record_type": "task", "field": "done_at"},
            {"type": "set_field", "field": "done", "value": True},
        ),
    ],
)
def test_a_rule_that_would_trigger_itself_is_refused(
    client: TestClient, admin: User, trigger: dict[str, Any], action: dict[str, Any]
) -> None:
    if action.get("user_id") == "ADMIN":
        action = {**action, "user_id": admin.id}
    hook = {"type": "send_webhook", "url": "https://example.com/x"}
    body = assert_error(post(client, admin, trigger, hook, action), 400, "actions[1]")
    assert "trigger the rule itself again, in a loop" in body["message"]


def test_rules_that_cannot_fire_themselves_are_accepted(
    client: TestClient, admin: User, make_rule: MakeRule, pipeline: dict[str, Any]
) -> None:
    # Setting another value than the trigger waits for, another field, another kind.
    make_rule(
        {**LEAD_STATUS, "to": "new"}, {"type": "set_field", "field": "lead_status", "value": "open"}
    )
    make_rule(LEAD_STATUS, {"type": "set_field", "field": "lifecycle_stage", "value": "lead"})
    make_rule({"type": "record_created", "record_type": "task"}, NOTE)
    make_rule({"type": "record_created", "record_type": "activity", "kind": "call"}, NOTE)
    make_rule({"type": "deal_won"}, {"type": "create_task", "subject": "Onboard"})
    stages = pipeline["stages"]
    make_rule(
        {"type": "stage_changed", "to": stages[1]["id"]},
        {"type": "set_field", "field": "stage_id", "value": stages[0]["id"]},
    )


def test_editing_a_rule_checks_it_whole_again(
    client: TestClient, admin: User, make_rule: MakeRule
) -> None:
    made = make_rule(
        LEAD_STATUS, {"type": "set_field", "field": "lifecycle_stage", "value": "lead"}
    )
    url = f"/v1/workflow-rules/{made['id']}"
    trigger = {"type": "field_changed", "record_type": "person", "field": "lifecycle_stage"}
    assert_error(
        client.patch(url, json={"trigger": trigger}, headers=admin.headers), 400, "actions[0]"
    )
    company = {"type": "record_created", "record_type": "company"}
    # The actions set a person's field: on companies they are checked again and refused.
    assert_error(
        client.patch(url, json={"trigger": company}, headers=admin.headers), 400, "actions[0].field"
    )
    assert_error(client.patch(url, json={"enabled": None}, headers=admin.headers), 400, "enabled")
    assert client.get(url, headers=admin.headers).json()["trigger"]["field"] == "lead_status"
    changed = client.patch(
        url, json={"enabled": False, "name": "Quiet", "actions": [NOTE]}, headers=admin.headers
    )
    assert changed.status_code == 200, changed.text
    assert changed.json()["enabled"] is False
    assert changed.json()["actions"] == [NOTE]
    audit = client.get(
        "/v1/audit",
        params={"record_type": "workflow_rule", "record_id": made["id"]},
        headers=admin.headers,
    ).json()["items"]
    assert audit[0]["action"] == "update"
    assert audit[0]["before"]["enabled"] is True
    assert audit[0]["after"]["enabled"] is False
    assert client.delete(url, headers=admin.headers).status_code == 204
    assert_error(client.get(url, headers=admin.headers), 404, "rule_id")
    assert_error(client.patch(url, json={"name": "x"}, headers=admin.headers), 404, "rule_id")
    assert client.get("/v1/workflow-rules", headers=admin.headers).json()["total"] == 0


ROLES = ("admin", "manager", "sales", "support", "marketing", "analyst")


@pytest.mark.parametrize("role", ROLES)
def test_who_may_define_and_read_rules(
    client: TestClient,
    admin: User,
    make_user: MakeUser,
    make_person: MakePerson,
    make_rule: MakeRule,
    work: Work,
    role: str,
) -> None:
    """Admins define rules and retry runs; managers read them; nobody else sees them."""
    made = make_rule(LEAD_STATUS, {"type": "send_webhook", "url": "http://127.0.0.1:9/x"})
    person = make_person("ada@example.com")
    patch_contact(client, admin, person, lead_status="open")
    assert work(workflow_max_attempts=1, workflow_webhook_timeout_seconds=0.5) == {"failed": 1}
    run = client.get("/v1/workflow-runs", headers=admin.headers).json()["items"][0]
    user = admin if role == "admin" else make_user(role)
    h = user.headers
    url = f"/v1/workflow-rules/{made['id']}"
    reads = 200 if role in ("admin", "manager") else 403
    for read in ("/v1/workflow-rules", url, f"{url}/runs", "/v1/workflow-runs"):
        assert client.get(read, headers=h).status_code == reads, read
    # The run is on a person nobody owns: a manager sees it (the pool they assign from).
    assert client.get(f"/v1/workflow-runs/{run['id']}", headers=h).status_code == reads
    writes = role == "admin"
    body = {"name": "R", "trigger": LEAD_STATUS, "actions": [NOTE]}
    assert client.post("/v1/workflow-rules", json=body, headers=h).status_code == (
        201 if writes else 403
    )
    assert client.patch(url, json={"name": "x"}, headers=h).status_code == (200 if writes else 403)
    assert client.post(f"{url}/rotate-secret", headers=h).status_code == (200 if writes else 403)
    assert client.post(f"/v1/workflow-runs/{run['id']}/retry", headers=h).status_code == (
        200 if writes else 403
    )
    assert client.delete(url, headers=h).status_code == (204 if writes else 403)
    assert client.get("/v1/workflow-rules").status_code == 401
