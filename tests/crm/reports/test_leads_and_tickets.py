"""The leads report (sources and conversion) and the ticket report (volume, response and
resolution times, SLA compliance), on leads from real form posts and tickets with
histories written in the past."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import timedelta
from typing import Any

from fastapi.testclient import TestClient

from patron.core.clock import utcnow
from patron.core.runtime import Runtime
from tests.conftest import MakePerson, MakeUser, User, assert_error
from tests.crm.forms.conftest import MakeForm, good_answers, make_form, process  # noqa: F401
from tests.crm.tickets.conftest import History, actor_of, policy  # noqa: F401

Process = Callable[[], int]


def report(client: TestClient, user: User, name: str, **params: Any) -> list[dict[str, Any]]:
    answer = client.get(f"/v1/reports/{name}", params=params, headers=user.headers)
    assert answer.status_code == 200, answer.text
    rows: list[dict[str, Any]] = answer.json()["rows"]
    return rows


def test_leads_by_source_and_how_far_they_got(
    client: TestClient,
    admin: User,
    make_user: MakeUser,
    make_form: MakeForm,  # noqa: F811
    make_person: MakePerson,
    process: Process,  # noqa: F811
) -> None:
    make_form()
    for n, source in enumerate(["newsletter", "newsletter", "newsletter", "ads"]):
        answer = client.post(
            "/f/demo", json=good_answers(f"lead{n}@example.com", utm_source=source)
        )
        assert answer.status_code == 201, answer.text
    process()
    rep = make_user("sales")
    people = {
        n: client.get(
            "/v1/persons", params={"email": f"lead{n}@example.com"}, headers=admin.headers
        ).json()["id"]
        for n in range(4)
    }
    stages = {0: "salesqualifiedlead", 1: "customer", 3: "marketingqualifiedlead"}
    for n, stage in stages.items():
        patched = client.patch(
            f"/v1/contacts/{people[n]}", json={"lifecycle_stage": stage}, headers=admin.headers
        )
        assert patched.status_code == 200, patched.text
    client.patch(f"/v1/contacts/{people[0]}", json={"owner_id": rep.id}, headers=admin.headers)
    pipeline = client.post(
        "/v1/pipelines",
        json={"name": "P", "stages": [{"name": "S", "probability": 50}]},
        headers=admin.headers,
    ).json()
    deal = client.post(
        "/v1/deals",
        json={"name": "D", "pipeline_id": pipeline["id"], "person_id": people[0]},
        headers=admin.headers,
    ).json()
    won = client.patch(f"/v1/deals/{deal['id']}", json={"status": "won"}, headers=admin.headers)
    assert won.status_code == 200, won.text
    # A person who came in through the tracking API, made a lead by hand: no first touch,
    # so the source that made the person names it. A subscriber is no lead.
    tracked = make_person("walkin@example.com")
    client.patch(f"/v1/contacts/{tracked}", json={"lifecycle_stage": "lead"}, headers=admin.headers)
    subscriber = make_person("reader@example.com")
    client.patch(
        f"/v1/contacts/{subscriber}", json={"lifecycle_stage": "subscriber"}, headers=admin.headers
    )

    rows = report(client, admin, "leads")
    assert rows == [
        {
            "source": "newsletter",
            "leads": 3,
            "marketing_qualified": 2,  # the sales-qualified lead and the customer
            "sales_qualified": 2,
            "opportunities": 1,
            "customers": 2,  # the customer, and the lead with a won deal
            "with_won_deal": 1,
            "conversion": 0.6667,
        },
        {
            "source": "Backend",
            "leads": 1,
            "marketing_qualified": 0,
            "sales_qualified": 0,
            "opportunities": 0,
            "customers": 0,
            "with_won_deal": 0,
            "conversion": 0.0,
        },
        {
            "source": "ads",
            "leads": 1,
            "marketing_qualified": 1,
            "sales_qualified": 0,
            "opportunities": 0,
            "customers": 0,
            "with_won_deal": 0,
            "conversion": 0.0,
        },
    ]
    # The sales rep sees the one lead they own; a period before everything finds nothing.
    assert [(r["source"], r["leads"]) for r in report(client, rep, "leads")] == [("newsletter", 1)]
    before = (utcnow() - timedelta(days=30)).date().isoformat()
    assert report(client, admin, "leads", until=before) == []
    assert [r["source"] for r in report(client, admin, "leads", group_by="campaign")] == [
        "(unknown)"
    ]
    csv = client.get("/v1/reports/leads.csv", headers=admin.headers)
    assert csv.text.splitlines()[1].startswith("newsletter,3,2,2,1,2,1,0.6667")
    assert_error(
        client.get("/v1/reports/leads?group_by=colour", headers=admin.headers), 400, "group_by"
    )
    assert_error(
        client.get("/v1/reports/leads", params={"currency": "EUR"}, headers=admin.headers),
        400,
        "currency",
    )


def test_ticket_volume_times_and_sla_compliance(
    runtime: Runtime,
    client: TestClient,
    admin: User,
    make_user: MakeUser,
    policy: dict[str, Any],  # noqa: F811
) -> None:
    """The policy gives normal tickets 60 business minutes to a first response (around the
    clock, so business and calendar minutes agree) and 240 to a resolution."""
    agent = make_user("support")
    history = History(runtime, actor_of(admin, "admin"))
    now = utcnow()

    def ago(minutes: float) -> Any:
        return now - timedelta(minutes=minutes)

    # Answered in 30 minutes, solved in 120: both met.
    quick = history.create(ago(300), assignee_id=uuid.UUID(agent.id))
    history.reply(quick, ago(270))
    history.change(quick, ago(180), status="solved")
    # Answered in 90 minutes (breached), solved in 200 (met).
    slow = history.create(ago(400), assignee_id=uuid.UUID(agent.id))
    history.reply(slow, ago(310))
    history.change(slow, ago(200), status="solved")
    # Never answered: its first response breached, its resolution still running (open).
    history.create(ago(100), priority="high")

    rows = report(client, admin, "tickets")
    assert len(rows) == 1
    row = rows[0]
    assert (row["key"], row["label"]) == (None, None)
    assert (row["created"], row["open"], row["solved"], row["responded"]) == (3, 1, 2, 2)
    assert row["first_response_avg_minutes"] == 60.0  # (30 + 90) / 2
    assert row["first_response_median_minutes"] == 60.0
    assert row["first_response_calendar_avg_minutes"] == 60.0
    assert row["resolution_avg_minutes"] == 160.0  # (120 + 200) / 2
    assert (row["first_response_met"], row["first_response_breached"]) == (1, 2)
    assert row["first_response_compliance"] == 0.3333
    assert (row["resolution_met"], row["resolution_breached"]) == (2, 0)
    assert row["resolution_compliance"] == 1.0

    by_priority = report(client, admin, "tickets", group_by="priority")
    assert [(r["key"], r["created"]) for r in by_priority] == [("high", 1), ("normal", 2)]
    by_assignee = report(client, admin, "tickets", group_by="assignee")
    assert sorted((r["label"], r["created"]) for r in by_assignee if r["key"]) == [(agent.email, 2)]
    mine = report(client, admin, "tickets", owner_id=agent.id)
    assert mine[0]["created"] == 2
    months = report(client, admin, "tickets", group_by="month")
    assert sum(r["created"] for r in months) == 3
    assert all(len(r["key"]) == 7 for r in months)
    assert_error(
        client.get(
            "/v1/reports/tickets", params={"pipeline_id": policy["id"]}, headers=admin.headers
        ),
        400,
        "pipeline_id",
    )
    # A sales rep sees the tickets of the persons they see: none of these.
    assert report(client, make_user("sales"), "tickets") == []
