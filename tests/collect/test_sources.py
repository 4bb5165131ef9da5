"""Sources and write keys: creation, rotation, disabling, and the management listing."""

from __future__ import annotations

from fastapi.testclient import TestClient
from sqlalchemy import select
from sqlalchemy.orm import Session

from patron.collect.models import Source
from patron.core.ids import hash_secret
from tests.conftest import Tracker, basic


def test_create_source_shows_key_once_and_stores_its_hash(
    client: TestClient, admin_headers: dict[str, str], db: Session
) -> None:
    made = client.post(
        "/v1/sources", json={"name": "Website", "kind": "browser"}, headers=admin_headers
    )
    assert made.status_code == 201
    key = made.json()["write_key"]
    stored = db.scalars(select(Source).where(Source.name == "Website")).one()
    assert stored.write_key_hash == hash_secret(key)
    listed = client.get("/v1/sources", headers=admin_headers).json()
    assert [s["name"] for s in listed] == ["Website"]
    assert "write_key" not in listed[0]
    duplicate = client.post("/v1/sources", json={"name": "Website"}, headers=admin_headers)
    assert duplicate.status_code == 409
    bad_kind = client.post("/v1/sources", json={"name": "X", "kind": "fax"}, headers=admin_headers)
    assert bad_kind.status_code == 400
    assert bad_kind.json()["field"] == "kind"


def test_rotating_the_key_retires_the_old_one(
    client: TestClient, admin_headers: dict[str, str], source: tuple[Source, str]
) -> None:
    old_key = source[1]
    message = {"userId": "u", "event": "E"}
    assert client.post("/v1/track", json=message, auth=basic(old_key)).status_code == 200
    rotated = client.post(f"/v1/sources/{source[0].id}/rotate-key", headers=admin_headers)
    new_key = rotated.json()["write_key"]
    assert new_key != old_key
    assert client.post("/v1/track", json=message, auth=basic(old_key)).status_code == 401
    assert client.post("/v1/track", json=message, auth=basic(new_key)).status_code == 200


def test_disabled_source_can_be_enabled_again(
    client: TestClient, admin_headers: dict[str, str], source: tuple[Source, str]
) -> None:
    url = f"/v1/sources/{source[0].id}"
    message = {"userId": "u", "event": "E"}
    client.patch(url, json={"enabled": False}, headers=admin_headers)
    assert client.post("/v1/track", json=message, auth=basic(source[1])).status_code == 403
    client.patch(url, json={"enabled": True}, headers=admin_headers)
    assert client.post("/v1/track", json=message, auth=basic(source[1])).status_code == 200
    bad_origin = client.patch(
        url, json={"allowed_origins": ["shop.example"]}, headers=admin_headers
    )
    assert bad_origin.status_code == 400
    assert (
        client.get(
            "/v1/sources/00000000-0000-0000-0000-000000000000", headers=admin_headers
        ).status_code
        == 404
    )


def test_event_debugger_filters_and_pages(
    client: TestClient, admin_headers: dict[str, str], write_key: str
) -> None:
    batch = [
        {"type": "track", "userId": f"u{i % 3}", "event": "Viewed" if i % 2 else "Bought"}
        for i in range(25)
    ] + [{"type": "page", "anonymousId": "anon-1", "name": "Home"}]
    client.post("/v1/batch", auth=basic(write_key), json={"batch": batch})
    everything = client.get("/v1/events", headers=admin_headers, params={"limit": 10}).json()
    assert everything["total"] == 26
    assert everything["items"][0]["type"] == "page"  # newest first
    seen, cursor = [], None
    while True:
        params = {"limit": 10, **({"cursor": cursor} if cursor else {})}
        page = client.get("/v1/events", headers=admin_headers, params=params).json()
        seen += [e["seq"] for e in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == sorted(seen, reverse=True)
    assert len(set(seen)) == 26
    bought = client.get(
        "/v1/events", headers=admin_headers, params={"event": "Bought", "userId": "u0"}
    ).json()
    assert bought["total"] == len([i for i in range(25) if i % 2 == 0 and i % 3 == 0])
    assert {e["user_id"] for e in bought["items"]} == {"u0"}
    anon = client.get("/v1/events", headers=admin_headers, params={"anonymousId": "anon-1"}).json()
    assert anon["total"] == 1
    by_source = client.get(
        "/v1/events", headers=admin_headers, params={"source": "Backend", "type": "page"}
    ).json()
    assert by_source["total"] == 1
    future = client.get(
        "/v1/events", headers=admin_headers, params={"since": "2999-01-01T00:00:00Z"}
    ).json()
    assert future["total"] == 0
    bad_cursor = client.get("/v1/events", headers=admin_headers, params={"cursor": "garbage!"})
    assert bad_cursor.status_code == 400
    assert bad_cursor.json()["field"] == "cursor"
    unknown_source = client.get("/v1/events", headers=admin_headers, params={"source": "Nope"})
    assert unknown_source.status_code == 404


def test_rejected_messages_are_listed_with_reasons(
    client: TestClient, admin_headers: dict[str, str], write_key: str
) -> None:
    client.post(
        "/v1/batch",
        auth=basic(write_key),
        json={"batch": [{"type": "track", "userId": "u", "messageId": "m-no-event"}]},
    )
    listed = client.get("/v1/rejected-messages", headers=admin_headers).json()
    assert listed["total"] == 1
    item = listed["items"][0]
    assert (item["code"], item["field"], item["message_id"]) == (
        "missing_field",
        "event",
        "m-no-event",
    )
    assert "m-no-event" in item["raw"]


def test_debugger_id_filters_span_processed_and_unprocessed_events(
    client: TestClient, admin_headers: dict[str, str], tracker: Tracker
) -> None:
    """The id filters read event_keys up to where processing got, and the log past it."""

    def sent(number: int) -> list[dict[str, object]]:
        return [
            {"type": "track", "userId": f"u{i % 2}", "anonymousId": "a", "event": f"E{number}"}
            for i in range(7)
        ]

    tracker.send(*sent(1))  # processed: in event_keys
    tracker.send(*sent(2), process=False)  # only in the log

    def pages(params: dict[str, str]) -> tuple[list[int], list[int]]:
        seqs, totals, cursor = [], [], None
        while True:
            query = {**params, "limit": "3", **({"cursor": cursor} if cursor else {})}
            page = client.get("/v1/events", headers=admin_headers, params=query).json()
            seqs += [e["seq"] for e in page["items"]]
            totals.append(page["total"])
            cursor = page["next_cursor"]
            if cursor is None:
                return seqs, totals

    everything, _ = pages({})
    u0, totals = pages({"userId": "u0"})
    assert len(u0) == 8
    assert set(totals) == {8}
    assert u0 == sorted(u0, reverse=True)
    assert set(u0) < set(everything)
    anonymous, totals = pages({"anonymousId": "a"})
    assert anonymous == everything
    assert set(totals) == {14}
    only_new, totals = pages({"userId": "u1", "event": "E2"})
    assert len(only_new) == 3
    assert set(totals) == {3}
    tracker.process()
    assert pages({"userId": "u0"}) == (u0, [8, 8, 8])
