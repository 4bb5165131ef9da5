"""Every lead scoring and assignment endpoint by every role: what each may read and change."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient

from tests.conftest import MakePerson, MakeUser, User

ROLES = ("admin", "manager", "sales", "support", "marketing", "analyst")
# role -> may: (edit scoring rules, retrain, override scores, manage their team's assignment,
# choose the default team)
MAY = {
    "admin": (True, True, True, True, True),
    "manager": (False, True, True, True, False),
    "sales": (False, False, True, False, False),
    "support": (False, False, False, False, False),
    "marketing": (False, False, True, False, False),
    "analyst": (False, False, False, False, False),
}


@pytest.mark.parametrize("role", ROLES)
def test_every_leads_endpoint_by_role(
    client: TestClient, admin: User, make_user: MakeUser, make_person: MakePerson, role: str
) -> None:
    user = make_user(role)
    person = make_person(f"{role}@example.com")
    client.post(f"/v1/contacts/{person}/shares", json={"user_id": user.id}, headers=admin.headers)
    crew = client.post("/v1/teams", json={"name": "Crew"}, headers=admin.headers).json()["id"]
    client.post(f"/v1/teams/{crew}/members", json={"user_id": user.id}, headers=admin.headers)
    rules, retrain, override, manage, default = MAY[role]

    def status(method: str, url: str, body: Any = None) -> int:
        return client.request(method, url, json=body, headers=user.headers).status_code

    for url in (
        "/v1/lead-scoring/rules",
        "/v1/lead-scoring/model",
        f"/v1/persons/{person}/scores",
        "/v1/assignment/teams",
        "/v1/assignment/rules",
        "/v1/assignment/log",
    ):
        assert status("GET", url) == 200, url
    rule = {
        "name": f"R {role}",
        "conditions": [{"kind": "recency", "within_days": 7}],
        "points": 5,
    }
    assert status("POST", "/v1/lead-scoring/rules", rule) == (201 if rules else 403)
    assert status("POST", "/v1/lead-scoring/retrain") == (200 if retrain else 403)
    body = {"value": 50, "reason": "checked"}
    put = status("PUT", f"/v1/persons/{person}/scores/lead_score", body)
    assert put == (200 if override else 403)
    member = f"/v1/assignment/teams/{crew}/members/{user.id}"
    assert status("PUT", member, {"weight": 2}) == (200 if manage else 403)
    routing = {"name": f"A {role}", "team_id": crew, "conditions": []}
    assert status("POST", "/v1/assignment/rules", routing) == (201 if manage else 403)
    assert status("POST", "/v1/assignment/run") == (200 if manage else 403)
    assert status("POST", "/v1/assignment/rebalance", {"team_id": crew}) == (200 if manage else 403)
    chosen = status("PUT", "/v1/assignment/default-team", {"team_id": crew})
    assert chosen == (200 if default else 403)
