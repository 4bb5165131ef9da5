"""Tickets through the API: fields, status moves, comments, events, audit, custom fields,
lists, exports and bad input."""

from __future__ import annotations

import csv
import io
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select
from sqlalchemy.orm import Session

from patron.collect.models import Event, Source
from tests.conftest import MakePerson, MakeUser, Tracker, User, assert_error
from tests.crm.tickets.conftest import MakeTicket


def crm_events(db: Session, name_prefix: str = "Ticket") -> list[Event]:
    db.rollback()
    return [
        e
        for e in db.scalars(
            select(Event)
            .join(Source, Source.id == Event.source_id)
            .where(Source.kind == "crm")
            .order_by(Event.seq)
        )
        if (e.event or "").startswith(name_prefix)
    ]


def patch(client: TestClient, user: User, ticket: dict[str, Any], **body: Any) -> Any:
    return client.patch(f"/v1/tickets/{ticket['id']}", json=body, headers=user.headers)


def comment(client: TestClient, user: User, ticket: dict[str, Any], **body: Any) -> Any:
    body = {"body": "Have you tried turning it off and on?", **body}
    return client.post(f"/v1/tickets/{ticket['id']}/comments", json=body, headers=user.headers)


def test_a_ticket_is_created_with_defaults_and_fetched(
    client: TestClient,
    admin: User,
    agent: User,
    make_person: MakePerson,
    policy: dict[str, Any],
    make_ticket: MakeTicket,
) -> None:
    person = make_person("ann@example.com")
    assert_error(client.get(f"/v1/contacts/{person}", headers=agent.headers), 404)
    # Support sees the persons of their tickets only: someone else opens this one.
    ticket = make_ticket(
        user=admin,
        person_id=person,
        description="Since this morning.",
        tags=["login", "login", " vip "],
    )
    assert ticket["status"] == "new"
    assert ticket["priority"] == "normal"
    assert ticket["channel"] == "api"
    assert ticket["assignee_id"] is None
    assert ticket["person_id"] == person
    assert ticket["tags"] == ["login", "vip"]
    assert ticket["created_by"] == admin.email
    assert ticket["first_responded_at"] is None
    sla = ticket["sla"]
    assert sla["policy_id"] == policy["id"]
    assert sla["state"] == "ok"
    assert sla["paused"] is False
    first = sla["first_response"]
    assert first["target_minutes"] == 60
    assert first["state"] == "ok"
    assert first["remaining_minutes"] > 59
    assert sla["due_at"] == first["due_at"]
    fetched = client.get(f"/v1/tickets/{ticket['id']}", headers=agent.headers)
    assert fetched.status_code == 200
    assert fetched.json()["description"] == "Since this morning."
    # The queue's requester is now the agent's to see, and so are they on a new ticket.
    assert client.get(f"/v1/contacts/{person}", headers=agent.headers).status_code == 200
    assert make_ticket(person_id=person)["person_id"] == person


def test_status_moves_follow_the_rules(
    client: TestClient, agent: User, policy: dict[str, Any], make_ticket: MakeTicket
) -> None:
    ticket = make_ticket()
    assert_error(patch(client, agent, ticket, status="closed"), 409, "status")
    assert_error(patch(client, agent, ticket, status="reopened"), 400, "status")
    assert_error(patch(client, agent, ticket, status=None), 400, "status")
    pending = patch(client, agent, ticket, status="pending").json()
    assert pending["sla"]["paused"] is True
    assert pending["sla"]["resolution"]["due_at"] is None
    assert_error(patch(client, agent, ticket, status="new"), 409, "status")
    assert patch(client, agent, ticket, status="open").json()["sla"]["paused"] is False
    solved = patch(client, agent, ticket, status="solved").json()
    assert solved["solved_at"] is not None
    assert solved["sla"]["resolution"]["state"] == "met"
    assert solved["resolution_minutes"] is not None
    reopened = patch(client, agent, ticket, status="open").json()
    assert reopened["solved_at"] is None
    assert reopened["resolution_minutes"] is None
    assert reopened["sla"]["resolution"]["state"] == "ok"
    assert_error(patch(client, agent, ticket, status="closed"), 409, "status")
    patch(client, agent, ticket, status="solved")
    closed = patch(client, agent, ticket, status="closed").json()
    assert closed["closed_at"] is not None
    # Closed is final: no change, no reply.
    assert_error(patch(client, agent, ticket, status="open"), 409, "ticket_id")
    assert_error(patch(client, agent, ticket, subject="x"), 409, "ticket_id")
    assert_error(comment(client, agent, ticket), 409, "ticket_id")
    # Tickets start new, open or pending.
    answer = client.post(
        "/v1/tickets", json={"subject": "x", "status": "solved"}, headers=agent.headers
    )
    assert_error(answer, 400, "status")


