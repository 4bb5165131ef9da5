"""Record-level visibility: every role against every contact and company endpoint."""

from __future__ import annotations

from dataclasses import dataclass

import pytest
from fastapi.testclient import TestClient

from tests.conftest import MakePerson, MakeUser, User, assert_error


@dataclass
class World:
    admin: User
    rep: User  # sales, owns "mine"
    other_rep: User  # sales, owns "theirs"; in the manager's team
    manager: User
    mine_person: str
    theirs_person: str
    mine_company: str
    theirs_company: str


@pytest.fixture
def world(client: TestClient, make_user: MakeUser, make_person: MakePerson) -> World:
    admin, rep, other, manager = (make_user(r) for r in ("admin", "sales", "sales", "manager"))
    h = admin.headers
    team = client.post("/v1/teams", json={"name": "East"}, headers=h).json()
    for user in (manager, other):
        added = client.post(f"/v1/teams/{team['id']}/members", json={"user_id": user.id}, headers=h)
        assert added.status_code == 204
    mine, theirs = make_person("mine@example.com"), make_person("theirs@example.com")
    client.patch(f"/v1/contacts/{mine}", json={"owner_id": rep.id}, headers=h)
    client.patch(f"/v1/contacts/{theirs}", json={"owner_id": other.id}, headers=h)
    mine_co = client.post("/v1/companies", json={"name": "Mine"}, headers=rep.headers).json()
    theirs_co = client.post("/v1/companies", json={"name": "Theirs"}, headers=other.headers).json()
    return World(admin, rep, other, manager, mine, theirs, mine_co["id"], theirs_co["id"])


# role -> (persons seen, companies seen, may write)
EXPECTED = {
    "admin": ({"mine", "theirs"}, {"Mine", "Theirs"}, True),
    "marketing": ({"mine", "theirs"}, {"Mine", "Theirs"}, True),
    "analyst": ({"mine", "theirs"}, {"Mine", "Theirs"}, False),
    "support": (set(), set(), False),
}


@pytest.mark.parametrize("role", sorted(EXPECTED))
def test_role_matrix(client: TestClient, world: World, make_user: MakeUser, role: str) -> None:
    user = make_user(role)
    persons, companies, writes = EXPECTED[role]
    _check(client, world, user, persons, companies, writes)


def test_sales_sees_own_manager_sees_team(client: TestClient, world: World) -> None:
    _check(client, world, world.rep, {"mine"}, {"Mine"}, True)
    _check(client, world, world.manager, {"theirs"}, {"Theirs"}, True)


def test_managers_see_unassigned_records_sales_do_not(
    client: TestClient, world: World, make_person: MakePerson
) -> None:
    pool = make_person("pool@example.com")
    assert client.get(f"/v1/contacts/{pool}", headers=world.manager.headers).status_code == 200
    assert client.get(f"/v1/contacts/{pool}", headers=world.rep.headers).status_code == 404
    assigned = client.patch(
        f"/v1/contacts/{pool}", json={"owner_id": world.other_rep.id}, headers=world.manager.headers
    )
    assert assigned.status_code == 200
    assert client.get(f"/v1/contacts/{pool}", headers=world.other_rep.headers).status_code == 200


