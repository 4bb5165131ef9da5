"""The identity graph, live: one person per customer across anonymous ids, ids and emails."""

from __future__ import annotations

from typing import Any

from fastapi.testclient import TestClient
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from patron.identity.models import IdentityConflict, Person
from tests.conftest import Lookup, Tracker


def identity_set(profile: dict[str, Any]) -> set[str]:
    return {f"{i['kind']}:{i['value']}" for i in profile["identities"]}


def live_persons(db: Session) -> int:
    db.rollback()
    return db.scalar(select(func.count()).where(Person.merged_into.is_(None))) or 0


def test_identify_attaches_the_anonymous_history(tracker: Tracker, lookup: Lookup) -> None:
    tracker.send(
        {"type": "page", "anonymousId": "a-1", "name": "Home"},
        {"type": "track", "anonymousId": "a-1", "event": "Product Viewed"},
    )
    anonymous = lookup(anonymous_id="a-1")
    assert anonymous["timeline"]["total"] == 2
    tracker.send(
        {
            "type": "identify",
            "anonymousId": "a-1",
            "userId": "u-1",
            "traits": {"email": "Jane@Example.com", "name": "Jane"},
        }
    )
    person = lookup(email="jane@example.com")
    assert person["id"] == anonymous["id"]  # the anonymous person became the customer
    assert person["timeline"]["total"] == 3
    assert person["traits"] == {"email": "Jane@Example.com", "name": "Jane"}
    assert identity_set(person) == {
        "anonymous_id:a-1",
        "user_id:u-1",
        "email:jane@example.com",
    }
    assert lookup(user_id="u-1")["id"] == person["id"]


def test_a_second_device_merges_when_it_signs_in(
    tracker: Tracker, lookup: Lookup, db: Session
) -> None:
    tracker.send(
        {"type": "identify", "anonymousId": "laptop", "userId": "u-1"},
        {"type": "track", "anonymousId": "phone", "event": "Cart Viewed"},
        {"type": "track", "anonymousId": "phone", "event": "Product Added"},
    )
    assert live_persons(db) == 2
    tracker.send({"type": "identify", "anonymousId": "phone", "userId": "u-1"})
    assert live_persons(db) == 1
    person = lookup(user_id="u-1")
    assert person["timeline"]["total"] == 4
    [merge] = person["merges"]
    assert merge["reason"] == "message"
    assert merge["survivor_id"] == person["id"]
    assert sorted(merge["evidence"]["identifiers"]) == ["anonymous_id:phone", "user_id:u-1"]
    assert merge["merged_identities"] == ["anonymous_id:phone"]
    # The merged person's id still finds the survivor.
    assert merge["merged_id"] in person["merged_ids"]


def test_an_order_under_another_email_lands_on_the_same_person(
    tracker: Tracker, lookup: Lookup
) -> None:
    tracker.send({"type": "identify", "userId": "u-7", "traits": {"email": "home@example.com"}})
    tracker.send(
        {
            "type": "track",
            "userId": "u-7",
            "event": "Order Completed",
            "properties": {"revenue": 40},
            "context": {"traits": {"email": "work@example.com"}},
        }
    )
    person = lookup(email="work@example.com")
    assert person["id"] == lookup(email="home@example.com")["id"]
    assert person["computed_traits"]["lifetime_value"] == 40


def test_a_shared_device_does_not_merge_two_customers(
    tracker: Tracker, lookup: Lookup, db: Session
) -> None:
    tracker.send({"type": "identify", "anonymousId": "kiosk", "userId": "alice"})
    tracker.send({"type": "identify", "anonymousId": "kiosk", "userId": "bob"})
    alice, bob = lookup(user_id="alice"), lookup(user_id="bob")
    assert alice["id"] != bob["id"]
    assert "anonymous_id:kiosk" in identity_set(alice)
    assert "anonymous_id:kiosk" not in identity_set(bob)
    db.rollback()
    conflict = db.scalars(select(IdentityConflict)).one()
    assert (conflict.kind, conflict.value, conflict.reason) == ("anonymous_id", "kiosk", "limit")


