"""Teams of users and the audit log API."""

from __future__ import annotations

from fastapi.testclient import TestClient

from tests.conftest import MakeUser, assert_error


def test_teams_are_managed_by_admins(client: TestClient, make_user: MakeUser) -> None:
    admin, manager = make_user("admin"), make_user("manager")
    assert_error(client.post("/v1/teams", json={"name": "A"}, headers=manager.headers), 403)
    team = client.post("/v1/teams", json={"name": "A"}, headers=admin.headers)
    assert team.status_code == 201
    assert_error(client.post("/v1/teams", json={"name": "A"}, headers=admin.headers), 409, "name")
    assert_error(client.post("/v1/teams", json={"name": " "}, headers=admin.headers), 400, "name")
    url = f"/v1/teams/{team.json()['id']}/members"
    for _ in range(2):  # adding twice changes nothing
        assert (
            client.post(url, json={"user_id": manager.id}, headers=admin.headers).status_code == 204
        )
    listed = client.get("/v1/teams", headers=manager.headers).json()
    assert listed[0]["members"] == [manager.id]
    unknown = client.post(
        url, json={"user_id": "7b0e1f64-8c36-4c4e-9d43-111111111111"}, headers=admin.headers
    )
    assert_error(unknown, 404, "user_id")
    assert client.delete(f"{url}/{manager.id}", headers=admin.headers).status_code == 204
    assert_error(client.delete(f"{url}/{manager.id}", headers=admin.headers), 404, "user_id")


def test_audit_lists_by_record_and_by_actor(client: TestClient, make_user: MakeUser) -> None:
    admin, rep, analyst = make_user("admin"), make_user("sales"), make_user("analyst")
    company = client.post("/v1/companies", json={"name": "A"}, headers=rep.headers).json()
    for size in (1, 2, 3):
        client.patch(f"/v1/companies/{company['id']}", json={"size": size}, headers=rep.headers)
    by_record = client.get(
        f"/v1/audit?record_type=company&record_id={company['id']}&limit=2", headers=admin.headers
    ).json()
    assert by_record["total"] == 4
    assert [e["after"] for e in by_record["items"]] == [{"size": 3}, {"size": 2}]
    rest = client.get(
        f"/v1/audit?record_type=company&record_id={company['id']}&limit=2"
        f"&cursor={by_record['next_cursor']}",
        headers=admin.headers,
    ).json()
    assert [e["action"] for e in rest["items"]] == ["update", "create"]
    assert rest["next_cursor"] is None
    by_actor = client.get(f"/v1/audit?actor_id={rep.id}", headers=admin.headers).json()
    assert by_actor["total"] == 4
    assert {e["actor_label"] for e in by_actor["items"]} == {rep.email}
    assert_error(client.get("/v1/audit", headers=analyst.headers), 403)
    # a manager sees the changes of their team's members only
    manager = make_user("manager")
    assert client.get(f"/v1/audit?actor_id={rep.id}", headers=manager.headers).json()["total"] == 0
    team = client.post("/v1/teams", json={"name": "T"}, headers=admin.headers).json()
    for member in (manager, rep):
        client.post(
            f"/v1/teams/{team['id']}/members", json={"user_id": member.id}, headers=admin.headers
        )
    assert client.get(f"/v1/audit?actor_id={rep.id}", headers=manager.headers).json()["total"] == 4
    assert_error(client.get("/v1/audit?record_id=x", headers=admin.headers), 400, "record_type")