def _check(
    client: TestClient,
    world: World,
    user: User,
    persons: set[str],
    companies: set[str],
    writes: bool,
) -> None:
    h = user.headers
    by_id = {world.mine_person: "mine", world.theirs_person: "theirs"}
    listed = client.get("/v1/contacts", headers=h).json()
    assert {by_id[p["id"]] for p in listed["items"]} == persons
    assert listed["total"] == len(persons)
    old_list = client.get("/v1/persons", headers=h).json()
    assert {by_id[p["id"]] for p in old_list["items"]} == persons
    assert old_list["total"] == len(persons)
    cos = client.get("/v1/companies", headers=h).json()
    assert {c["name"] for c in cos["items"]} == companies
    assert cos["total"] == len(companies)
    for pid, name in by_id.items():
        for url in (f"/v1/contacts/{pid}", f"/v1/persons/{pid}", f"/v1/persons/{pid}/timeline"):
            status = 200 if name in persons else 404
            assert client.get(url, headers=h).status_code == status, url
        lookup = client.get("/v1/persons", params={"email": f"{name}@example.com"}, headers=h)
        assert lookup.status_code == (200 if name in persons else 404)
        patched = client.patch(f"/v1/contacts/{pid}", json={"lead_status": "open"}, headers=h)
        expected = (200 if writes else 403) if name in persons else 404
        assert patched.status_code == expected, (pid, patched.text)
    for cid, name in ((world.mine_company, "Mine"), (world.theirs_company, "Theirs")):
        fetched = client.get(f"/v1/companies/{cid}", headers=h)
        assert fetched.status_code == (200 if name in companies else 404)
        patched = client.patch(f"/v1/companies/{cid}", json={"industry": "X"}, headers=h)
        expected = (200 if writes else 403) if name in companies else 404
        assert patched.status_code == expected, (cid, patched.text)
    created = client.post("/v1/companies", json={"name": f"New {user.email}"}, headers=h)
    assert created.status_code == (201 if writes else 403)


def test_sharing_with_a_user_and_a_team(
    client: TestClient, world: World, make_user: MakeUser
) -> None:
    support = make_user("support")
    url = f"/v1/contacts/{world.mine_person}"
    assert client.get(url, headers=support.headers).status_code == 404
    shared = client.post(f"{url}/shares", json={"user_id": support.id}, headers=world.rep.headers)
    assert shared.status_code == 201, shared.text
    again = client.post(f"{url}/shares", json={"user_id": support.id}, headers=world.rep.headers)
    assert again.json()["id"] == shared.json()["id"]
    assert client.get(url, headers=support.headers).status_code == 200
    assert client.patch(url, json={"tags": ["x"]}, headers=support.headers).status_code == 403
    # the other rep cannot share what they cannot see
    stranger = client.post(
        f"{url}/shares", json={"user_id": world.other_rep.id}, headers=world.other_rep.headers
    )
    assert_error(stranger, 404)
    both = client.post(
        f"{url}/shares",
        json={"user_id": support.id, "team_id": support.id},
        headers=world.rep.headers,
    )
    assert_error(both, 400, "user_id")
    removed = client.delete(f"{url}/shares/{shared.json()['id']}", headers=world.rep.headers)
    assert removed.status_code == 204
    assert client.get(url, headers=support.headers).status_code == 404
    teams = client.get("/v1/teams", headers=world.admin.headers).json()
    company_url = f"/v1/companies/{world.mine_company}"
    client.post(
        f"{company_url}/shares", json={"team_id": teams[0]["id"]}, headers=world.rep.headers
    )
    assert client.get(company_url, headers=world.other_rep.headers).status_code == 200
    assert_error(
        client.get(f"/v1/planets/{world.mine_company}/shares", headers=world.rep.headers),
        404,
        "kind",
    )


def test_without_a_credential_401(client: TestClient) -> None:
    for url in ("/v1/contacts", "/v1/companies", "/v1/custom-fields", "/v1/audit", "/v1/teams"):
        assert_error(client.get(url), 401)


def test_a_profile_lists_only_the_companies_the_reader_may_see(
    client: TestClient, world: World
) -> None:
    h = world.admin.headers
    for company in (world.mine_company, world.theirs_company):
        # No body: a link needs no role.
        linked = client.put(f"/v1/companies/{company}/persons/{world.mine_person}", headers=h)
        assert linked.status_code == 204, linked.text

    def companies(user: User) -> set[str]:
        profile = client.get(f"/v1/persons/{world.mine_person}", headers=user.headers)
        assert profile.status_code == 200, profile.text
        return {c["name"] for c in profile.json()["companies"]}

    assert companies(world.admin) == {"Mine", "Theirs"}
    # The rep sees her contact, but not the other rep's company it also works for.
    assert companies(world.rep) == {"Mine"}


