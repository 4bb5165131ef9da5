"""SLA policies: admins define them, bad definitions are refused naming the field, the
first matching policy in the admins' order applies to a new ticket."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient

from patron.core.clock import utcnow
from tests.conftest import MakeUser, User, assert_error
from tests.crm.tickets.conftest import History, MakeTicket, policy_body


def post(client: TestClient, admin: User, **overrides: Any) -> Any:
    return client.post("/v1/sla-policies", json=policy_body(**overrides), headers=admin.headers)


def test_a_policy_is_stored_normalised_and_listed_in_order(client: TestClient, admin: User) -> None:
    first = post(
        client,
        admin,
        name="Business hours",
        priorities=["urgent", "low"],
        targets={"low": {"resolution": 2880}, "urgent": {"first_response": 30}},
        timezone="Europe/Paris",
        working_days=["fri", "mon", "tue"],
        working_hours=[{"start": "13:00", "end": "17:00"}, {"start": "09:00", "end": "12:00"}],
        day_hours={"fri": [{"start": "09:00", "end": "15:00"}]},
        holidays=["2026-12-25", "2026-01-01", "2026-12-25"],
    )
    assert first.status_code == 201, first.text
    body = first.json()
    assert body["priorities"] == ["low", "urgent"]
    assert body["working_days"] == ["mon", "tue", "fri"]
    assert body["working_hours"] == [
        {"start": "09:00", "end": "12:00"},
        {"start": "13:00", "end": "17:00"},
    ]
    assert body["holidays"] == ["2026-01-01", "2026-12-25"]
    assert body["targets"] == {
        "low": {"first_response": None, "resolution": 2880},
        "urgent": {"first_response": 30, "resolution": None},
    }
    assert body["warning_fraction"] == 0.5
    second = post(client, admin, name="Everyone else").json()
    assert second["position"] > body["position"]
    listed = client.get("/v1/sla-policies", headers=admin.headers).json()
    assert [p["name"] for p in listed] == ["Business hours", "Everyone else"]
    moved = client.patch(
        f"/v1/sla-policies/{second['id']}", json={"position": 0}, headers=admin.headers
    )
    assert moved.status_code == 200, moved.text
    listed = client.get("/v1/sla-policies", headers=admin.headers).json()
    assert [p["name"] for p in listed] == ["Everyone else", "Business hours"]
    audit = client.get(
        "/v1/audit",
        params={"record_type": "sla_policy", "record_id": second["id"]},
        headers=admin.headers,
    ).json()["items"]
    assert [e["action"] for e in audit] == ["update", "create"]


BAD = [
    ({"working_days": []}, "working_days"),
    ({"working_days": ["monday"]}, "working_days"),
    ({"working_days": ["mon", "mon"]}, "working_days"),
    ({"working_hours": []}, "working_hours"),
    ({"working_hours": [{"start": "17:00", "end": "09:00"}]}, "working_hours"),
    ({"working_hours": [{"start": "09:00", "end": "09:00"}]}, "working_hours"),
    ({"working_hours": [{"start": "25:00", "end": "26:00"}]}, "working_hours"),
    ({"working_hours": [{"start": "9am", "end": "5pm"}]}, "working_hours"),
    (
        {"working_hours": [{"start": "09:00", "end": "13:00"}, {"start": "12:00", "end": "17:00"}]},
        "working_hours",
    ),
    ({"day_hours": {"sat": []}}, "day_hours.sat"),
    (
        {"working_days": ["mon"], "day_hours": {"sat": [{"start": "09:00", "end": "10:00"}]}},
        "day_hours",
    ),
    ({"timezone": "Mars/Olympus"}, "timezone"),
    ({"timezone": ""}, "timezone"),
    ({"holidays": ["2026-13-01"]}, "holidays"),
    ({"holidays": ["9999-01-01"]}, "holidays"),
    ({"warning_fraction": 1.5}, "warning_fraction"),
    ({"warning_fraction": 0}, "warning_fraction"),
    ({"priorities": ["asap"]}, "priorities"),
    ({"channels": ["fax"]}, "channels"),
    ({"targets": {}}, "targets.low"),
    ({"targets": {"asap": {"first_response": 10}}}, "targets"),
    (
        {"targets": {"high": {"first_response": 0}}, "priorities": ["high"]},
        "targets.high.first_response",
    ),
    ({"targets": {"high": {"resolution": -5}}, "priorities": ["high"]}, "targets.high.resolution"),
    ({"targets": {"high": {}}, "priorities": ["high"]}, "targets.high"),
    ({"priorities": ["high"], "targets": {"low": {"first_response": 5}}}, "targets.high"),
    (
        {
            "working_days": ["mon"],
            "working_hours": [{"start": "09:00", "end": "10:00"}],
            "priorities": ["high"],
            "targets": {"high": {"resolution": 60 * 53}},
        },
        "targets.high.resolution",
    ),
]


@pytest.mark.parametrize(("overrides", "field"), BAD, ids=[f for _, f in BAD])
def test_bad_policies_are_refused_naming_the_field(
    client: TestClient, admin: User, overrides: dict[str, Any], field: str
) -> None:
    assert_error(post(client, admin, **overrides), 400, field)
    assert client.get("/v1/sla-policies", headers=admin.headers).json() == []


def test_malformed_requests_are_422_and_duplicates_409(client: TestClient, admin: User) -> None:
    body = policy_body()
    del body["working_days"]
    assert_error(client.post("/v1/sla-policies", json=body, headers=admin.headers), 422)
    assert_error(post(client, admin, targets={"low": {"first_response": "10"}}), 422)
    assert_error(post(client, admin, working_hours=[{"start": "09:00"}]), 422)
    assert_error(post(client, admin, holidays=[20260101]), 422)
    assert post(client, admin, name="Gold").status_code == 201
    assert_error(post(client, admin, name="Gold"), 409, "name")


def test_only_admins_write_policies_and_everyone_reads_them(
    client: TestClient, admin: User, make_user: MakeUser, policy: dict[str, Any]
) -> None:
    for role in ("manager", "sales", "support", "marketing", "analyst"):
        user = make_user(role)
        assert_error(client.post("/v1/sla-policies", json=policy_body(), headers=user.headers), 403)
        url = f"/v1/sla-policies/{policy['id']}"
        assert_error(client.patch(url, json={"name": "x"}, headers=user.headers), 403)
        assert_error(client.delete(url, headers=user.headers), 403)
        assert client.get(url, headers=user.headers).status_code == 200
        assert client.get("/v1/sla-policies", headers=user.headers).status_code == 200


def test_the_first_matching_policy_in_order_applies(
    client: TestClient, admin: User, make_ticket: MakeTicket
) -> None:
    chat = post(client, admin, name="Chat", channels=["chat"], position=1).json()
    urgent = post(
        client,
        admin,
        name="Urgent",
        priorities=["urgent"],
        targets={"urgent": {"first_response": 15, "resolution": 120}},
        position=2,
    ).json()
    rest = post(client, admin, name="Rest", position=3).json()
    assert make_ticket(channel="chat", priority="urgent")["sla"]["policy_id"] == chat["id"]
    assert make_ticket(channel="email", priority="urgent")["sla"]["policy_id"] == urgent["id"]
    assert make_ticket(channel="email", priority="low")["sla"]["policy_id"] == rest["id"]
    ticket = make_ticket(channel="email", priority="urgent")
    assert ticket["sla"]["first_response"]["target_minutes"] == 15
    assert ticket["sla"]["resolution"]["target_minutes"] == 120


def test_a_ticket_without_a_matching_policy_has_no_sla(
    client: TestClient, admin: User, make_ticket: MakeTicket
) -> None:
    post(client, admin, channels=["phone"])
    sla = make_ticket(channel="web")["sla"]
    assert sla == {
        "policy_id": None,
        "policy_name": None,
        "state": None,
        "paused": False,
        "due_at": None,
        "first_response": None,
        "resolution": None,
    }


def test_tickets_keep_their_terms_and_a_deleted_policy(
    client: TestClient, admin: User, policy: dict[str, Any], make_ticket: MakeTicket
) -> None:
    ticket = make_ticket()
    url = f"/v1/sla-policies/{policy['id']}"
    changed = client.patch(
        url,
        json={"targets": {p: {"first_response": 5, "resolution": 10} for p in policy["targets"]}},
        headers=admin.headers,
    )
    assert changed.status_code == 200, changed.text
    assert make_ticket()["sla"]["first_response"]["target_minutes"] == 5
    assert client.delete(url, headers=admin.headers).status_code == 204
    assert_error(client.get(url, headers=admin.headers), 404, "policy_id")
    assert_error(client.delete(url, headers=admin.headers), 404, "policy_id")
    assert client.get("/v1/sla-policies", headers=admin.headers).json() == []
    kept = client.get(f"/v1/tickets/{ticket['id']}", headers=admin.headers).json()["sla"]
    assert kept["policy_id"] == policy["id"]
    assert kept["first_response"]["target_minutes"] == 60
    assert make_ticket()["sla"]["policy_id"] is None
    # A new policy may take the deleted one's name.
    assert post(client, admin, name=policy["name"]).status_code == 201


def test_new_hours_count_from_the_change_on(
    client: TestClient, admin: User, policy: dict[str, Any], history: History
) -> None:
    now = utcnow()
    ticket = history.create(now - timedelta(minutes=100))  # 100 minutes on the 24/7 clock
    # From now on, only one hour a week counts: Monday 03:00-04:00.
    client.patch(
        f"/v1/sla-policies/{policy['id']}",
        json={"working_days": ["mon"], "working_hours": [{"start": "03:00", "end": "04:00"}]},
        headers=admin.headers,
    )
    sla = client.get(f"/v1/tickets/{ticket}", headers=admin.headers).json()["sla"]
    resolution = sla["resolution"]
    assert 99.9 < resolution["elapsed_minutes"] <= 100.1
    # 140 minutes left, at one hour a week: due on a Monday, at 03:20, two weeks or so on.
    due = resolution["due_at"]
    assert "03:19:50" <= due[11:19] <= "03:20:00"  # less the seconds the test took
    assert due > (now + timedelta(days=7)).isoformat()
