"""The CRM pages answer bad input and other people's records with an error page, never a 500."""

from __future__ import annotations

import uuid

from fastapi.testclient import TestClient

from patron.auth import service as auth_service
from patron.core.runtime import Runtime

PASSWORD = "correct horse battery staple"


def signed_in(client: TestClient, runtime: Runtime, role: str) -> TestClient:
    email = f"{role}-{uuid.uuid4().hex[:6]}@example.com"
    with runtime.sessions() as session:
        auth_service.create_user(session, email=email, role=role, password=PASSWORD)
        session.commit()
    answer = client.post("/v1/session", json={"email": email, "password": PASSWORD})
    assert answer.status_code == 200, answer.text
    return client


def test_pages_need_a_session(client: TestClient) -> None:
    for path in ("/pipeline", "/tasks", "/companies", f"/deals/{uuid.uuid4()}"):
        answer = client.get(path, follow_redirects=False)
        assert answer.status_code == 303
        assert answer.headers["location"].startswith("/login")
    posted = client.post("/activities", data={"kind": "note"}, follow_redirects=False)
    assert posted.status_code == 303


def test_bad_input_gets_an_error_page(
    client: TestClient, runtime: Runtime, admin_headers: dict[str, str]
) -> None:
    browser = signed_in(client, runtime, "admin")
    assert browser.get("/pipeline").status_code == 200  # no pipeline yet: says so
    assert "No pipeline yet" in browser.get("/pipeline").text
    assert browser.get(f"/deals/{uuid.uuid4()}").status_code == 404
    assert browser.get(f"/companies/{uuid.uuid4()}").status_code == 404
    unknown_kind = browser.post("/activities", data={"kind": "telegram", "subject": "x"})
    assert unknown_kind.status_code == 400
    assert "kind must be one of" in unknown_kind.text
    bad_due = browser.post("/activities", data={"kind": "task", "subject": "x", "due_at": "soon"})
    assert bad_due.status_code == 400
    bad_minutes = browser.post(
        "/activities", data={"kind": "call", "subject": "x", "duration_minutes": "ten"}
    )
    assert bad_minutes.status_code == 400
    pipeline = client.post(
        "/v1/pipelines",
        json={"name": "P", "stages": [{"name": "A", "probability": 10}]},
        headers=admin_headers,
    ).json()
    deal = client.post(
        "/v1/deals", json={"name": "D", "pipeline_id": pipeline["id"]}, headers=admin_headers
    ).json()
    wrong_stage = browser.post(f"/deals/{deal['id']}/stage", data={"stage_id": str(uuid.uuid4())})
    assert wrong_stage.status_code in (400, 404)
    lost_without_reason = browser.post(f"/deals/{deal['id']}/status", data={"status": "lost"})
    assert lost_without_reason.status_code == 400
    assert client.get(f"/v1/deals/{deal['id']}", headers=admin_headers).json()["status"] == "open"
    not_an_id = browser.get("/pipeline", params={"pipeline": "nope"})
    assert not_an_id.status_code == 400
    assert "pipeline is not an id" in not_an_id.text
    board = browser.get("/pipeline")
    assert board.status_code == 200
    assert 'data-deal="D"' in board.text


def test_a_sales_rep_cannot_open_or_move_a_colleagues_deal(
    client: TestClient, runtime: Runtime, admin_headers: dict[str, str]
) -> None:
    pipeline = client.post(
        "/v1/pipelines",
        json={
            "name": "P",
            "stages": [{"name": "A", "probability": 10}, {"name": "B", "probability": 60}],
        },
        headers=admin_headers,
    ).json()
    deal = client.post(
        "/v1/deals", json={"name": "Theirs", "pipeline_id": pipeline["id"]}, headers=admin_headers
    ).json()
    browser = signed_in(client, runtime, "sales")
    assert browser.get(f"/deals/{deal['id']}").status_code == 404
    assert 'data-deal="Theirs"' not in browser.get("/pipeline").text
    moved = browser.post(
        f"/deals/{deal['id']}/stage", data={"stage_id": pipeline["stages"][1]["id"]}
    )
    assert moved.status_code == 404
    after = client.get(f"/v1/deals/{deal['id']}", headers=admin_headers).json()
    assert after["stage_id"] == pipeline["stages"][0]["id"]
