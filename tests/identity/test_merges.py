"""Merges are explained and reversible; a rebuild from the log reaches the live state."""

from __future__ import annotations

from typing import Any

from fastapi.testclient import TestClient
from sqlalchemy import select
from sqlalchemy.orm import Session

from patron.core.runtime import Runtime
from patron.identity.models import Merge, PersonEvent
from patron.pipeline import rebuild
from patron.profiles.models import ComputedState, TraitValue
from tests.conftest import Lookup, Tracker
from tests.identity.snapshots import snapshot


def two_customers(tracker: Tracker) -> None:
    tracker.send(
        {
            "type": "track",
            "anonymousId": "tab",
            "event": "Product Viewed",
            "context": {"traits": {"name": "Tablet user"}},
        },
        {"type": "page", "anonymousId": "tab", "name": "Shoes"},
        {"type": "identify", "userId": "u-9", "traits": {"email": "nine@example.com"}},
        {
            "type": "track",
            "userId": "u-9",
            "event": "Order Completed",
            "properties": {"revenue": 10},
        },
        {"type": "group", "userId": "u-9", "groupId": "g-1", "traits": {"name": "Nine Inc"}},
    )


def test_unmerge_gives_both_persons_back_exactly(
    tracker: Tracker,
    lookup: Lookup,
    db: Session,
    client: TestClient,
    admin_headers: dict[str, str],
) -> None:
    two_customers(tracker)
    before = snapshot(db)
    tablet, nine = lookup(anonymous_id="tab")["id"], lookup(user_id="u-9")["id"]
    tracker.send({"type": "identify", "userId": "u-9", "anonymousId": "tab"})
    merged = lookup(user_id="u-9")
    assert merged["id"] == tablet  # the older person survives
    assert merged["traits"]["name"] == "Tablet user"
    [merge] = merged["merges"]

    answer = client.post(f"/v1/merges/{merge['id']}/undo", json={}, headers=admin_headers)
    assert answer.status_code == 200, answer.text
    assert answer.json()["undone_at"] is not None

    after = snapshot(db)
    assert after[tablet] == before[tablet]  # the tablet visitor is exactly as before
    linking = db.scalar(select(PersonEvent.seq).order_by(PersonEvent.seq.desc()).limit(1))
    assert after[nine] == {**before[nine], "events": [*before[nine]["events"], linking]} | {
        "last_seen": after[nine]["last_seen"]
    }
    # The history shows the undone merge on both persons.
    assert lookup(anonymous_id="tab")["merges"][0]["undone_at"] is not None
    assert lookup(user_id="u-9")["merges"][0]["undone_at"] is not None

    # The same link sent again does not merge them: the unmerge is a decision.
    tracker.send({"type": "identify", "userId": "u-9", "anonymousId": "tab"})
    assert lookup(user_id="u-9")["id"] != lookup(anonymous_id="tab")["id"]
    conflicts = client.get("/v1/identity/conflicts", headers=admin_headers).json()
    assert {c["reason"] for c in conflicts["items"]} == {"separation"}


def test_unmerge_splits_what_came_through_the_merged_side(
    tracker: Tracker, lookup: Lookup, client: TestClient, admin_headers: dict[str, str]
) -> None:
    tracker.send(
        {"type": "identify", "userId": "main", "traits": {"email": "main@example.com"}},
        {"type": "track", "anonymousId": "phone", "event": "Opened"},
    )
    tracker.send({"type": "identify", "userId": "main", "anonymousId": "phone"})
    # Later a newsletter signup on the phone links an email to the merged person.
    tracker.send(
        {"type": "identify", "anonymousId": "phone", "traits": {"email": "side@example.com"}}
    )
    assert lookup(email="side@example.com")["id"] == lookup(user_id="main")["id"]
    merge_id = lookup(user_id="main")["merges"][0]["id"]
    answer = client.post(f"/v1/merges/{merge_id}/undo", json={}, headers=admin_headers)
    assert answer.status_code == 200, answer.text
    main, phone = lookup(user_id="main"), lookup(anonymous_id="phone")
    assert main["id"] != phone["id"]
    # Without the merge, the phone's later email would have gone to the phone's person.
    assert lookup(email="side@example.com")["id"] == phone["id"]
    assert phone["traits"] == {"email": "side@example.com"}


