"""Segment's official Python library, unmodified, sending to a real Patron server.

The client batches in a background thread, posts to ``{host}/v1/batch`` with the write key
as HTTP Basic, and reports failures only through ``on_error``: so the test counts every
message it queued, checks each is stored exactly once with the right fields, and checks
that ``on_error`` was never called.
"""

from __future__ import annotations

import threading
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from segment.analytics import Client

from tests.e2e.conftest import LiveServer

BULK = 10_000


class Failures:
    """What the client's ``on_error`` reported, from its consumer thread."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.errors: list[tuple[Exception, int]] = []

    def __call__(self, error: Exception, items: list[Any]) -> None:
        with self.lock:
            self.errors.append((error, len(items)))


def all_events(server: LiveServer) -> dict[str, dict[str, Any]]:
    """Every stored event by messageId, read through the debugger's keyset pagination."""
    events: dict[str, dict[str, Any]] = {}
    cursor: str | None = None
    pages = 0
    with httpx.Client(base_url=server.url, headers=server.admin_headers, timeout=30) as http:
        while True:
            params: dict[str, Any] = {"limit": 500}
            if cursor:
                params["cursor"] = cursor
            response = http.get("/v1/events", params=params)
            assert response.status_code == 200, response.text
            page = response.json()
            for item in page["items"]:
                assert item["message_id"] not in events, "an event was listed twice"
                events[item["message_id"]] = item
            pages += 1
            cursor = page["next_cursor"]
            if cursor is None:
                break
    assert pages == len(events) // 500 + 1
    assert page["total"] == len(events)
    return events


@pytest.mark.e2e
@pytest.mark.parametrize("gzip", [False, True], ids=["plain", "gzip"])
def test_official_client_delivers_every_message_once(live_server: LiveServer, gzip: bool) -> None:
    failures = Failures()
    client = Client(
        live_server.write_key,
        host=live_server.url,
        sync_mode=False,
        gzip=gzip,
        on_error=failures,
        max_queue_size=BULK + 100,
        max_retries=3,
    )
    when = datetime(2024, 5, 1, 12, 30, tzinfo=UTC)
    sent: dict[str, dict[str, Any]] = {}

    def queued(result: tuple[bool, dict[str, Any]]) -> dict[str, Any]:
        ok, message = result
        assert ok, "the client refused to queue a message"
        sent[message["messageId"]] = message
        return message

    identify = queued(
        client.identify(
            "user-1",
            {"email": "ada@example.com", "plan": "pro"},
            timestamp=when,
            anonymous_id="anon-1",
        )
    )
    track = queued(client.track("user-1", "Order Completed", {"revenue": 42.5, "currency": "EUR"}))
    page = queued(
        client.page("user-1", "Docs", "Getting Started", {"path": "/docs/start"}, timestamp=when)
    )
    screen = queued(client.screen(anonymous_id="anon-1", name="Settings", properties={"tab": 2}))
    group = queued(client.group("user-1", "acme", {"name": "Acme Inc", "employees": 120}))
    alias = queued(client.alias("anon-1", "user-1"))
    bulk = [
        queued(client.track(f"bulk-user-{i % 97}", "Bulk Event", {"i": i})) for i in range(BULK)
    ]
    client.flush()
    client.join()

    assert failures.errors == []
    events = all_events(live_server)
    assert set(events) == set(sent)
    assert len(events) == len(sent) == BULK + 6
    assert all(events[i]["type"] == m["type"] for i, m in sent.items())

    def stored(message: dict[str, Any]) -> dict[str, Any]:
        event = events[message["messageId"]]
        assert event["type"] == message["type"]
        assert event["payload"]["messageId"] == message["messageId"]
        assert event["payload"]["context"]["library"]["name"] == "analytics-python"
        assert "sentAt" in event["payload"]
        assert "receivedAt" in event["payload"]
        assert "writeKey" not in event["payload"]
        payload: dict[str, Any] = event["payload"]
        return payload

    assert stored(identify)["traits"] == {"email": "ada@example.com", "plan": "pro"}
    assert events[identify["messageId"]]["user_id"] == "user-1"
    assert events[identify["messageId"]]["anonymous_id"] == "anon-1"
    assert datetime.fromisoformat(stored(identify)["originalTimestamp"]) == when
    assert stored(track)["event"] == "Order Completed"
    assert stored(track)["properties"] == {"revenue": 42.5, "currency": "EUR"}
    assert events[track["messageId"]]["event"] == "Order Completed"
    assert stored(page)["name"] == "Getting Started"
    assert stored(page)["category"] == "Docs"
    assert stored(page)["properties"]["path"] == "/docs/start"
    assert events[page["messageId"]]["event"] == "Getting Started"
    assert stored(screen)["name"] == "Settings"
    assert events[screen["messageId"]]["anonymous_id"] == "anon-1"
    assert events[screen["messageId"]]["user_id"] is None
    assert stored(group)["groupId"] == "acme"
    assert stored(group)["traits"] == {"name": "Acme Inc", "employees": 120}
    assert stored(alias)["previousId"] == "anon-1"
    assert stored(alias)["userId"] == "user-1"
    seen = sorted(stored(m)["properties"]["i"] for m in bulk)
    assert seen == list(range(BULK))
    assert all(events[m["messageId"]]["event"] == "Bulk Event" for m in bulk)
    assert {events[m["messageId"]]["user_id"] for m in bulk} == {
        f"bulk-user-{n}" for n in range(97)
    }
