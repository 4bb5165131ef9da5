"""Every forms endpoint by every role, and whose submissions each role may see."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from fastapi.testclient import TestClient

from tests.conftest import MakeUser, User
from tests.crm.forms.conftest import DEMO_FORM, MakeForm, good_answers

ROLES = ("admin", "manager", "sales", "support", "marketing", "analyst")
MANAGES = {"admin", "marketing"}


@pytest.mark.parametrize("role", ROLES)
def test_every_forms_endpoint_by_role(
    client: TestClient, make_form: MakeForm, make_user: MakeUser, role: str
) -> None:
    user = make_user(role)
    form = make_form()
    url = f"/v1/forms/{form['id']}"
    sent = client.post("/f/demo", json=good_answers()).json()["id"]

    def status(method: str, path: str, body: object = None) -> int:
        return client.request(method, path, json=body, headers=user.headers).status_code

    for path in ("/v1/forms", url, f"{url}/embed", f"{url}/submissions"):
        assert status("GET", path) == 200, path
    created = status("POST", "/v1/forms", {**DEMO_FORM, "slug": f"f-{role}"})
    assert created == (201 if role in MANAGES else 403)
    assert status("PATCH", url, {"name": "Renamed"}) == (200 if role in MANAGES else 403)
    # Retrying needs a manager of forms, and then a failed submission (this one is not).
    retried = status("POST", f"{url}/submissions/{sent}/retry")
    assert retried == (409 if role in MANAGES else 403)
    assert client.get(f"{url}/submissions").status_code == 401
    assert client.post("/f/demo", json=good_answers("public@example.com")).status_code == 201


Process = Callable[[], int]


def test_submissions_are_visible_with_their_persons(
    client: TestClient, make_form: MakeForm, make_user: MakeUser, process: Process
) -> None:
    rep, other_rep = make_user("sales"), make_user("sales")
    owned_form = make_form(owner_id=rep.id)
    pool_form = make_form(slug="pool")
    client.post("/f/demo", json=good_answers("owned@example.com"))
    client.post("/f/pool", json=good_answers("pool@example.com"))
    client.post("/f/pool", json={"email": "not valid"})  # rejected: no person
    process()
    users: dict[str, User] = {r: make_user(r) for r in ROLES}
    users["rep"], users["other_rep"] = rep, other_rep

    def seen(who: str) -> set[str]:
        emails = set()
        for form in (owned_form, pool_form):
            answer = client.get(f"/v1/forms/{form['id']}/submissions", headers=users[who].headers)
            assert answer.status_code == 200
            emails |= {s["answers"]["email"] for s in answer.json()["items"]}
        return emails

    everything = {"owned@example.com", "pool@example.com", "not valid"}
    for who in ("admin", "marketing", "analyst"):
        assert seen(who) == everything, who
    assert seen("rep") == {"owned@example.com"}
    assert seen("other_rep") == set()
    assert seen("manager") == {"pool@example.com"}  # the unassigned pool, not rep's lead
    assert seen("support") == set()
