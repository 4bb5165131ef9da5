"""Traits with lineage and survivorship, computed traits, the profile API and its errors."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient

from patron.collect import service as collect_service
from patron.core.runtime import Runtime
from patron.profiles.computed import refresh_windowed
from tests.conftest import Lookup, Tracker, basic


def at(days_ago: float) -> str:
    return (datetime.now(UTC) - timedelta(days=days_ago)).isoformat()


def put_rule(client: TestClient, headers: dict[str, str], name: str, **body: Any) -> None:
    answer = client.put(f"/v1/traits/rules/{name}", json=body, headers=headers)
    assert answer.status_code == 200, answer.text


def test_most_recent_wins_by_default_and_lineage_keeps_every_value(
    tracker: Tracker, client: TestClient, admin_headers: dict[str, str], lookup: Lookup
) -> None:
    tracker.send(
        {"type": "identify", "userId": "u", "traits": {"city": "Paris"}, "timestamp": at(3)},
        {"type": "identify", "userId": "u", "traits": {"city": "Berlin"}, "timestamp": at(1)},
        # Arrives last but happened earlier: time, not arrival, decides.
        {"type": "identify", "userId": "u", "traits": {"city": "Rome"}, "timestamp": at(2)},
    )
    person = lookup(user_id="u")
    assert person["traits"]["city"] == "Berlin"
    full = client.get(f"/v1/persons/{person['id']}?lineage=true", headers=admin_headers).json()
    city = full["trait_lineage"]["city"]
    assert city["rule"] == "most_recent"
    assert [v["value"] for v in city["values"]] == ["Berlin", "Rome", "Paris"]
    assert all(v["source_id"] for v in city["values"])


def test_each_survivorship_rule(
    tracker: Tracker,
    client: TestClient,
    admin_headers: dict[str, str],
    lookup: Lookup,
    runtime: Runtime,
) -> None:
    with runtime.sessions() as session:
        _, crm_key = collect_service.create_source(session, name="CRM")
        session.commit()
    tracker.send(
        {
            "type": "identify",
            "userId": "u",
            "traits": {"plan": "free", "tier": "a"},
            "timestamp": at(5),
        },
        {
            "type": "identify",
            "userId": "u",
            "traits": {"plan": "pro", "tier": "b"},
            "timestamp": at(4),
        },
        {
            "type": "identify",
            "userId": "u",
            "traits": {"tier": "b", "nick": "Al"},
            "timestamp": at(3),
        },
        {"type": "identify", "userId": "u", "traits": {"nick": ""}, "timestamp": at(2)},
    )
    crm = {"type": "identify", "userId": "u", "traits": {"owner": "Dana"}, "timestamp": at(6)}
    answer = client.post("/v1/batch", auth=basic(crm_key), json={"batch": [crm]})
    assert answer.status_code == 200
    tracker.send(
        {"type": "identify", "userId": "u", "traits": {"owner": "web"}, "timestamp": at(1)}
    )
    assert lookup(user_id="u")["traits"] == {
        "plan": "pro",
        "tier": "b",
        "nick": "",
        "owner": "web",
    }
    put_rule(client, admin_headers, "plan", rule="first_seen")
    put_rule(client, admin_headers, "tier", rule="most_frequent")
    put_rule(client, admin_headers, "nick", rule="non_empty")
    put_rule(client, admin_headers, "owner", rule="source_priority", source_priority=["CRM"])
    assert lookup(user_id="u")["traits"] == {
        "plan": "free",
        "tier": "b",
        "nick": "Al",
        "owner": "Dana",
    }
    rules = client.get("/v1/traits/rules", headers=admin_headers).json()
    assert {r["name"]: r["rule"] for r in rules}["owner"] == "source_priority"


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"rule": "loudest"}, "rule"),
        ({"rule": "source_priority"}, "source_priority"),
        ({"rule": "source_priority", "source_priority": ["Nope"]}, "source_priority"),
    ],
)
def test_bad_survivorship_rules_are_refused(
    client: TestClient, admin_headers: dict[str, str], body: dict[str, Any], field: str
) -> None:
    answer = client.put("/v1/traits/rules/plan", json=body, headers=admin_headers)
    assert answer.status_code == 400
    assert answer.json()["field"] == field


def test_computed_traits_update_as_events_arrive(
    tracker: Tracker, client: TestClient, admin_headers: dict[str, str], lookup: Lookup
) -> None:
    tracker.send(
        {"type": "track", "userId": "u", "event": "Product Viewed", "properties": {"sku": "A"}},
        {"type": "track", "userId": "u", "event": "Product Viewed", "properties": {"sku": "B"}},
        {
            "type": "track",
            "userId": "u",
            "event": "Order Completed",
            "properties": {"revenue": 30.5},
            "timestamp": at(40),
        },
    )
    definitions = [
        {"name": "views", "function": "count", "event": "Product Viewed"},
        {"name": "skus", "function": "unique_count", "event": "Product Viewed", "property": "sku"},
        {
            "name": "fav_sku",
            "function": "most_frequent",
            "event": "Product Viewed",
            "property": "sku",
        },
        {"name": "last_sku", "function": "last", "event": "Product Viewed", "property": "sku"},
        {"name": "biggest", "function": "max", "event": "Order Completed", "property": "revenue"},
        {"name": "orders_30d", "function": "count", "event": "Order Completed", "window_days": 30},
    ]
    for body in definitions:
        answer = client.post("/v1/computed-traits", json=body, headers=admin_headers)
        assert answer.status_code == 201, answer.text
    # Defined after the events: computed from the log at once.
    computed = lookup(user_id="u")["computed_traits"]
    assert computed == {
        "lifetime_value": 30.5,
        "views": 2,
        "skus": 2,
        "fav_sku": "B",
        "last_sku": "B",
        "biggest": 30.5,
        "orders_30d": 0,
    }
    tracker.send(
        {"type": "track", "userId": "u", "event": "Product Viewed", "properties": {"sku": "A"}},
        {
            "type": "track",
            "userId": "u",
            "event": "Order Completed",
            "properties": {"revenue": "12"},
        },
    )
    computed = lookup(user_id="u")["computed_traits"]
    assert computed["views"] == 3
    assert computed["fav_sku"] == "A"
    assert computed["last_sku"] == "A"
    assert computed["lifetime_value"] == 42.5
    assert computed["orders_30d"] == 1


def test_computed_traits_combine_when_persons_merge(tracker: Tracker, lookup: Lookup) -> None:
    order = {"type": "track", "event": "Order Completed", "properties": {"revenue": 5}}
    tracker.send({**order, "anonymousId": "a"}, {**order, "userId": "u"})
    tracker.send({"type": "identify", "userId": "u", "anonymousId": "a"})
    person = lookup(user_id="u")
    assert person["computed_traits"]["lifetime_value"] == 10
    assert person["first_seen"] is not None


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"name": "bad name", "function": "count"}, "name"),
        ({"name": "x", "function": "median"}, "function"),
        ({"name": "x", "function": "sum", "event": "Order Completed"}, "property"),
        ({"name": "x", "function": "count", "window_days": 0}, "window_days"),
        ({"name": "lifetime_value", "function": "count"}, "name"),
    ],
)
def test_bad_computed_traits_are_refused(
    client: TestClient, admin_headers: dict[str, str], body: dict[str, Any], field: str
) -> None:
    answer = client.post("/v1/computed-traits", json=body, headers=admin_headers)
    assert answer.status_code in (400, 409), answer.text
    assert answer.json()["field"] == field


def test_built_in_computed_traits_cannot_be_deleted_but_others_can(
    client: TestClient, admin_headers: dict[str, str], tracker: Tracker, lookup: Lookup
) -> None:
    tracker.send({"type": "track", "userId": "u", "event": "Seen"})
    traits = {t["name"]: t for t in client.get("/v1/computed-traits", headers=admin_headers).json()}
    builtin = traits["lifetime_value"]
    assert builtin["builtin"] is True
    assert (
        client.delete(f"/v1/computed-traits/{builtin['id']}", headers=admin_headers).status_code
        == 409
    )
    made = client.post(
        "/v1/computed-traits", json={"name": "seen", "function": "count"}, headers=admin_headers
    ).json()
    assert lookup(user_id="u")["computed_traits"]["seen"] == 1
    assert (
        client.delete(f"/v1/computed-traits/{made['id']}", headers=admin_headers).status_code == 204
    )
    assert "seen" not in lookup(user_id="u")["computed_traits"]


def test_the_timeline_pages_newest_first(
    tracker: Tracker, client: TestClient, admin_headers: dict[str, str], lookup: Lookup
) -> None:
    tracker.send(*({"type": "track", "userId": "u", "event": f"E{n}"} for n in range(7)))
    tracker.send({"type": "page", "userId": "u", "name": "Home"})
    person_id = lookup(user_id="u")["id"]
    seen: list[str] = []
    cursor = None
    while True:
        params: dict[str, Any] = {"limit": 3, **({"cursor": cursor} if cursor else {})}
        page = client.get(f"/v1/persons/{person_id}/timeline", params=params, headers=admin_headers)
        body = page.json()
        assert body["total"] == 8
        seen += [e["event"] for e in body["items"]]
        cursor = body["next_cursor"]
        if cursor is None:
            break
    assert seen == ["Home", *(f"E{n}" for n in reversed(range(7)))]
    pages = client.get(
        f"/v1/persons/{person_id}/timeline", params={"type": "page"}, headers=admin_headers
    ).json()
    assert [e["event"] for e in pages["items"]] == ["Home"]


def test_lookup_errors_are_clear(client: TestClient, admin_headers: dict[str, str]) -> None:
    cases = [
        ({"email": "nobody@example.com"}, 404, "email"),
        ({"email": "not an email"}, 400, "email"),
        ({"email": "a@example.com", "user_id": "u"}, 400, "email"),
        ({"kind": "crm_id"}, 400, "kind"),
    ]
    for params, status, field in cases:
        answer = client.get("/v1/persons", params=params, headers=admin_headers)
        assert answer.status_code == status, (params, answer.text)
        assert answer.json()["field"] == field
    unknown = client.get("/v1/persons/5c1d3bb0-3a51-4f4c-b0a5-8e1f6d0e9a11", headers=admin_headers)
    assert unknown.status_code == 404
    assert client.get("/v1/persons/not-a-uuid", headers=admin_headers).status_code == 422
    assert client.get("/v1/persons").status_code == 401


def test_listing_persons_pages_through_everyone(
    tracker: Tracker, client: TestClient, admin_headers: dict[str, str]
) -> None:
    tracker.send(*({"type": "identify", "userId": f"p{n}"} for n in range(5)))
    first = client.get("/v1/persons", params={"limit": 3}, headers=admin_headers).json()
    assert first["total"] == 5
    rest = client.get(
        "/v1/persons", params={"limit": 3, "cursor": first["next_cursor"]}, headers=admin_headers
    ).json()
    ids = [p["id"] for p in first["items"] + rest["items"]]
    assert len(set(ids)) == 5
    assert rest["next_cursor"] is None


def test_identity_rules_and_blocks_validate_their_input(
    client: TestClient, admin_headers: dict[str, str], credentials: Any
) -> None:
    bad_rules = [
        ("Bad Kind", {"max_per_person": 1}, "kind"),
        ("crm_id", {"max_per_person": 0}, "max_per_person"),
        ("user_id", {"max_per_person": 1, "trait": "uid"}, "trait"),
    ]
    for kind, body, field in bad_rules:
        answer = client.put(f"/v1/identity/rules/{kind}", json=body, headers=admin_headers)
        assert answer.status_code == 400, answer.text
        assert answer.json()["field"] == field
    bad_regex = {"pattern": "([", "is_regex": True}
    answer = client.post("/v1/identity/blocked", json=bad_regex, headers=admin_headers)
    assert answer.status_code == 400
    assert answer.json()["field"] == "pattern"
    marketing = credentials.headers("marketing")
    denied = client.post("/v1/identity/blocked", json={"pattern": "x"}, headers=marketing)
    assert denied.status_code == 403
    rules = {r["kind"]: r for r in client.get("/v1/identity/rules", headers=admin_headers).json()}
    assert rules["user_id"]["max_per_person"] == 1
    assert rules["anonymous_id"]["max_per_person"] is None


def test_blocking_a_value_splits_the_persons_it_joined(
    tracker: Tracker, client: TestClient, admin_headers: dict[str, str], lookup: Lookup
) -> None:
    tracker.send(
        {"type": "page", "anonymousId": "x", "name": "A"},
        {"type": "page", "anonymousId": "y", "name": "B"},
    )
    tracker.send(
        {"type": "identify", "anonymousId": "x", "traits": {"phone": "+1 415 555 2671"}},
        {"type": "identify", "anonymousId": "y", "traits": {"phone": "+1 415 555 2671"}},
    )
    assert lookup(anonymous_id="x")["id"] == lookup(anonymous_id="y")["id"]
    block = {"pattern": "+14155552671", "kind": "phone", "reason": "front desk"}
    answer = client.post("/v1/identity/blocked", json=block, headers=admin_headers)
    assert answer.status_code == 201, answer.text
    assert lookup(anonymous_id="x")["id"] != lookup(anonymous_id="y")["id"]
    blocked_id = answer.json()["id"]
    assert (
        client.delete(f"/v1/identity/blocked/{blocked_id}", headers=admin_headers).status_code
        == 204
    )
    assert client.get("/v1/identity/blocked", headers=admin_headers).json() == []


def test_sliding_windows_move_on_for_persons_who_went_quiet(
    tracker: Tracker,
    client: TestClient,
    admin_headers: dict[str, str],
    lookup: Lookup,
    runtime: Runtime,
) -> None:
    body = {"name": "visits_7d", "function": "count", "event": "Visited", "window_days": 7}
    assert client.post("/v1/computed-traits", json=body, headers=admin_headers).status_code == 201
    tracker.send(
        {"type": "track", "userId": "u", "event": "Visited", "timestamp": at(5)},
        {"type": "track", "userId": "u", "event": "Visited", "timestamp": at(1)},
    )
    assert lookup(user_id="u")["computed_traits"]["visits_7d"] == 2
    with runtime.sessions() as session, session.begin():
        assert refresh_windowed(session, now=datetime.now(UTC) + timedelta(days=3)) == 1
    assert lookup(user_id="u")["computed_traits"]["visits_7d"] == 1
    with runtime.sessions() as session, session.begin():
        refresh_windowed(session, now=datetime.now(UTC) + timedelta(days=30))
    assert lookup(user_id="u")["computed_traits"]["visits_7d"] == 0