def test_unmerge_can_block_the_identifier_that_caused_it(
    tracker: Tracker, lookup: Lookup, client: TestClient, admin_headers: dict[str, str]
) -> None:
    tracker.send(
        {"type": "page", "anonymousId": "a", "name": "Rooms"},
        {"type": "page", "anonymousId": "b", "name": "Spa"},
        {"type": "identify", "anonymousId": "a", "traits": {"email": "front@hotel.com"}},
        {"type": "identify", "anonymousId": "b", "traits": {"email": "front@hotel.com"}},
    )
    merge = lookup(anonymous_id="a")["merges"][0]
    bad = client.post(
        f"/v1/merges/{merge['id']}/undo",
        json={"block": ["email:other@hotel.com"]},
        headers=admin_headers,
    )
    assert bad.status_code == 400
    assert bad.json()["field"] == "block"
    answer = client.post(
        f"/v1/merges/{merge['id']}/undo",
        json={"block": ["email:front@hotel.com"]},
        headers=admin_headers,
    )
    assert answer.status_code == 200, answer.text
    tracker.send({"type": "identify", "anonymousId": "c", "traits": {"email": "front@hotel.com"}})
    ids = {lookup(anonymous_id=x)["id"] for x in ("a", "b", "c")}
    assert len(ids) == 3
    again = client.post(f"/v1/merges/{merge['id']}/undo", json={}, headers=admin_headers)
    assert again.status_code == 409


def test_manual_merge_and_its_undo(
    tracker: Tracker,
    lookup: Lookup,
    db: Session,
    client: TestClient,
    admin_headers: dict[str, str],
    credentials: Any,
) -> None:
    tracker.send(
        {"type": "identify", "userId": "jo-1", "traits": {"name": "Jo"}},
        {"type": "identify", "userId": "jo-2", "traits": {"city": "Lyon"}},
    )
    before = snapshot(db)
    one, two = lookup(user_id="jo-1")["id"], lookup(user_id="jo-2")["id"]
    analyst = credentials.headers("analyst")
    denied = client.post(f"/v1/persons/{one}/merge", json={"other_id": two}, headers=analyst)
    assert denied.status_code == 403
    answer = client.post(f"/v1/persons/{one}/merge", json={"other_id": two}, headers=admin_headers)
    assert answer.status_code == 200, answer.text
    merge = answer.json()
    assert merge["reason"] == "manual"
    assert merge["evidence"]["actor"].startswith("admin-")
    person = lookup(user_id="jo-2")
    assert person["id"] == one
    assert person["traits"] == {"name": "Jo", "city": "Lyon"}
    same = client.post(f"/v1/persons/{one}/merge", json={"other_id": two}, headers=admin_headers)
    assert same.status_code == 409
    undo = client.post(f"/v1/merges/{merge['id']}/undo", json={}, headers=admin_headers)
    assert undo.status_code == 200, undo.text
    assert snapshot(db) == before


