"""Pipelines, deals, stage history, rotting and the weighted forecast."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import update

from patron.core.clock import utcnow
from patron.core.runtime import Runtime
from patron.crm.models import Deal
from tests.conftest import MakePerson, MakeUser, Tracker, User, assert_error

STAGES = [
    {"name": "Qualified", "probability": 10},
    {"name": "Proposal", "probability": 50},
    {"name": "Negotiation", "probability": 80},
]


@pytest.fixture
def pipeline(client: TestClient, admin: User) -> dict[str, Any]:
    answer = client.post(
        "/v1/pipelines",
        json={"name": "Sales", "rotting_days": 14, "stages": STAGES},
        headers=admin.headers,
    )
    assert answer.status_code == 201, answer.text
    made: dict[str, Any] = answer.json()
    return made


def new_deal(client: TestClient, user: User, pipeline: dict[str, Any], **body: Any) -> Any:
    return client.post(
        "/v1/deals",
        json={"name": "Deal", "pipeline_id": pipeline["id"], **body},
        headers=user.headers,
    )


def test_pipelines_are_admin_shaped_and_checked(
    client: TestClient, admin: User, make_user: MakeUser, pipeline: dict[str, Any]
) -> None:
    assert [s["name"] for s in pipeline["stages"]] == ["Qualified", "Proposal", "Negotiation"]
    rep = make_user("sales")
    body = {"name": "Other", "stages": STAGES}
    assert_error(client.post("/v1/pipelines", json=body, headers=rep.headers), 403)
    for payload, status, field in [
        ({"name": "Sales", "stages": STAGES}, 409, "name"),
        ({"name": "X", "stages": []}, 400, "stages"),
        ({"name": "X", "stages": [{"name": "A", "probability": 120}]}, 400, "stages.probability"),
        (
            {"name": "X", "stages": [{"name": "A", "probability": "10"}]},
            422,
            "stages.0.probability",
        ),
        (
            {
                "name": "X",
                "stages": [{"name": "A", "probability": 1}, {"name": "a", "probability": 2}],
            },
            400,
            "stages.name",
        ),
        ({"name": "X", "rotting_days": 0, "stages": STAGES}, 400, "rotting_days"),
    ]:
        assert_error(
            client.post("/v1/pipelines", json=payload, headers=admin.headers), status, field
        )
    stages = pipeline["stages"]
    reordered = [
        {"id": stages[1]["id"], "name": "Proposal sent", "probability": 40},
        {"id": stages[0]["id"], "name": "Qualified", "probability": 10},
        {"name": "Contract", "probability": 90},
    ]
    changed = client.patch(
        f"/v1/pipelines/{pipeline['id']}",
        json={"stages": reordered, "rotting_days": None},
        headers=admin.headers,
    )
    assert changed.status_code == 200, changed.text
    after = changed.json()
    assert [s["name"] for s in after["stages"]] == ["Proposal sent", "Qualified", "Contract"]
    assert after["rotting_days"] is None


def test_deal_lifecycle_with_history_events_and_audit(
    client: TestClient,
    make_user: MakeUser,
    make_person: MakePerson,
    pipeline: dict[str, Any],
    tracker: Tracker,
    admin: User,
) -> None:
    rep = make_user("sales")
    person = make_person("buyer@example.com")
    client.patch(f"/v1/contacts/{person}", json={"owner_id": rep.id}, headers=admin.headers)
    made = new_deal(
        client,
        rep,
        pipeline,
        amount=1000,
        currency="eur",
        expected_close_date="2027-03-15",
        person_id=person,
    )
    assert made.status_code == 201, made.text
    deal = made.json()
    assert (deal["stage"], deal["probability"], deal["status"]) == ("Qualified", 10, "open")
    assert float(deal["weighted_amount"]) == 100
    assert deal["currency"] == "EUR"
    assert deal["owner_id"] == rep.id
    url = f"/v1/deals/{deal['id']}"
    moved = client.patch(url, json={"stage_id": pipeline["stages"][2]["id"]}, headers=rep.headers)
    assert moved.json()["stage"] == "Negotiation"
    history = client.get(f"{url}/stages", headers=rep.headers).json()
    assert [h["stage"] for h in history] == ["Qualified", "Negotiation"]
    assert history[0]["left_at"] is not None
    assert history[1]["left_at"] is None
    assert history[0]["seconds"] >= 0
    assert [(h["outcome"], h["ended_at"] is None) for h in history] == [
        ("moved_on", False),
        (None, True),
    ]
    assert_error(
        client.patch(url, json={"status": "lost"}, headers=rep.headers), 400, "lost_reason"
    )
    lost = client.patch(url, json={"status": "lost", "lost_reason": "price"}, headers=rep.headers)
    assert (lost.json()["status"], lost.json()["lost_reason"]) == ("lost", "price")
    assert lost.json()["closed_at"] is not None
    reopened = client.patch(url, json={"status": "open"}, headers=rep.headers).json()
    assert (reopened["status"], reopened["lost_reason"], reopened["closed_at"]) == (
        "open",
        None,
        None,
    )
    won = client.patch(url, json={"status": "won"}, headers=rep.headers).json()
    assert won["status"] == "won"
    # The stay the deal was won in ends when it closed; its time there stops counting.
    last = client.get(f"{url}/stages", headers=rep.headers).json()[-1]
    assert (last["stage"], last["outcome"], last["left_at"]) == ("Negotiation", "won", None)
    assert last["ended_at"] == won["closed_at"]
    assert client.get(f"{url}/stages", headers=rep.headers).json()[-1]["seconds"] == last["seconds"]
    tracker.process()
    timeline = client.get(f"/v1/persons/{person}/timeline?type=track", headers=admin.headers)
    names = [e["event"] for e in timeline.json()["items"]]
    assert names[:4] == ["Deal Won", "Deal Lost", "Deal Stage Changed", "Deal Created"]
    stage_event = timeline.json()["items"][2]["payload"]["properties"]
    assert (stage_event["previous_stage"], stage_event["stage"]) == ("Qualified", "Negotiation")
    audit = client.get(
        f"/v1/audit?record_type=deal&record_id={deal['id']}", headers=admin.headers
    ).json()
    assert audit["total"] == 5


def test_bad_deals_are_refused_naming_the_field(
    client: TestClient,
    admin: User,
    make_user: MakeUser,
    make_person: MakePerson,
    pipeline: dict[str, Any],
) -> None:
    other = client.post(
        "/v1/pipelines",
        json={"name": "Renewals", "stages": [{"name": "Due", "probability": 70}]},
        headers=admin.headers,
    ).json()
    rep = make_user("sales")
    hidden = make_person("hidden@example.com")
    cases = [
        ({"amount": "1000", "currency": "EUR"}, 400, "amount"),
        ({"amount": True, "currency": "EUR"}, 400, "amount"),
        ({"amount": -5, "currency": "EUR"}, 400, "amount"),
        ({"amount": 5}, 400, "currency"),
        ({"amount": 5, "currency": "XYZ"}, 400, "currency"),
        ({"amount": 5.12345, "currency": "EUR"}, 400, "amount"),
        ({"expected_close_date": "9999-01-01"}, 400, "expected_close_date"),
        ({"expected_close_date": "soon"}, 422, "expected_close_date"),
        ({"stage_id": other["stages"][0]["id"]}, 400, "stage_id"),
        ({"stage_id": "7b0e1f64-8c36-4c4e-9d43-111111111111"}, 400, "stage_id"),
        ({"person_id": hidden}, 400, "person_id"),
        ({"company_id": "7b0e1f64-8c36-4c4e-9d43-111111111111"}, 400, "company_id"),
        ({"pipeline_id": "7b0e1f64-8c36-4c4e-9d43-111111111111"}, 400, "pipeline_id"),
        ({"custom": {"x": 1}}, 400, "custom.x"),
    ]
    for body, status, field in cases:
        assert_error(new_deal(client, rep, pipeline, **body), status, field)
    assert client.get("/v1/deals", headers=admin.headers).json()["total"] == 0
    deal = new_deal(client, rep, pipeline).json()
    wrong_stage = client.patch(
        f"/v1/deals/{deal['id']}", json={"stage_id": other["stages"][0]["id"]}, headers=rep.headers
    )
    assert_error(wrong_stage, 400, "stage_id")
    assert_error(
        client.patch(f"/v1/deals/{deal['id']}", json={"status": "maybe"}, headers=rep.headers),
        400,
        "status",
    )
    moved = client.patch(
        f"/v1/deals/{deal['id']}", json={"pipeline_id": other["id"]}, headers=rep.headers
    ).json()
    assert (moved["pipeline_id"], moved["stage"]) == (other["id"], "Due")


def test_deal_visibility_by_role(
    client: TestClient, admin: User, make_user: MakeUser, pipeline: dict[str, Any]
) -> None:
    rep, other = make_user("sales"), make_user("sales")
    deal = new_deal(client, rep, pipeline).json()
    url = f"/v1/deals/{deal['id']}"
    assert client.get(url, headers=other.headers).status_code == 404
    assert client.get("/v1/deals", headers=other.headers).json()["total"] == 0
    marketing = make_user("marketing")
    assert client.get(url, headers=marketing.headers).status_code == 200
    assert_error(client.patch(url, json={"name": "x"}, headers=marketing.headers), 403)
    assert_error(new_deal(client, marketing, pipeline), 403)
    analyst = make_user("analyst")
    assert client.get("/v1/deals", headers=analyst.headers).json()["total"] == 1
    share = client.post(f"{url}/shares", json={"user_id": other.id}, headers=rep.headers)
    assert share.status_code == 201
    assert client.patch(url, json={"name": "Shared"}, headers=other.headers).status_code == 200


def test_rotting_forecast_and_lists(
    client: TestClient,
    admin: User,
    make_user: MakeUser,
    pipeline: dict[str, Any],
    runtime: Runtime,
) -> None:
    rep = make_user("sales")
    stages = pipeline["stages"]
    a = new_deal(
        client,
        rep,
        pipeline,
        name="Alpha",
        amount=1000,
        currency="EUR",
        expected_close_date="2027-01-10",
    ).json()
    new_deal(
        client,
        rep,
        pipeline,
        name="Beta",
        amount=2000,
        currency="EUR",
        expected_close_date="2027-01-20",
        stage_id=stages[1]["id"],
    )
    new_deal(
        client,
        admin,
        pipeline,
        name="Gamma",
        amount=500,
        currency="USD",
        expected_close_date="2027-02-01",
        stage_id=stages[2]["id"],
    )
    won = new_deal(client, admin, pipeline, name="Done", amount=9, currency="EUR").json()
    client.patch(f"/v1/deals/{won['id']}", json={"status": "won"}, headers=admin.headers)
    with runtime.sessions() as session:
        session.execute(
            update(Deal)
            .where(Deal.name == "Alpha")
            .values(last_activity_at=utcnow() - timedelta(days=20))
        )
        session.commit()
    h = admin.headers
    assert [d["name"] for d in client.get("/v1/deals?rotting=true", headers=h).json()["items"]] == [
        "Alpha"
    ]
    assert client.get(f"/v1/deals/{a['id']}", headers=h).json()["rotting"] is True
    month = client.get("/v1/deals/forecast?group_by=month", headers=h).json()
    by_key = {(r["key"], r["currency"]): r for r in month}
    assert float(by_key[("2027-01", "EUR")]["amount"]) == 3000
    assert float(by_key[("2027-01", "EUR")]["weighted"]) == 1100  # 1000*10% + 2000*50%
    assert float(by_key[("2027-02", "USD")]["weighted"]) == 400
    owners = client.get("/v1/deals/forecast?group_by=owner", headers=h).json()
    assert {(r["key"], r["deals"]) for r in owners} == {(rep.id, 2), (admin.id, 1)}
    mine = client.get("/v1/deals/forecast?group_by=pipeline", headers=rep.headers).json()
    assert [(r["key"], r["deals"]) for r in mine] == [(pipeline["id"], 2)]
    assert_error(client.get("/v1/deals/forecast?group_by=colour", headers=h), 400, "group_by")
    names = client.get("/v1/deals?sort=-amount&filter=currency:eq:EUR", headers=h).json()
    assert [d["name"] for d in names["items"]] == ["Beta", "Alpha", "Done"]
    closing = client.get("/v1/deals?filter=expected_close_date:lt:2027-01-15", headers=h).json()
    assert [d["name"] for d in closing["items"]] == ["Alpha"]
    assert [d["name"] for d in client.get("/v1/deals?q=gam", headers=h).json()["items"]] == [
        "Gamma"
    ]