def test_a_conflicting_email_is_dropped_before_it_merges_two_users(
    tracker: Tracker, lookup: Lookup
) -> None:
    tracker.send(
        {"type": "identify", "userId": "u-1", "traits": {"email": "one@example.com"}},
        {"type": "identify", "userId": "u-2", "traits": {"email": "two@example.com"}},
    )
    tracker.send({"type": "identify", "userId": "u-1", "traits": {"email": "two@example.com"}})
    one, two = lookup(user_id="u-1"), lookup(user_id="u-2")
    assert one["id"] != two["id"]
    assert "email:two@example.com" in identity_set(two)
    # The email still shows as a trait of the message's person: only linking was refused.
    assert one["traits"]["email"] == "two@example.com"


def test_a_person_merged_by_decision_keeps_linking_within_what_it_holds(
    tracker: Tracker,
    lookup: Lookup,
    client: TestClient,
    admin_headers: dict[str, str],
) -> None:
    tracker.send(
        {"type": "identify", "userId": "web-1", "traits": {"email": "a@example.com"}},
        {"type": "identify", "userId": "shop-1", "traits": {"email": "b@example.com"}},
        {"type": "page", "anonymousId": "phone-browser", "name": "Home"},
    )
    web, shop = lookup(user_id="web-1"), lookup(user_id="shop-1")
    merged = client.post(
        f"/v1/persons/{web['id']}/merge", json={"other_id": shop["id"]}, headers=admin_headers
    )
    assert merged.status_code == 200, merged.text
    # Two user ids by decision, past the limit of one: an anonymous history still attaches.
    tracker.send({"type": "identify", "userId": "shop-1", "anonymousId": "phone-browser"})
    person = lookup(user_id="web-1")
    assert lookup(anonymous_id="phone-browser")["id"] == person["id"]
    # A third user id would add to what the person holds: refused as before.
    tracker.send({"type": "identify", "userId": "other-9", "anonymousId": "phone-browser"})
    assert lookup(user_id="other-9")["id"] != person["id"]
    assert "user_id:other-9" not in identity_set(lookup(user_id="web-1"))


def test_alias_merges_the_previous_id_into_the_user(tracker: Tracker, lookup: Lookup) -> None:
    tracker.send(
        {"type": "track", "anonymousId": "anon-9", "event": "Signed Up"},
        {"type": "identify", "userId": "old-id", "traits": {"plan": "free"}},
    )
    tracker.send({"type": "alias", "previousId": "anon-9", "userId": "old-id"})
    tracker.send({"type": "alias", "previousId": "old-id", "userId": "new-id"})
    person = lookup(user_id="new-id")
    assert person["id"] == lookup(anonymous_id="anon-9")["id"] == lookup(user_id="old-id")["id"]
    assert {"user_id:old-id", "user_id:new-id"} <= identity_set(person)
    assert {m["reason"] for m in person["merges"]} <= {"alias"}


def test_blocked_placeholder_values_never_link(
    tracker: Tracker, db: Session, client: TestClient, admin_headers: dict[str, str]
) -> None:
    tracker.send(
        {"type": "identify", "userId": "p-1", "anonymousId": "undefined"},
        {"type": "identify", "userId": "p-2", "anonymousId": "undefined"},
        {"type": "identify", "userId": "p-3", "traits": {"email": "noreply@shop.com"}},
        {"type": "identify", "userId": "p-4", "traits": {"email": "noreply@shop.com"}},
    )
    assert live_persons(db) == 4
    missing = client.get("/v1/persons", params={"anonymous_id": "undefined"}, headers=admin_headers)
    assert missing.status_code == 404


def test_emails_and_phones_match_in_any_spelling(tracker: Tracker, lookup: Lookup) -> None:
    tracker.send(
        {"type": "identify", "anonymousId": "d1", "traits": {"email": " Sam@Example.COM "}},
        {"type": "identify", "anonymousId": "d2", "traits": {"email": "sam@example.com"}},
        {"type": "identify", "anonymousId": "d3", "traits": {"phone": "(415) 555-2671"}},
        {"type": "identify", "anonymousId": "d4", "traits": {"phone": "+1 415 555 2671"}},
    )
    assert lookup(anonymous_id="d1")["id"] == lookup(anonymous_id="d2")["id"]
    assert lookup(anonymous_id="d3")["id"] == lookup(phone="4155552671")["id"]
    assert lookup(anonymous_id="d4")["id"] == lookup(anonymous_id="d3")["id"]