def test_totals_count_each_visible_record_once(
    client: TestClient, world: World, make_person: MakePerson, make_user: MakeUser
) -> None:
    """A restricted user's total is counted in parts (owned, shared, ...) that must not
    overlap nor miss: records both owned and shared, shared with a team, and unassigned
    ones (a manager's) each count once, and the total is what the pages list."""
    h = world.admin.headers
    pool = make_person("pool@example.com")
    team = client.get("/v1/teams", headers=h).json()[0]
    pipeline = client.post(
        "/v1/pipelines", json={"name": "P", "stages": [{"name": "S", "probability": 10}]}, headers=h
    ).json()
    deals = {
        who: client.post(
            "/v1/deals", json={"name": who, "pipeline_id": pipeline["id"]}, headers=user.headers
        ).json()["id"]
        for who, user in (("mine", world.rep), ("theirs", world.other_rep))
    }
    shares = [
        ("contacts", world.mine_person, {"user_id": world.rep.id}),  # also owned
        ("contacts", world.theirs_person, {"user_id": world.rep.id}),
        ("contacts", pool, {"user_id": world.rep.id}),  # no owner: a null in the owner test
        ("contacts", world.mine_person, {"team_id": team["id"]}),
        ("companies", world.theirs_company, {"user_id": world.rep.id}),
        ("deals", deals["mine"], {"user_id": world.rep.id}),  # also owned
        ("deals", deals["theirs"], {"user_id": world.rep.id}),
        ("deals", deals["mine"], {"team_id": team["id"]}),
    ]
    support = make_user("support")
    shares.append(("contacts", world.mine_person, {"user_id": support.id}))
    for kind, record, body in shares:
        answer = client.post(f"/v1/{kind}/{record}/shares", json=body, headers=h)
        assert answer.status_code == 201, answer.text
    # A queue ticket brings its person and company to support; the person is also shared.
    ticket = {"subject": "Help", "person_id": world.theirs_person}
    ticket["company_id"] = world.theirs_company
    answer = client.post("/v1/tickets", json=ticket, headers=h)
    assert answer.status_code == 201, answer.text
    twice = {**ticket, "person_id": world.mine_person}
    assert client.post("/v1/tickets", json=twice, headers=h).status_code == 201

    def listed(user: User, path: str) -> tuple[set[str], int]:
        ids: list[str] = []
        total, cursor = None, None
        while True:
            params = {"limit": 1, **({"cursor": cursor} if cursor else {})}
            body = client.get(path, params=params, headers=user.headers).json()
            ids += [item["id"] for item in body["items"]]
            total = body["total"] if total is None else total
            if not (cursor := body.get("next_cursor")):
                assert len(ids) == len(set(ids))
                return set(ids), total

    everyone = {world.mine_person, world.theirs_person}
    expected = [
        (world.rep, "/v1/contacts", everyone | {pool}),
        (world.other_rep, "/v1/contacts", everyone),  # theirs, and mine through the team
        (world.manager, "/v1/contacts", everyone | {pool}),  # the team's, the pool, shared
        (world.rep, "/v1/companies", {world.mine_company, world.theirs_company}),
        (world.rep, "/v1/deals", set(deals.values())),
        (world.other_rep, "/v1/deals", set(deals.values())),
        (world.manager, "/v1/deals", set(deals.values())),
        (support, "/v1/contacts", everyone),  # one on a ticket, one shared and on a ticket
        (support, "/v1/companies", {world.theirs_company}),
    ]
    for user, path, records in expected:
        found, total = listed(user, path)
        assert found == records, (user.email, path)
        assert total == len(records), (user.email, path)
