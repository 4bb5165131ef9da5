"""Bad identifiers and hostile shapes of the graph: no over-merging, no failed step."""

from __future__ import annotations

from typing import Any

from fastapi.testclient import TestClient
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from patron.collect.models import Event
from patron.identity.models import Identity, IdentityConflict, Merge, Person
from patron.pipeline import position
from tests.conftest import Lookup, Tracker


def drained(db: Session) -> bool:
    db.rollback()
    return position(db) == (db.scalar(select(func.max(Event.seq))) or 0)


def live_persons(db: Session) -> int:
    db.rollback()
    query = select(func.count()).select_from(Person).where(Person.merged_into.is_(None))
    return db.scalar(query) or 0


def test_odd_identifiers_stay_apart_and_never_stop_processing(
    tracker: Tracker, lookup: Lookup, db: Session, client: TestClient, admin_headers: dict[str, str]
) -> None:
    huge = "u" * 10_000
    long_email = f"{'j' * 10_000}@example.com"
    tracker.send(
        # 10 KB values where identifiers come from: too long to link anything.
        device("a-1", huge) | {"type": "identify", "traits": {"email": long_email}},
        device("a-2", huge) | {"type": "identify", "traits": {"email": long_email}},
        # Control characters make a different value, not the same one cleaned up.
        {"type": "identify", "userId": "ctrl\x01\x07", "anonymousId": "a-3"},
        {"type": "identify", "userId": "ctrl", "anonymousId": "a-4"},
        # An email without a domain and an impossible phone are traits, never links.
        {"type": "identify", "anonymousId": "a-5", "traits": {"email": "jane@", "phone": "+1 000"}},
        {"type": "identify", "anonymousId": "a-6", "traits": {"email": "jane@", "phone": "+1 000"}},
        # Identifiers of the wrong type.
        {"type": "identify", "anonymousId": "a-7", "traits": {"email": ["x@example.com"]}},
        {"type": "identify", "anonymousId": "a-8", "traits": {"email": {"x": "x@example.com"}}},
    )
    assert drained(db)
    ids = {lookup(anonymous_id=f"a-{n}")["id"] for n in range(1, 9)}
    assert len(ids) == 8  # nobody merged with anybody
    db.rollback()
    stored = select(func.count()).select_from(Identity)
    assert not db.scalar(stored.where(Identity.value.in_((huge, long_email))))
    assert lookup(anonymous_id="a-1")["traits"]["email"] == long_email
    assert lookup(user_id="ctrl\x01\x07")["id"] != lookup(user_id="ctrl")["id"]
    jane = lookup(anonymous_id="a-5")
    assert jane["traits"]["email"] == "jane@"
    assert jane["traits"]["phone"] == "+1 000"
    assert {i["kind"] for i in jane["identities"]} == {"anonymous_id"}
    too_long = client.get("/v1/persons", params={"email": long_email}, headers=admin_headers)
    assert too_long.status_code in (400, 404)
    assert "message" in too_long.json()


def test_a_kiosk_shared_by_10000_users_merges_none_of_them(
    tracker: Tracker, lookup: Lookup, db: Session
) -> None:
    for start in range(0, 10_000, 2_000):
        tracker.send(
            *(
                {"type": "identify", "anonymousId": "kiosk", "userId": f"visitor-{n}"}
                for n in range(start, start + 2_000)
            ),
            process=False,
        )
    tracker.process()
    assert drained(db)
    assert live_persons(db) == 10_000
    assert db.scalar(select(func.count()).select_from(Merge)) == 0
    owner = lookup(anonymous_id="kiosk")
    assert "user_id:visitor-0" in {f"{i['kind']}:{i['value']}" for i in owner["identities"]}
    assert lookup(user_id="visitor-9999")["id"] != owner["id"]
    db.rollback()
    conflicts = db.scalar(
        select(func.count())
        .select_from(IdentityConflict)
        .where(IdentityConflict.kind == "anonymous_id", IdentityConflict.value == "kiosk")
    )
    assert conflicts == 9_999


def device(anonymous_id: str, *device_ids: str, kind: str = "page") -> dict[str, Any]:
    external = [{"id": d, "type": "device_id", "collection": "users"} for d in device_ids]
    message: dict[str, Any] = {"type": kind, "anonymousId": anonymous_id}
    message["context"] = {"externalIds": external}
    if kind == "track":
        message["event"] = "Link"
    return message


def test_a_chain_of_1000_merges_resolves_and_splits_in_the_middle(
    tracker: Tracker,
    lookup: Lookup,
    db: Session,
    client: TestClient,
    admin_headers: dict[str, str],
) -> None:
    # 1,000 visitors, each on their own device; then each next visitor shows up with the
    # previous one's device id: every message links one more person to the chain.
    tracker.send(*(device(f"a-{n}", f"d-{n}") for n in range(1_000)), process=False)
    tracker.send(*(device(f"a-{n + 1}", f"d-{n}", kind="track") for n in range(999)), process=False)
    tracker.process()
    assert drained(db)
    assert live_persons(db) == 1
    first, last = lookup(anonymous_id="a-0"), lookup(anonymous_id="a-999")
    assert first["id"] == last["id"]
    assert len(first["identities"]) == 2_000
    db.rollback()
    middle = next(
        m
        for m in db.scalars(select(Merge))
        if "device_id:d-499" in m.evidence.get("identifiers", [])
    )
    undo = client.post(f"/v1/merges/{middle.id}/undo", json={}, headers=admin_headers)
    assert undo.status_code == 200, undo.text
    assert live_persons(db) == 2
    assert lookup(anonymous_id="a-0")["id"] == lookup(anonymous_id="a-499")["id"]
    assert lookup(anonymous_id="a-500")["id"] == lookup(anonymous_id="a-999")["id"]
    assert lookup(anonymous_id="a-0")["id"] != lookup(anonymous_id="a-999")["id"]