def test_the_first_public_reply_is_the_first_response(
    client: TestClient, agent: User, policy: dict[str, Any], make_ticket: MakeTicket
) -> None:
    ticket = make_ticket()
    note = comment(client, agent, ticket, body="Looks like the SSO bug again", public=False)
    assert note.status_code == 201, note.text
    after_note = client.get(f"/v1/tickets/{ticket['id']}", headers=agent.headers).json()
    assert after_note["first_responded_at"] is None
    assert after_note["status"] == "new"
    reply = comment(client, agent, ticket)
    assert reply.status_code == 201
    assert reply.json()["public"] is True
    assert reply.json()["author_id"] == agent.id
    answered = client.get(f"/v1/tickets/{ticket['id']}", headers=agent.headers).json()
    assert answered["status"] == "open"
    assert answered["first_responded_at"] == reply.json()["created_at"]
    assert answered["first_response_minutes"] is not None
    assert answered["sla"]["first_response"]["state"] == "met"
    assert answered["sla"]["first_response"]["completed_at"] == answered["first_responded_at"]
    comment(client, agent, ticket, body="Second reply")
    again = client.get(f"/v1/tickets/{ticket['id']}", headers=agent.headers).json()
    assert again["first_responded_at"] == answered["first_responded_at"]


def test_the_requesters_words_reopen_a_waiting_ticket(
    client: TestClient, agent: User, policy: dict[str, Any], make_ticket: MakeTicket
) -> None:
    ticket = make_ticket(status="pending")
    assert ticket["sla"]["paused"] is True
    words = comment(client, agent, ticket, body="Still broken", from_requester=True)
    assert words.status_code == 201
    reopened = client.get(f"/v1/tickets/{ticket['id']}", headers=agent.headers).json()
    assert reopened["status"] == "open"
    assert reopened["first_responded_at"] is None  # the requester's words answer nobody
    patch(client, agent, ticket, status="solved")
    comment(client, agent, ticket, body="It broke again", from_requester=True)
    assert client.get(f"/v1/tickets/{ticket['id']}", headers=agent.headers).json()["status"] == (
        "open"
    )
    assert_error(comment(client, agent, ticket, from_requester=True, public=False), 400, "public")


def test_comments_are_listed_oldest_first_and_notes_only_to_ticket_staff(
    client: TestClient,
    admin: User,
    agent: User,
    make_user: MakeUser,
    make_person: MakePerson,
    make_ticket: MakeTicket,
) -> None:
    rep = make_user("sales")
    person = make_person("bo@example.com")
    client.patch(f"/v1/contacts/{person}", json={"owner_id": rep.id}, headers=admin.headers)
    ticket = make_ticket(user=admin, person_id=person)
    comment(client, agent, ticket, body="first")
    comment(client, agent, ticket, body="internal", public=False)
    comment(client, agent, ticket, body="third")
    url = f"/v1/tickets/{ticket['id']}/comments"
    for user in (agent, admin, make_user("manager")):
        listed = client.get(url, headers=user.headers).json()
        assert [c["body"] for c in listed["items"]] == ["first", "internal", "third"]
        assert listed["total"] == 3
    for user in (rep, make_user("marketing"), make_user("analyst")):
        listed = client.get(url, headers=user.headers).json()
        assert [c["body"] for c in listed["items"]] == ["first", "third"]
    paged = client.get(url, params={"limit": 2}, headers=agent.headers).json()
    rest = client.get(
        url, params={"limit": 2, "cursor": paged["next_cursor"]}, headers=agent.headers
    ).json()
    assert [c["body"] for c in paged["items"] + rest["items"]] == ["first", "internal", "third"]
    assert_error(client.post(url, json={"body": "  "}, headers=agent.headers), 400, "body")
    assert_error(client.post(url, json={"body": "x" * 100_001}, headers=agent.headers), 400, "body")
    assert_error(client.post(url, json={}, headers=agent.headers), 422, "body")


