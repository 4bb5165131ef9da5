"""The Segment-compatible tracking API, through the real application."""

from __future__ import annotations

import gzip

import orjson
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from patron.collect import service
from patron.collect.models import Event, RejectedMessage, Source
from patron.core.errors import Forbidden
from patron.core.runtime import Runtime
from tests.conftest import basic


def count_events(db: Session) -> int:
    return db.scalar(select(func.count()).select_from(Event)) or 0


def test_track_is_stored_with_server_fields(
    client: TestClient, write_key: str, db: Session
) -> None:
    response = client.post(
        "/v1/track",
        auth=basic(write_key),
        json={"userId": "u1", "event": "Order Completed", "properties": {"revenue": 12.5}},
        headers={"User-Agent": "test-agent"},
    )
    assert response.status_code == 200, response.text
    assert response.json()["accepted"] == 1
    event = db.scalars(select(Event)).one()
    assert (event.type, event.event, event.user_id) == ("track", "Order Completed", "u1")
    assert event.payload["properties"] == {"revenue": 12.5}
    assert event.payload["context"]["userAgent"] == "test-agent"
    assert "ip" in event.payload["context"]
    assert "receivedAt" in event.payload
    assert "writeKey" not in event.payload


def test_every_short_path_maps_to_its_type(client: TestClient, write_key: str, db: Session) -> None:
    bodies = {
        "i": {"userId": "u", "traits": {"email": "a@example.com"}},
        "t": {"userId": "u", "event": "Clicked"},
        "p": {"anonymousId": "a", "name": "Home"},
        "s": {"anonymousId": "a", "name": "Settings"},
        "g": {"userId": "u", "groupId": "acme"},
        "a": {"userId": "u", "previousId": "a"},
    }
    for path, body in bodies.items():
        response = client.post(f"/v1/{path}", auth=basic(write_key), json=body)
        assert response.status_code == 200, (path, response.text)
    types = set(db.scalars(select(Event.type)))
    assert types == {"identify", "track", "page", "screen", "group", "alias"}


def test_write_key_from_body_and_query_and_text_plain(
    client: TestClient, write_key: str, db: Session
) -> None:
    body = orjson.dumps({"writeKey": write_key, "anonymousId": "a", "event": "E"})
    r1 = client.post("/v1/t", content=body, headers={"Content-Type": "text/plain"})
    r2 = client.post(f"/v1/track?writeKey={write_key}", json={"anonymousId": "a", "event": "E2"})
    assert (r1.status_code, r2.status_code) == (200, 200)
    assert count_events(db) == 2


def test_missing_unknown_and_disabled_keys(
    client: TestClient, write_key: str, admin_headers: dict[str, str], source: tuple
) -> None:
    message = {"userId": "u", "event": "E"}
    missing = client.post("/v1/track", json=message)
    assert missing.status_code == 401
    assert missing.json()["code"] == "missing_write_key"
    unknown = client.post("/v1/track", json=message, auth=("pk_nope", ""))
    assert unknown.status_code == 401
    # The server remembers the key it just accepted; disabling the source here forgets it.
    assert client.post("/v1/track", json=message, auth=basic(write_key)).status_code == 200
    client.patch(f"/v1/sources/{source[0].id}", json={"enabled": False}, headers=admin_headers)
    disabled = client.post("/v1/track", json=message, auth=basic(write_key))
    assert disabled.status_code == 403
    assert disabled.json()["code"] == "source_disabled"


def test_another_process_disabling_a_source_is_seen_within_the_key_window(
    client: TestClient, write_key: str, source: tuple, db: Session, monkeypatch: pytest.MonkeyPatch
) -> None:
    message = {"userId": "u", "event": "E"}
    monkeypatch.setattr(service, "WRITE_KEY_SECONDS", 3600.0)
    assert client.post("/v1/track", json=message, auth=basic(write_key)).status_code == 200
    # Another server process disables it: this one's mapper events never hear of it.
    db.execute(update(Source).where(Source.id == source[0].id).values(enabled=False))
    db.commit()
    within = client.post("/v1/track", json=message, auth=basic(write_key))
    assert within.status_code == 200, "the grant read a moment ago still holds"
    monkeypatch.setattr(service, "WRITE_KEY_SECONDS", 0.0)
    after = client.post("/v1/track", json=message, auth=basic(write_key))
    assert after.status_code == 403
    assert after.json()["code"] == "source_disabled"
    assert count_events(db) == 2


def test_batch_keeps_good_messages_and_reports_bad_ones(
    client: TestClient, write_key: str, db: Session
) -> None:
    batch = [
        {"type": "track", "userId": "u", "event": "Good", "messageId": "g1"},
        {"type": "track", "userId": "u"},
        {"type": "identify", "traits": {"x": 1}},
        {"type": "page", "anonymousId": "a", "properties": "nope"},
        {"userId": "u", "event": "no type"},
        {"type": "track", "userId": "u", "event": "Good", "messageId": "g2"},
    ]
    response = client.post("/v1/batch", auth=basic(write_key), json={"batch": batch})
    assert response.status_code == 200
    body = response.json()
    assert body["accepted"] == 2
    rejected = {r["index"]: r for r in body["rejected"]}
    assert rejected[1]["field"] == "event"
    assert rejected[2]["code"] == "missing_identity"
    assert rejected[3]["field"] == "properties"
    assert rejected[4]["field"] == "type"
    assert count_events(db) == 2
    assert db.scalar(select(func.count()).select_from(RejectedMessage)) == 4


