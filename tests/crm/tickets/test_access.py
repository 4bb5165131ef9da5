"""Who sees and works which tickets: every role against every endpoint, and the scopes of
support users and managers (and the persons and companies support sees through them)."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient

from tests.conftest import MakePerson, MakeUser, User, assert_error
from tests.crm.tickets.conftest import MakeTicket, policy_body

ROLES = ("admin", "manager", "sales", "support", "marketing", "analyst")
# role -> works tickets (create, change, comment)
WORKS = {
    "admin": True,
    "manager": True,
    "sales": False,
    "support": True,
    "marketing": False,
    "analyst": False,
}


@pytest.mark.parametrize("role", ROLES)
def test_every_ticket_endpoint_by_role(
    client: TestClient,
    admin: User,
    make_user: MakeUser,
    make_person: MakePerson,
    make_ticket: MakeTicket,
    role: str,
) -> None:
    user = make_user(role)
    person = make_person(f"{role}@example.com")
    # The requester is the sales user's own, so that every role may read the ticket.
    if role == "sales":
        client.patch(f"/v1/contacts/{person}", json={"owner_id": user.id}, headers=admin.headers)
    ticket = make_ticket(user=admin, person_id=person)
    url = f"/v1/tickets/{ticket['id']}"

    def status(method: str, path: str, body: Any = None) -> int:
        return client.request(method, path, json=body, headers=user.headers).status_code

    for path in (
        "/v1/tickets",
        url,
        f"{url}/comments",
        "/v1/tickets/export.csv",
        "/v1/sla-policies",
        f"/v1/contacts/{person}/timeline",
    ):
        assert status("GET", path) == 200, path
    listed = client.get("/v1/tickets", headers=user.headers).json()["items"]
    assert [t["id"] for t in listed] == [ticket["id"]]
    works = WORKS[role]
    assert status("POST", "/v1/tickets", {"subject": f"From {role}"}) == (201 if works else 403)
    assert status("PATCH", url, {"priority": "high"}) == (200 if works else 403)
    assert status("POST", f"{url}/comments", {"body": "hi"}) == (201 if works else 403)
    made = status("POST", "/v1/sla-policies", policy_body())
    assert made == (201 if role == "admin" else 403)


@pytest.fixture
def desk(
    client: TestClient,
    admin: User,
    make_user: MakeUser,
    make_person: MakePerson,
    make_ticket: MakeTicket,
) -> dict[str, Any]:
    """A manager and a support user in one team, another support user and a sales rep
    outside it, and a ticket for each of the two support users and one in the queue."""
    users = {
        "manager": make_user("manager"),
        "ann": make_user("support"),
        "bob": make_user("support"),
        "rep": make_user("sales"),
    }
    team = client.post("/v1/teams", json={"name": "Support EU"}, headers=admin.headers).json()
    for name in ("manager", "ann"):
        client.post(
            f"/v1/teams/{team['id']}/members",
            json={"user_id": users[name].id},
            headers=admin.headers,
        )
    persons = {name: make_person(f"{name}@example.com") for name in ("pa", "pb", "pq")}
    # The rep owns the requester of Bob's ticket: the manager cannot see that person.
    client.patch(
        f"/v1/contacts/{persons['pb']}", json={"owner_id": users["rep"].id}, headers=admin.headers
    )
    company = client.post(
        "/v1/companies", json={"name": "Acme", "owner_id": None}, headers=admin.headers
    ).json()
    tickets = {
        "ta": make_ticket(
            user=admin,
            person_id=persons["pa"],
            company_id=company["id"],
            assignee_id=users["ann"].id,
        ),
        "tb": make_ticket(user=admin, person_id=persons["pb"], assignee_id=users["bob"].id),
        "tq": make_ticket(user=admin, person_id=persons["pq"]),
    }
    return {"users": users, "persons": persons, "tickets": tickets, "company": company}


def visible(client: TestClient, user: User) -> set[str]:
    return {t["id"] for t in client.get("/v1/tickets", headers=user.headers).json()["items"]}


def test_support_works_their_tickets_their_teams_and_the_queue(
    client: TestClient, desk: dict[str, Any]
) -> None:
    ann, bob = desk["users"]["ann"], desk["users"]["bob"]
    ta, tb, tq = (desk["tickets"][k]["id"] for k in ("ta", "tb", "tq"))
    assert visible(client, ann) == {ta, tq}
    assert visible(client, bob) == {tb, tq}
    assert_error(client.get(f"/v1/tickets/{tb}", headers=ann.headers), 404, "ticket_id")
    answer = client.patch(f"/v1/tickets/{tb}", json={"status": "open"}, headers=ann.headers)
    assert_error(answer, 404)
    # The persons and companies on their tickets, and no one else.
    pa, pb, pq = (desk["persons"][k] for k in ("pa", "pb", "pq"))
    for person, seen in ((pa, True), (pq, True), (pb, False)):
        answer = client.get(f"/v1/contacts/{person}", headers=ann.headers)
        assert answer.status_code == (200 if seen else 404)
    contacts = client.get("/v1/contacts", headers=ann.headers).json()["items"]
    assert {c["id"] for c in contacts} == {pa, pq}
    company = desk["company"]["id"]
    assert client.get(f"/v1/companies/{company}", headers=ann.headers).status_code == 200
    assert client.get(f"/v1/companies/{company}", headers=bob.headers).status_code == 404
    # Support reads them, but does not change them.
    answer = client.patch(f"/v1/contacts/{pa}", json={"lead_status": "open"}, headers=ann.headers)
    assert_error(answer, 403)


def test_managers_work_their_teams_tickets_and_read_their_customers(
    client: TestClient, admin: User, desk: dict[str, Any]
) -> None:
    manager, rep = desk["users"]["manager"], desk["users"]["rep"]
    ta, tb, tq = (desk["tickets"][k]["id"] for k in ("ta", "tb", "tq"))
    assert visible(client, manager) == {ta, tq}
    answer = client.patch(f"/v1/tickets/{ta}", json={"priority": "high"}, headers=manager.headers)
    assert answer.status_code == 200
    # The rep's customer: the manager sees the ticket once the person is theirs to see.
    pb = desk["persons"]["pb"]
    client.patch(f"/v1/contacts/{pb}", json={"owner_id": manager.id}, headers=admin.headers)
    assert visible(client, manager) == {ta, tb, tq}
    answer = client.patch(f"/v1/tickets/{tb}", json={"priority": "high"}, headers=manager.headers)
    assert_error(answer, 403)
    answer = client.post(f"/v1/tickets/{tb}/comments", json={"body": "x"}, headers=manager.headers)
    assert_error(answer, 403)
    # Sales read the tickets of their customers only, and change none.
    assert visible(client, rep) == set()
    client.patch(f"/v1/contacts/{pb}", json={"owner_id": rep.id}, headers=admin.headers)
    assert visible(client, rep) == {tb}
    answer = client.patch(f"/v1/tickets/{tb}", json={"priority": "low"}, headers=rep.headers)
    assert_error(answer, 403)
    assert_error(client.get(f"/v1/tickets/{ta}", headers=rep.headers), 404)


def test_a_ticket_can_be_referenced_by_those_who_see_it(
    client: TestClient, admin: User, desk: dict[str, Any]
) -> None:
    client.post(
        "/v1/custom-fields",
        json={
            "record_type": "deal",
            "key": "ticket",
            "type": "reference",
            "reference_type": "ticket",
        },
        headers=admin.headers,
    )
    pipeline = client.post(
        "/v1/pipelines",
        json={"name": "P", "stages": [{"name": "S", "probability": 10}]},
        headers=admin.headers,
    ).json()
    rep = desk["users"]["rep"]
    for ticket, status in ((desk["tickets"]["tb"], 201), (desk["tickets"]["ta"], 400)):
        body = {"name": "D", "pipeline_id": pipeline["id"], "custom": {"ticket": ticket["id"]}}
        answer = client.post("/v1/deals", json=body, headers=rep.headers)
        assert answer.status_code == status, answer.text
