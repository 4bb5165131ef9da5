"""A rep's and a manager's lists are read arm by arm (their own records, then what is
shared with them or their team): the pages must still come in the list's order, on nulls
and ties too, each visible record exactly once, whatever the sort.

The order a restricted reader should see is the admin's order of the same list with the
records they may not see left out.
"""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient

from tests.conftest import MakePerson, MakeUser, User

NAMES = ["Cleo", None, "Ada", "Bea", None, "Ada", "Dan", "Eve", "Bea", None, "Fay", "Ada"]


def _walk(client: TestClient, path: str, user: User, params: dict[str, Any]) -> list[str]:
    seen: list[str] = []
    cursor = None
    while True:
        page = client.get(
            path,
            params={**params, "limit": 2, **({"cursor": cursor} if cursor else {})},
            headers=user.headers,
        )
        assert page.status_code == 200, page.text
        body = page.json()
        seen += [item["id"] for item in body["items"]]
        cursor = body["next_cursor"]
        if cursor is None:
            return seen


@pytest.fixture
def people(
    client: TestClient, admin: User, make_user: MakeUser, make_person: MakePerson
) -> dict[str, Any]:
    """Persons, companies and deals owned by a rep, by another rep and by no one; some
    shared with the rep, some with the manager's team (the rep is not in it)."""
    rep, other, manager = make_user("sales"), make_user("sales"), make_user("manager")
    h = admin.headers
    team = client.post("/v1/teams", json={"name": "West"}, headers=h).json()
    for member in (manager, other):
        added = client.post(
            f"/v1/teams/{team['id']}/members", json={"user_id": member.id}, headers=h
        )
        assert added.status_code == 204
    stages = [{"name": "Open", "probability": 10}]
    made = client.post("/v1/pipelines", json={"name": "P", "stages": stages}, headers=h)
    assert made.status_code == 201, made.text
    owners = [rep.id, other.id, None]
    for n, name in enumerate(NAMES):
        traits = {"name": name} if name else {}
        person = make_person(f"r{n}@example.com", **traits)
        company = client.post(
            "/v1/companies", json={"name": name or f"Co {n % 3}"}, headers=h
        ).json()["id"]
        deal = client.post(
            "/v1/deals",
            json={
                "name": name or "Deal",
                "pipeline_id": made.json()["id"],
                "amount": 100 * (n % 4),
                "currency": "EUR",
            },
            headers=h,
        )
        assert deal.status_code == 201, deal.text
        records = {"contacts": person, "companies": company, "deals": deal.json()["id"]}
        for kind, record_id in records.items():
            changed = client.patch(
                f"/v1/{kind}/{record_id}", json={"owner_id": owners[n % 3]}, headers=h
            )
            assert changed.status_code == 200, changed.text
            grantee = {"user_id": rep.id} if n % 4 == 1 else {"team_id": team["id"]}
            if n % 4 in (1, 2):
                shared = client.post(f"/v1/{kind}/{record_id}/shares", json=grantee, headers=h)
                assert shared.status_code == 201, shared.text
    return {"rep": rep, "manager": manager}


SORTS = {
    "/v1/contacts": ["name", "-name", "-created_at", "lifecycle_stage,name"],
    "/v1/companies": ["name", "-name", "-created_at"],
    "/v1/deals": ["-amount", "amount,name", "-created_at"],
}


@pytest.mark.parametrize("path", sorted(SORTS))
def test_restricted_pages_keep_the_order_of_the_list(
    client: TestClient, admin: User, people: dict[str, Any], path: str
) -> None:
    for role in ("rep", "manager"):
        user = people[role]
        whole = client.get(path, params={"limit": 500}, headers=user.headers).json()
        visible = {item["id"] for item in whole["items"]}
        everything = client.get(path, params={"limit": 500}, headers=admin.headers).json()
        assert 0 < len(visible) < len(everything["items"]), role
        assert (whole["total"], whole["total_exact"]) == (len(visible), True)
        for sort in SORTS[path]:
            expected = [i for i in _walk(client, path, admin, {"sort": sort}) if i in visible]
            assert _walk(client, path, user, {"sort": sort}) == expected, (role, sort)