def test_ticket_changes_are_events_on_the_requester_and_audited(
    client: TestClient,
    admin: User,
    agent: User,
    make_person: MakePerson,
    policy: dict[str, Any],
    make_ticket: MakeTicket,
    tracker: Tracker,
    db: Session,
) -> None:
    person = make_person("cy@example.com")
    ticket = make_ticket(user=admin, person_id=person, priority="high")
    comment(client, agent, ticket, public=False, body="secret")
    comment(client, agent, ticket)
    patch(client, agent, ticket, status="pending")
    patch(client, agent, ticket, status="solved")
    logged = crm_events(db)
    assert [e.event for e in logged] == [
        "Ticket Created",
        "Ticket Comment Added",
        "Ticket Status Changed",
        "Ticket Status Changed",
        "Ticket Status Changed",
        "Ticket Solved",
    ]
    created = logged[0].payload["properties"]
    assert created["ticket_id"] == ticket["id"]
    assert created["priority"] == "high"
    assert logged[0].payload["context"]["patron"]["person_id"] == person
    assert "secret" not in str([e.payload for e in logged])
    moves = [
        (e.payload["properties"]["previous_status"], e.payload["properties"]["status"])
        for e in logged
        if e.event == "Ticket Status Changed"
    ]
    assert moves == [("new", "open"), ("open", "pending"), ("pending", "solved")]
    tracker.process()
    timeline = client.get(f"/v1/persons/{person}/timeline?type=track", headers=admin.headers)
    assert "Ticket Solved" in [e["event"] for e in timeline.json()["items"]]
    audit = client.get(
        "/v1/audit",
        params={"record_type": "ticket", "record_id": ticket["id"]},
        headers=admin.headers,
    ).json()["items"]
    actions = [e["action"] for e in reversed(audit)]
    assert actions == ["create", "comment", "comment", "update", "update", "update"]
    assert audit[0]["before"] == {"status": "pending"}
    assert audit[0]["after"] == {"status": "solved"}
    assert audit[-2]["after"]["public"] is False


def test_custom_fields_tags_and_fields_are_checked(
    client: TestClient,
    admin: User,
    agent: User,
    make_user: MakeUser,
    make_person: MakePerson,
    make_ticket: MakeTicket,
) -> None:
    client.post(
        "/v1/custom-fields",
        json={
            "record_type": "ticket",
            "key": "product",
            "type": "single_select",
            "options": ["app", "web"],
        },
        headers=admin.headers,
    )
    ticket = make_ticket(custom={"product": "app"})
    assert ticket["custom"] == {"product": "app"}
    answer = client.post(
        "/v1/tickets", json={"subject": "x", "custom": {"product": "tv"}}, headers=agent.headers
    )
    assert_error(answer, 400, "custom.product")
    answer = client.post(
        "/v1/tickets", json={"subject": "x", "custom": {"nope": 1}}, headers=agent.headers
    )
    assert_error(answer, 400, "custom.nope")
    cleared = patch(client, agent, ticket, custom={"product": None}).json()
    assert cleared["custom"] == {}
    hidden = make_person("hidden@example.com")
    rep = make_user("sales")
    bad: list[tuple[dict[str, Any], int, str]] = [
        ({"subject": "  "}, 400, "subject"),
        ({"subject": "x" * 301}, 400, "subject"),
        ({"subject": "x", "priority": "asap"}, 400, "priority"),
        ({"subject": "x", "channel": "fax"}, 400, "channel"),
        ({"subject": "x", "person_id": hidden}, 400, "person_id"),
        ({"subject": "x", "company_id": hidden}, 400, "company_id"),
        ({"subject": "x", "assignee_id": rep.id}, 400, "assignee_id"),
        ({"subject": "x", "assignee_id": hidden}, 400, "assignee_id"),
        ({"subject": "x", "description": "d" * 100_001}, 400, "description"),
        ({"subject": "x", "tags": [""]}, 400, "tags"),
        ({"subject": "x", "sla": "none"}, 422, "sla"),
        ({"subject": "x\x00"}, 422, "subject"),
        ({}, 422, "subject"),
    ]
    for body, status, field in bad:
        assert_error(client.post("/v1/tickets", json=body, headers=agent.headers), status, field)
    assert_error(patch(client, agent, ticket, priority=None), 400, "priority")


def test_scripts_are_kept_as_text(client: TestClient, agent: User, make_ticket: MakeTicket) -> None:
    script = "<script>alert('x')</script>"
    ticket = make_ticket(subject=script, description=script, tags=[script])
    assert ticket["subject"] == script
    reply = comment(client, agent, ticket, body=script)
    assert reply.json()["body"] == script
    assert client.get(f"/v1/tickets/{ticket['id']}", headers=agent.headers).json()["tags"] == [
        script
    ]


