"""Custom fields: admins define them, values are checked by type, lists filter and sort."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient

from tests.conftest import MakePerson, MakeUser, User, assert_error


def define(client: TestClient, admin: User, **body: Any) -> dict[str, Any]:
    answer = client.post("/v1/custom-fields", json=body, headers=admin.headers)
    assert answer.status_code == 201, answer.text
    made: dict[str, Any] = answer.json()
    return made


def company(client: TestClient, admin: User, name: str, **custom: Any) -> Any:
    return client.post(
        "/v1/companies", json={"name": name, "custom": custom}, headers=admin.headers
    )


def test_only_admins_define_fields_and_definitions_are_checked(
    client: TestClient, admin: User, make_user: MakeUser
) -> None:
    body = {"record_type": "company", "key": "tier", "type": "text"}
    manager = make_user("manager")
    assert_error(client.post("/v1/custom-fields", json=body, headers=manager.headers), 403)
    define(client, admin, **body)
    bad = [
        ({**body, "key": "tier"}, 409, "key"),
        ({**body, "key": "Bad Key"}, 400, "key"),
        ({**body, "key": "k2", "record_type": "planet"}, 400, "record_type"),
        ({**body, "key": "k3", "type": "colour"}, 400, "type"),
        ({**body, "key": "k4", "type": "single_select"}, 400, "options"),
        ({**body, "key": "k5", "type": "single_select", "options": ["a", "a"]}, 400, "options"),
        ({**body, "key": "k6", "type": "reference"}, 400, "reference_type"),
        ({**body, "key": "k7", "options": ["a"]}, 400, "options"),
    ]
    for payload, status, field in bad:
        answer = client.post("/v1/custom-fields", json=payload, headers=admin.headers)
        assert_error(answer, status, field)
    listed = client.get("/v1/custom-fields?record_type=company", headers=manager.headers).json()
    assert [f["key"] for f in listed] == ["tier"]


FIELDS = [
    ("n", "number", {}),
    ("arr", "money", {}),
    ("renewal", "date", {}),
    ("seen", "datetime", {}),
    ("plan", "single_select", {"options": ["free", "pro"]}),
    ("features", "multi_select", {"options": ["sso", "api"]}),
    ("active", "boolean", {}),
    ("site", "url", {}),
    ("billing", "email", {}),
    ("hotline", "phone", {}),
    ("parent", "reference", {"reference_type": "company"}),
]


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("n", "12"),
        ("n", True),
        ("arr", 10),
        ("arr", {"amount": "10", "currency": "EUR"}),
        ("arr", {"amount": 10, "currency": "EURO"}),
        ("renewal", "2026-13-01"),
        ("renewal", "9999-01-01"),
        ("seen", "yesterday"),
        ("plan", "enterprise"),
        ("features", "sso"),
        ("features", ["sso", "ftp"]),
        ("active", "yes"),
        ("site", "ftp://example.com"),
        ("site", "example"),
        ("billing", "not-an-email"),
        ("hotline", "12"),
        ("parent", "not-a-uuid"),
        ("parent", "7b0e1f64-8c36-4c4e-9d43-111111111111"),
    ],
)
def test_values_are_checked_by_type(client: TestClient, admin: User, key: str, value: Any) -> None:
    for name, kind, extra in FIELDS:
        define(client, admin, record_type="company", key=name, type=kind, **extra)
    assert_error(company(client, admin, "Bad", **{key: value}), 400, f"custom.{key}")
    assert client.get("/v1/companies", headers=admin.headers).json()["total"] == 0


def test_values_are_stored_normalised_and_filter_and_sort(client: TestClient, admin: User) -> None:
    for name, kind, extra in FIELDS:
        define(client, admin, record_type="company", key=name, type=kind, **extra)
    parent = company(client, admin, "Parent").json()
    made = company(
        client,
        admin,
        "Child",
        n=3,
        arr={"amount": 1200.5, "currency": "eur"},
        renewal="2027-01-31",
        seen="2026-05-01T10:00:00+02:00",
        plan="pro",
        features=["api", "sso", "api"],
        active=True,
        site="https://child.example",
        billing="Billing@Child.Example",
        hotline="+1 202-555-0143",
        parent=parent["id"],
    )
    assert made.status_code == 201, made.text
    custom = made.json()["custom"]
    assert custom["arr"] == {"amount": 1200.5, "currency": "EUR"}
    assert custom["seen"] == "2026-05-01T08:00:00.000000+00:00"
    assert custom["features"] == ["api", "sso"]
    assert custom["hotline"] == "+12025550143"
    assert custom["billing"] == "Billing@child.example"
    company(client, admin, "Other", n=10, plan="free", renewal="2026-06-01", active=False)
    h = admin.headers

    def names(query: str) -> list[str]:
        answer = client.get(f"/v1/companies?{query}", headers=h)
        assert answer.status_code == 200, answer.text
        return [c["name"] for c in answer.json()["items"]]

    assert names("filter=custom.n:gt:5") == ["Other"]
    assert names("filter=custom.plan:eq:pro") == ["Child"]
    assert names("filter=custom.features:has:sso") == ["Child"]
    assert names("filter=custom.active:eq:false") == ["Other"]
    assert names("filter=custom.renewal:lt:2027-01-01") == ["Other"]
    assert names("filter=custom.arr:gte:1000") == ["Child"]
    assert names("filter=custom.seen:gt:2026-05-01T09:00:00%2B02:00") == ["Child"]
    assert names("filter=custom.seen:gt:2026-05-01T11:00:00%2B02:00") == []
    assert names("sort=-custom.n") == ["Other", "Child", "Parent"]
    assert names("sort=custom.renewal") == ["Other", "Child", "Parent"]
    assert_error(client.get("/v1/companies?filter=custom.n:gt:lots", headers=h), 400, "filter")
    cleared = client.patch(
        f"/v1/companies/{made.json()['id']}",
        json={"custom": {"n": None, "plan": "free"}},
        headers=h,
    ).json()["custom"]
    assert "n" not in cleared
    assert cleared["plan"] == "free"
    assert cleared["renewal"] == "2027-01-31"


def test_a_reference_to_a_record_the_user_cannot_see_is_refused(
    client: TestClient, admin: User, make_user: MakeUser, make_person: MakePerson
) -> None:
    define(
        client,
        admin,
        record_type="company",
        key="champion",
        type="reference",
        reference_type="person",
    )
    rep = make_user("sales")
    hidden = make_person("hidden@example.com")
    answer = client.post(
        "/v1/companies",
        json={"name": "Rep Co", "custom": {"champion": hidden}},
        headers=rep.headers,
    )
    assert_error(answer, 400, "custom.champion")
    client.patch(f"/v1/contacts/{hidden}", json={"owner_id": rep.id}, headers=admin.headers)
    answer = client.post(
        "/v1/companies",
        json={"name": "Rep Co", "custom": {"champion": hidden}},
        headers=rep.headers,
    )
    assert answer.status_code == 201, answer.text