def test_repeated_message_id_is_stored_once(
    client: TestClient, write_key: str, db: Session
) -> None:
    message = {"type": "track", "userId": "u", "event": "E", "messageId": "same"}
    first = client.post("/v1/batch", auth=basic(write_key), json={"batch": [message, message]})
    second = client.post("/v1/track", auth=basic(write_key), json=message)
    assert first.json()["duplicates"] == 1
    assert second.json()["duplicates"] == 1
    assert count_events(db) == 1


def test_batch_context_merges_and_message_wins(
    client: TestClient, write_key: str, db: Session
) -> None:
    client.post(
        "/v1/batch",
        auth=basic(write_key),
        json={
            "batch": [
                {"type": "track", "userId": "u", "event": "E", "context": {"locale": "fr-FR"}}
            ],
            "context": {"locale": "en-US", "library": {"name": "lib"}},
            "integrations": {"All": False},
        },
    )
    payload = db.scalars(select(Event.payload)).one()
    assert payload["context"]["locale"] == "fr-FR"
    assert payload["context"]["library"] == {"name": "lib"}
    assert payload["integrations"] == {"All": False}


def test_sent_at_corrects_client_clock_and_future_is_clamped(
    client: TestClient, write_key: str, db: Session
) -> None:
    # The client clock is 10 minutes fast: sentAt and timestamp both carry the skew.
    client.post(
        "/v1/track",
        auth=basic(write_key),
        json={
            "userId": "u",
            "event": "Skewed",
            "timestamp": "2030-01-01T00:00:00Z",
            "sentAt": "2030-01-01T00:00:30Z",
        },
    )
    client.post(
        "/v1/track",
        auth=basic(write_key),
        json={"userId": "u", "event": "Future", "timestamp": "2999-01-01T00:00:00Z"},
    )
    skewed = db.scalars(select(Event).where(Event.event == "Skewed")).one()
    received = skewed.payload["receivedAt"]
    from datetime import datetime

    delta = datetime.fromisoformat(received) - datetime.fromisoformat(skewed.payload["timestamp"])
    assert delta.total_seconds() == 30
    assert skewed.flags == []
    future = db.scalars(select(Event).where(Event.event == "Future")).one()
    assert future.flags == ["timestamp_clamped"]
    assert future.payload["timestamp"] == future.payload["receivedAt"]


def test_gzip_body_is_accepted(client: TestClient, write_key: str, db: Session) -> None:
    body = gzip.compress(orjson.dumps({"batch": [{"type": "track", "userId": "u", "event": "Z"}]}))
    response = client.post(
        "/v1/batch",
        auth=basic(write_key),
        content=body,
        headers={"Content-Encoding": "gzip", "Content-Type": "application/json"},
    )
    assert response.status_code == 200, response.text
    assert count_events(db) == 1


def test_cors_preflight_and_header(client: TestClient, write_key: str) -> None:
    preflight = client.options(
        "/v1/t",
        headers={"Origin": "https://shop.example", "Access-Control-Request-Method": "POST"},
    )
    assert preflight.status_code == 204
    assert preflight.headers["access-control-allow-origin"] == "*"
    posted = client.post(
        "/v1/t",
        json={"writeKey": write_key, "anonymousId": "a", "event": "E"},
        headers={"Origin": "https://shop.example"},
    )
    assert posted.headers["access-control-allow-origin"] == "*"
    # A refusal must be readable by the page too, or the browser hides why it failed.
    refused = client.post(
        "/v1/t",
        json={"writeKey": "pk_not_a_key", "anonymousId": "a", "event": "E"},
        headers={"Origin": "https://shop.example"},
    )
    assert refused.status_code == 401
    assert refused.headers["access-control-allow-origin"] == "*"
    assert refused.headers["access-control-allow-headers"].startswith("Content-Type")
    # The wildcard is for the tracking endpoints only, not the signed-in API.
    health = client.get("/healthz", headers={"Origin": "https://shop.example"})
    assert "access-control-allow-origin" not in health.headers


def test_allowed_origins_restrict_browser_sources(
    client: TestClient, write_key: str, admin_headers: dict[str, str], source: tuple
) -> None:
    client.patch(
        f"/v1/sources/{source[0].id}",
        json={"allowed_origins": ["https://shop.example"]},
        headers=admin_headers,
    )
    message = {"writeKey": write_key, "anonymousId": "a", "event": "E"}
    ok = client.post("/v1/t", json=message, headers={"Origin": "https://shop.example"})
    refused = client.post("/v1/t", json=message, headers={"Origin": "https://evil.example"})
    assert ok.status_code == 200
    assert refused.status_code == 403
    assert refused.json()["code"] == "origin_not_allowed"


def test_cdn_settings_point_analytics_js_at_patron(client: TestClient, write_key: str) -> None:
    response = client.get(f"/v1/projects/{write_key}/settings")
    assert response.status_code == 200
    segment = response.json()["integrations"]["Segment.io"]
    assert segment["apiKey"] == write_key
    assert segment["apiHost"] == "testserver/v1"
    # analytics.js fetches its settings from the page's origin, another site.
    assert response.headers["access-control-allow-origin"] == "*"
    assert client.get("/v1/projects/pk_unknown/settings").status_code == 401


def test_a_grant_read_while_a_change_commits_is_forgotten_with_the_commit(
    runtime: Runtime, source: tuple[Source, str]
) -> None:
    """A request that reads the source between the disabling flush and its commit sees it
    enabled and remembers that; the commit must forget it again."""
    key = source[1]
    with runtime.sessions() as session:
        row = session.get(Source, source[0].id)
        assert row is not None
        row.enabled = False
        session.flush()
        seen = service.grant_for_write_key(runtime.readers, key)  # the committed state
        assert seen.source_id == source[0].id
        session.commit()
    with pytest.raises(Forbidden):
        service.grant_for_write_key(runtime.readers, key)
