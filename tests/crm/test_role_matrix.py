"""Every CRM endpoint by every role: what each may read, create and change."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient

from tests.conftest import MakePerson, MakeUser, User

ROLES = ("admin", "manager", "sales", "support", "marketing", "analyst")
# role -> may create: (companies, deals, activities, pipelines / custom fields)
WRITES = {
    "admin": (True, True, True, True),
    "manager": (True, True, True, False),
    "sales": (True, True, True, False),
    "support": (False, False, False, False),
    "marketing": (True, False, True, False),
    "analyst": (False, False, False, False),
}


@pytest.mark.parametrize("role", ROLES)
def test_every_endpoint_by_role(
    client: TestClient, admin: User, make_user: MakeUser, make_person: MakePerson, role: str
) -> None:
    user = make_user(role)
    h = user.headers
    person = make_person(f"{role}@example.com")
    # Shared with the user, so every role can see this one person whatever its rule.
    client.post(f"/v1/contacts/{person}/shares", json={"user_id": user.id}, headers=admin.headers)
    pipeline = client.post(
        "/v1/pipelines",
        json={"name": "P", "stages": [{"name": "S", "probability": 10}]},
        headers=admin.headers,
    ).json()
    companies, deals, activities, admin_only = WRITES[role]

    def status(method: str, url: str, body: Any = None) -> int:
        return client.request(method, url, json=body, headers=h).status_code

    for url in (
        "/v1/contacts",
        "/v1/companies",
        "/v1/deals",
        "/v1/pipelines",
        "/v1/custom-fields",
        "/v1/teams",
        "/v1/my-tasks",
        "/v1/notifications",
        "/v1/deals/forecast",
        f"/v1/contacts/{person}",
        f"/v1/contacts/{person}/timeline",
        f"/v1/persons/{person}",
    ):
        assert status("GET", url) == 200, url
    assert status("GET", "/v1/audit") == (200 if role in ("admin", "manager") else 403)
    assert status("POST", "/v1/companies", {"name": f"C {role}"}) == (201 if companies else 403)
    deal = {"name": "D", "pipeline_id": pipeline["id"]}
    assert status("POST", "/v1/deals", deal) == (201 if deals else 403)
    note = {"kind": "note", "person_id": person, "body": "hello"}
    assert status("POST", "/v1/activities", note) == (201 if activities else 403)
    field = {"record_type": "deal", "key": f"k_{role}", "type": "text"}
    assert status("POST", "/v1/custom-fields", field) == (201 if admin_only else 403)
    new_pipeline = {"name": f"P {role}", "stages": [{"name": "S", "probability": 1}]}
    assert status("POST", "/v1/pipelines", new_pipeline) == (201 if admin_only else 403)
    assert status("POST", "/v1/teams", {"name": f"T {role}"}) == (201 if admin_only else 403)
    patched = status("PATCH", f"/v1/contacts/{person}", {"lead_status": "open"})
    assert patched == (200 if role in ("admin", "manager", "sales", "marketing") else 403)