def test_rebuild_reaches_the_live_state(
    tracker: Tracker,
    lookup: Lookup,
    db: Session,
    runtime: Runtime,
    client: TestClient,
    admin_headers: dict[str, str],
) -> None:
    two_customers(tracker)
    window = {"name": "views_7d", "function": "count", "event": "Product Viewed", "window_days": 7}
    assert client.post("/v1/computed-traits", json=window, headers=admin_headers).status_code == 201
    tracker.send(
        {"type": "identify", "userId": "u-9", "anonymousId": "tab"},
        {"type": "identify", "anonymousId": "kiosk", "userId": "u-1"},
        {"type": "identify", "anonymousId": "kiosk", "userId": "u-2"},
        {"type": "alias", "previousId": "u-2", "userId": "u-2b"},
        {"type": "identify", "userId": "solo", "traits": {"email": "solo@example.com"}},
        {"type": "track", "anonymousId": "kiosk", "event": "Product Viewed"},
    )
    merge_id = lookup(user_id="u-9")["merges"][0]["id"]
    assert client.post(f"/v1/merges/{merge_id}/undo", json={}, headers=admin_headers).is_success
    solo, other = lookup(user_id="solo")["id"], lookup(user_id="u-1")["id"]
    manual = client.post(
        f"/v1/persons/{solo}/merge", json={"other_id": other}, headers=admin_headers
    )
    assert manual.is_success
    tracker.send({"type": "track", "userId": "u-1", "event": "Product Viewed"})
    live = snapshot(db)
    live_merges = sorted(
        (m.survivor_id, m.merged_id, m.reason, m.undone_at is None)
        for m in db.scalars(select(Merge))
    )

    result = rebuild(runtime.sessions, runtime.settings)
    assert result.events == 12
    assert snapshot(db) == live
    rebuilt_merges = sorted(
        (m.survivor_id, m.merged_id, m.reason, m.undone_at is None)
        for m in db.scalars(select(Merge))
    )
    assert rebuilt_merges == live_merges


def _derived_rows(db: Session) -> dict[str, Any]:
    db.rollback()
    values = db.execute(
        select(
            TraitValue.person_id,
            TraitValue.name,
            TraitValue.value_hash,
            TraitValue.count,
            TraitValue.last_seq,
        ).order_by(TraitValue.person_id, TraitValue.name, TraitValue.value_hash)
    )
    states = db.execute(
        select(ComputedState.person_id, ComputedState.trait_id, ComputedState.state).order_by(
            ComputedState.person_id, ComputedState.trait_id
        )
    )
    return {"values": [tuple(r) for r in values], "states": [tuple(r) for r in states]}


def test_a_chain_of_merges_in_one_batch_equals_one_merge_per_batch(
    tracker: Tracker, lookup: Lookup, db: Session, runtime: Runtime
) -> None:
    """A merges into B, then B into C, in one batch: the same as processing them apart."""
    order = {"type": "track", "event": "Order Completed"}
    tracker.send(
        {"type": "identify", "anonymousId": "c-anon", "traits": {"name": "Cee", "plan": "pro"}},
        {**order, "anonymousId": "c-anon", "properties": {"revenue": 1}},
        {"type": "identify", "userId": "ub", "traits": {"name": "Bee", "plan": "pro"}},
        {"type": "page", "userId": "ub", "name": "Pricing"},  # no order: no state of its own
        {"type": "identify", "anonymousId": "a", "traits": {"name": "Ay", "city": "Lyon"}},
        {**order, "anonymousId": "a", "properties": {"revenue": 100}},
        process=False,
    )
    tracker.send(
        {"type": "identify", "userId": "ub", "anonymousId": "a"},  # A into B
        {"type": "identify", "userId": "ub", "anonymousId": "c-anon"},  # B into C
        {"type": "identify", "userId": "ub", "traits": {"plan": "team"}},
    )
    person = lookup(user_id="ub")
    assert person["id"] == lookup(anonymous_id="a")["id"] == lookup(anonymous_id="c-anon")["id"]
    assert person["computed_traits"]["lifetime_value"] == 101
    assert person["traits"]["plan"] == "team"
    assert person["traits"]["city"] == "Lyon"
    assert len(person["merges"]) == 2
    one_batch, one_batch_rows = snapshot(db), _derived_rows(db)

    slow = runtime.settings.model_copy(update={"process_batch_size": 1})
    rebuild(runtime.sessions, slow)
    assert snapshot(db) == one_batch
    assert _derived_rows(db) == one_batch_rows
