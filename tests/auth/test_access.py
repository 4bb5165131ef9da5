"""Users, roles, API tokens and sign-in, through the real application."""

from __future__ import annotations

import uuid

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select
from sqlalchemy.orm import Session

from patron.auth import service
from patron.auth.models import ApiToken, AuditEntry, User
from patron.core.errors import Conflict, InvalidInput, Unauthenticated
from patron.core.ids import hash_secret
from tests.conftest import Credentials


def test_management_api_needs_a_credential(client: TestClient) -> None:
    response = client.get("/v1/events")
    assert response.status_code == 401
    assert response.json()["code"] == "unauthenticated"
    bad = client.get("/v1/events", headers={"Authorization": "Bearer pt_not_a_token"})
    assert bad.status_code == 401


@pytest.mark.parametrize(
    ("role", "read_events", "create_source"),
    [
        ("admin", 200, 201),
        ("manager", 200, 403),
        ("marketing", 200, 403),
        ("analyst", 200, 403),
        ("sales", 403, 403),
        ("support", 403, 403),
    ],
)
def test_roles_decide_what_a_token_may_do(
    client: TestClient, credentials: Credentials, role: str, read_events: int, create_source: int
) -> None:
    headers = credentials.headers(role)
    assert client.get("/v1/events", headers=headers).status_code == read_events
    created = client.post("/v1/sources", json={"name": f"s-{role}"}, headers=headers)
    assert created.status_code == create_source
    if create_source == 403:
        assert created.json()["code"] == "forbidden"


def test_tokens_are_stored_hashed_and_can_be_revoked(
    client: TestClient, admin_headers: dict[str, str], db: Session
) -> None:
    client.post(
        "/v1/users", json={"email": "ana@example.com", "role": "analyst"}, headers=admin_headers
    )
    made = client.post("/v1/tokens", json={"email": "ana@example.com"}, headers=admin_headers)
    assert made.status_code == 201
    secret = made.json()["token"]
    stored = db.scalars(select(ApiToken).where(ApiToken.id == uuid.UUID(made.json()["id"]))).one()
    assert stored.token_hash == hash_secret(secret)
    assert secret not in stored.token_hash
    headers = {"Authorization": f"Bearer {secret}"}
    assert client.get("/v1/me", headers=headers).json()["email"] == "ana@example.com"
    revoked = client.delete(f"/v1/tokens/{made.json()['id']}", headers=admin_headers)
    assert revoked.status_code == 204
    assert client.get("/v1/me", headers=headers).status_code == 401


def test_only_admins_make_tokens_for_others(client: TestClient, credentials: Credentials) -> None:
    analyst = credentials.headers("analyst", email="an@example.com")
    credentials.headers("sales", email="rep@example.com")
    own = client.post("/v1/tokens", json={"name": "mine"}, headers=analyst)
    assert own.status_code == 201
    other = client.post("/v1/tokens", json={"email": "rep@example.com"}, headers=analyst)
    assert other.status_code == 403


def test_sign_in_sets_a_session_cookie_that_authenticates(
    client: TestClient, admin_headers: dict[str, str]
) -> None:
    client.post(
        "/v1/users",
        json={"email": "Mia@Example.com", "role": "marketing", "password": "long enough pw"},
        headers=admin_headers,
    )
    wrong = client.post(
        "/v1/session", json={"email": "mia@example.com", "password": "nope nope nope"}
    )
    assert wrong.status_code == 401
    signed_in = client.post(
        "/v1/session", json={"email": "mia@example.com", "password": "long enough pw"}
    )
    assert signed_in.status_code == 200
    assert "patron_session" in signed_in.cookies
    assert client.get("/v1/me").json()["role"] == "marketing"
    assert client.delete("/v1/session").status_code == 204
    assert client.get("/v1/me").status_code == 401


def test_passwords_are_argon2_and_rules_hold(db: Session) -> None:
    user = service.create_user(db, email="x@example.com", role="sales", password="correct horse")
    assert user.password_hash is not None
    assert user.password_hash.startswith("$argon2")
    assert service.authenticate(db, email="X@example.com", password="correct horse").id == user.id
    with pytest.raises(Unauthenticated):
        service.authenticate(db, email="x@example.com", password="wrong horse!")
    with pytest.raises(InvalidInput, match="at least 10"):
        service.create_user(db, email="y@example.com", role="sales", password="short")
    with pytest.raises(InvalidInput, match="unknown role"):
        service.create_user(db, email="z@example.com", role="wizard")
    with pytest.raises(InvalidInput, match="email"):
        service.create_user(db, email="not an email", role="sales")
    with pytest.raises(Conflict):
        service.create_user(db, email="x@example.com", role="admin")


def test_user_api_validates_and_audits(
    client: TestClient, admin_headers: dict[str, str], db: Session
) -> None:
    bad_role = client.post(
        "/v1/users", json={"email": "a@example.com", "role": "god"}, headers=admin_headers
    )
    assert bad_role.status_code == 400
    assert bad_role.json()["field"] == "role"
    missing = client.post("/v1/users", json={"role": "sales"}, headers=admin_headers)
    assert missing.status_code == 422
    assert missing.json()["field"] == "email"
    made = client.post(
        "/v1/users", json={"email": "b@example.com", "role": "sales"}, headers=admin_headers
    )
    assert made.status_code == 201
    user = db.scalars(select(User).where(User.email == "b@example.com")).one()
    audit = db.scalars(select(AuditEntry).where(AuditEntry.record_id == str(user.id))).one()
    assert audit.action == "create"
    assert audit.after == {"email": "b@example.com", "role": "sales"}