def test_assignees_work_tickets(
    client: TestClient, admin: User, agent: User, make_user: MakeUser, make_ticket: MakeTicket
) -> None:
    other = make_user("support")
    ticket = make_ticket(assignee_id=agent.id)
    assert ticket["assignee_id"] == agent.id
    moved = patch(client, agent, ticket, assignee_id=other.id)
    assert moved.status_code == 200
    # Handed to someone outside their team, the ticket leaves the agent's view.
    assert_error(client.get(f"/v1/tickets/{ticket['id']}", headers=agent.headers), 404)
    assert client.get(f"/v1/tickets/{ticket['id']}", headers=other.headers).status_code == 200
    assert patch(client, admin, ticket, assignee_id=None).json()["assignee_id"] is None


def test_lists_filter_search_sort_page_and_export(
    client: TestClient, agent: User, policy: dict[str, Any], make_ticket: MakeTicket
) -> None:
    low = make_ticket(subject="Invoice missing", priority="low", channel="email")
    urgent = make_ticket(subject="Site down", priority="urgent", channel="chat")
    high = make_ticket(subject="Invoice wrong total", priority="high", channel="email")
    patch(client, agent, high, status="pending")

    def listed(**params: Any) -> list[str]:
        answer = client.get("/v1/tickets", params=params, headers=agent.headers)
        assert answer.status_code == 200, answer.text
        return [t["subject"] for t in answer.json()["items"]]

    assert listed() == ["Invoice wrong total", "Site down", "Invoice missing"]
    assert listed(q="invoice") == ["Invoice wrong total", "Invoice missing"]
    assert listed(q="INVOICE total") == ["Invoice wrong total"]
    assert listed(filter="channel:eq:email", sort="subject") == [
        "Invoice missing",
        "Invoice wrong total",
    ]
    assert listed(filter="status:in:new,open") == ["Site down", "Invoice missing"]
    assert listed(sort="-priority_rank") == ["Site down", "Invoice wrong total", "Invoice missing"]
    assert len(listed(filter="sla_state:eq:ok")) == 3  # paused is not late
    assert listed(filter="sla_state:eq:breached") == []
    # Pending: its clock stands, so nothing of it comes due.
    assert listed(filter="sla_due_at:not_empty", sort="sla_due_at") == [
        "Invoice missing",
        "Site down",
    ]
    assert listed(filter="first_response_breached:eq:false", sort="subject")[0] == (
        "Invoice missing"
    )
    assert listed(filter=f"id:eq:{urgent['id']}") == ["Site down"]
    first = client.get("/v1/tickets", params={"limit": 2}, headers=agent.headers).json()
    assert first["total"] == 3
    second = client.get(
        "/v1/tickets", params={"limit": 2, "cursor": first["next_cursor"]}, headers=agent.headers
    ).json()
    assert [t["id"] for t in second["items"]] == [low["id"]]
    for params, field in (
        ({"filter": "mood:eq:sad"}, "filter"),
        ({"filter": "sla_state:has:x"}, "filter"),
        ({"filter": "created_at:lt:yesterday"}, "filter"),
        ({"sort": "description"}, "sort"),
    ):
        assert_error(client.get("/v1/tickets", params=params, headers=agent.headers), 400, field)
    exported = client.get(
        "/v1/tickets/export.csv", params={"filter": "channel:eq:email"}, headers=agent.headers
    )
    assert exported.status_code == 200
    assert exported.headers["content-type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(exported.text)))
    assert sorted(r["subject"] for r in rows) == ["Invoice missing", "Invoice wrong total"]
    assert {r["sla_state"] for r in rows} == {"ok"}
    assert {r["first_response_target"] for r in rows} == {"60"}
    bad = client.get("/v1/tickets/export.csv", params={"sort": "x"}, headers=agent.headers)
    assert_error(bad, 400, "sort")


@pytest.mark.parametrize("size", [10 * 1024 * 1024])
def test_a_ten_megabyte_ticket_is_refused_whole(
    client: TestClient, agent: User, size: int, make_ticket: MakeTicket
) -> None:
    answer = client.post(
        "/v1/tickets", json={"subject": "big", "description": "x" * size}, headers=agent.headers
    )
    assert_error(answer, 400, "description")
    assert client.get("/v1/tickets", headers=agent.headers).json()["total"] == 0