def test_an_invalid_email_stays_a_trait_but_does_not_match(
    tracker: Tracker, lookup: Lookup
) -> None:
    tracker.send(
        {"type": "identify", "userId": "x-1", "traits": {"email": "not an email"}},
        {"type": "identify", "userId": "x-2", "traits": {"email": "not an email"}},
    )
    one = lookup(user_id="x-1")
    assert one["traits"]["email"] == "not an email"
    assert one["id"] != lookup(user_id="x-2")["id"]
    assert not any(i["kind"] == "email" for i in one["identities"])


def test_external_ids_and_declared_trait_kinds_link_persons(
    tracker: Tracker, lookup: Lookup, client: TestClient, admin_headers: dict[str, str]
) -> None:
    rule = {"max_per_person": 1, "priority": 15, "trait": "loyaltyNumber"}
    answer = client.put("/v1/identity/rules/loyalty", json=rule, headers=admin_headers)
    assert answer.status_code == 200, answer.text
    tracker.send(
        {"type": "identify", "anonymousId": "pos-1", "traits": {"loyaltyNumber": "L-55"}},
        {
            "type": "track",
            "anonymousId": "web-1",
            "event": "Order Completed",
            "context": {"externalIds": [{"id": "cus_9", "type": "stripe_id"}]},
        },
        {
            "type": "identify",
            "anonymousId": "app-1",
            "traits": {"loyaltyNumber": "L-55"},
            "context": {"externalIds": [{"id": "cus_9", "type": "stripe_id"}]},
        },
    )
    person = lookup(kind="loyalty", value="L-55")
    assert person["id"] == lookup(kind="stripe_id", value="cus_9")["id"]
    assert {"anonymous_id:pos-1", "anonymous_id:web-1", "anonymous_id:app-1"} <= identity_set(
        person
    )


def test_a_super_node_is_blocked_and_listed_for_review(
    tracker: Tracker, db: Session, client: TestClient, admin_headers: dict[str, str]
) -> None:
    limit = tracker.runtime.settings.supernode_limit
    # Many anonymous visitors all carry the same "device" id (a proxy, a shared tablet).
    tracker.send(*({"type": "track", "anonymousId": f"v-{n}", "event": "Seen"} for n in range(30)))
    shared = {"externalIds": [{"id": "shared-device", "type": "device_id"}]}
    tracker.send(
        *(
            {"type": "track", "anonymousId": f"v-{n}", "event": "Seen", "context": shared}
            for n in range(30)
        )
    )
    db.rollback()
    sizes = [
        n
        for (n,) in db.execute(
            select(func.count()).select_from(Person).group_by(Person.merged_into)
        )
    ]
    assert live_persons(db) > 1
    assert max(sizes) <= limit + 1
    review = client.get(
        "/v1/identity/blocked", params={"status": "review"}, headers=admin_headers
    ).json()
    assert [(b["kind"], b["pattern"], b["origin"]) for b in review] == [
        ("device_id", "shared-device", "supernode")
    ]


def test_group_links_the_person_to_a_company(tracker: Tracker, lookup: Lookup) -> None:
    tracker.send(
        {"type": "identify", "userId": "u-5", "traits": {"email": "ceo@acme.com"}},
        {
            "type": "group",
            "userId": "u-5",
            "groupId": "acme",
            "traits": {"name": "Acme", "industry": "Retail"},
            "context": {"traits": {"title": "CEO"}},
        },
        {"type": "group", "userId": "u-5", "groupId": "acme", "traits": {"employees": 40}},
    )
    [company] = lookup(user_id="u-5")["companies"]
    assert company["name"] == "Acme"
    assert company["role"] == "CEO"
    assert company["traits"] == {"name": "Acme", "industry": "Retail", "employees": 40}
