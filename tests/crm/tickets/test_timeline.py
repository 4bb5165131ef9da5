"""Tickets and comments on the timelines of persons and companies, tickets through person
merges, and activities linked to tickets."""

from __future__ import annotations

from typing import Any

from fastapi.testclient import TestClient
from sqlalchemy.orm import Session

from tests.conftest import MakePerson, MakeUser, User, assert_error
from tests.crm.tickets.conftest import MakeTicket
from tests.crm.tickets.test_tickets import crm_events


def entries(client: TestClient, user: User, path: str, **params: Any) -> list[tuple[str, str]]:
    answer = client.get(path, params=params, headers=user.headers)
    assert answer.status_code == 200, answer.text
    return [(e["kind"], e["title"]) for e in answer.json()["items"]]


def test_tickets_and_comments_are_on_the_person_and_company_timelines(
    client: TestClient,
    admin: User,
    agent: User,
    make_user: MakeUser,
    make_person: MakePerson,
    make_ticket: MakeTicket,
) -> None:
    rep = make_user("sales")
    person = make_person("eve@example.com")
    client.patch(f"/v1/contacts/{person}", json={"owner_id": rep.id}, headers=admin.headers)
    company = client.post("/v1/companies", json={"name": "Acme"}, headers=admin.headers).json()
    ticket = make_ticket(
        user=admin, subject="Refund please", person_id=person, company_id=company["id"]
    )
    url = f"/v1/tickets/{ticket['id']}/comments"
    client.post(url, json={"body": "checking with billing", "public": False}, headers=agent.headers)
    client.post(url, json={"body": "Refunded."}, headers=agent.headers)
    path = f"/v1/contacts/{person}/timeline"
    kinds = ["ticket", "comment"]
    staff_view = [
        ("comment", "Public reply"),
        ("comment", "Internal note"),
        ("ticket", "Refund please"),
    ]
    assert entries(client, agent, path, kind=kinds) == staff_view
    assert entries(client, admin, path, kind=kinds) == staff_view
    # The rep sees the customer's ticket and the reply, not the support team's note.
    assert entries(client, rep, path, kind=kinds) == [staff_view[0], staff_view[2]]
    company_path = f"/v1/companies/{company['id']}/timeline"
    assert entries(client, admin, company_path, kind=kinds) == staff_view
    # Everything together, paged: the ticket entries page like the others.
    first = client.get(path, params={"limit": 2}, headers=admin.headers).json()
    everything = first["items"]
    cursor = first["next_cursor"]
    while cursor:
        page = client.get(path, params={"limit": 2, "cursor": cursor}, headers=admin.headers).json()
        everything += page["items"]
        cursor = page["next_cursor"]
    assert len(everything) == first["total"]
    assert [e["kind"] for e in everything].count("comment") == 2
    body = next(e for e in everything if e["kind"] == "ticket")["data"]
    assert body["status"] == "open"
    assert_error(client.get(path, params={"kind": "tickets"}, headers=admin.headers), 400, "kind")


def test_a_merged_requesters_tickets_follow_them_and_come_back_on_unmerge(
    client: TestClient,
    admin: User,
    agent: User,
    make_person: MakePerson,
    make_ticket: MakeTicket,
) -> None:
    older = make_person("fay@example.com")
    newer = make_person("fay.work@example.com")
    ticket = make_ticket(subject="VAT invoice", assignee_id=agent.id, user=admin, person_id=newer)
    merge = client.post(
        f"/v1/persons/{older}/merge", json={"other_id": newer}, headers=admin.headers
    ).json()
    assert merge["survivor_id"] == older
    # The ticket still names the person it was made for...
    assert (
        client.get(f"/v1/tickets/{ticket['id']}", headers=admin.headers).json()["person_id"]
        == newer
    )
    # ...and is found through the survivor: timeline, list filter, the agent's view.
    path = f"/v1/contacts/{older}/timeline"
    assert entries(client, admin, path, kind="ticket") == [("ticket", "VAT invoice")]
    found = client.get(
        "/v1/tickets", params={"filter": f"person_id:eq:{older}"}, headers=admin.headers
    ).json()
    assert [t["id"] for t in found["items"]] == [ticket["id"]]
    assert client.get(f"/v1/contacts/{older}", headers=agent.headers).status_code == 200
    undone = client.post(f"/v1/merges/{merge['id']}/undo", json={}, headers=admin.headers)
    assert undone.status_code == 200, undone.text
    assert entries(client, admin, path, kind="ticket") == []
    path = f"/v1/contacts/{newer}/timeline"
    assert entries(client, admin, path, kind="ticket") == [("ticket", "VAT invoice")]


def test_a_merged_companys_tickets_move_to_the_survivor(
    client: TestClient, admin: User, make_ticket: MakeTicket
) -> None:
    keep = client.post("/v1/companies", json={"name": "Acme"}, headers=admin.headers).json()
    other = client.post("/v1/companies", json={"name": "ACME Inc"}, headers=admin.headers).json()
    ticket = make_ticket(user=admin, company_id=other["id"])
    merged = client.post(
        f"/v1/companies/{keep['id']}/merge", json={"other_id": other["id"]}, headers=admin.headers
    )
    assert merged.status_code == 200, merged.text
    moved = client.get(f"/v1/tickets/{ticket['id']}", headers=admin.headers).json()
    assert moved["company_id"] == keep["id"]
    path = f"/v1/companies/{keep['id']}/timeline"
    assert entries(client, admin, path, kind="ticket") == [("ticket", "Cannot log in")]


def test_activities_link_to_tickets(
    client: TestClient,
    admin: User,
    agent: User,
    make_user: MakeUser,
    make_person: MakePerson,
    make_ticket: MakeTicket,
    db: Session,
) -> None:
    manager = make_user("manager")
    rep = make_user("sales")
    person = make_person("gus@example.com")
    ticket = make_ticket(user=admin, person_id=person)
    call = client.post(
        "/v1/activities",
        json={"kind": "call", "ticket_id": ticket["id"], "direction": "inbound"},
        headers=manager.headers,
    )
    assert call.status_code == 201, call.text
    assert call.json()["ticket_id"] == ticket["id"]
    # The call went on the ticket's requester, as an event.
    logged = crm_events(db, "Call Logged")
    assert logged[-1].payload["properties"]["ticket_id"] == ticket["id"]
    assert logged[-1].payload["context"]["patron"]["person_id"] == person
    listed = client.get(
        "/v1/activities", params={"filter": f"ticket_id:eq:{ticket['id']}"}, headers=admin.headers
    ).json()
    assert [a["id"] for a in listed["items"]] == [call.json()["id"]]
    # Visible with the ticket: the support agent reads it, a rep who cannot see it does not.
    activity = f"/v1/activities/{call.json()['id']}"
    assert client.get(activity, headers=agent.headers).status_code == 200
    assert_error(client.get(activity, headers=rep.headers), 404)
    answer = client.post(
        "/v1/activities",
        json={"kind": "note", "ticket_id": ticket["id"], "body": "x"},
        headers=rep.headers,
    )
    assert_error(answer, 400, "ticket_id")
    exported = client.get("/v1/activities/export.csv", headers=admin.headers).text
    assert "ticket_id" in exported.splitlines()[0]
    assert ticket["id"] in exported
