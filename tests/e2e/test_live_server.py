"""The server process answers over real HTTP and processing runs inside it."""

from __future__ import annotations

import time

import httpx

from tests.e2e.conftest import LiveServer


def test_track_over_http_shows_in_debugger_and_catalog(live_server: LiveServer) -> None:
    sent = httpx.post(
        f"{live_server.url}/v1/track",
        auth=(live_server.write_key, ""),
        json={"userId": "u1", "event": "Signed Up"},
    )
    assert sent.status_code == 200
    events = httpx.get(f"{live_server.url}/v1/events", headers=live_server.admin_headers).json()
    assert events["total"] == 1
    assert events["items"][0]["event"] == "Signed Up"
    # The processor inside `serve` derives the catalog from the log within moments.
    deadline = time.monotonic() + 10
    catalog: list[dict[str, object]] = []
    while time.monotonic() < deadline and not catalog:
        source_id = events["items"][0]["source_id"]
        catalog = httpx.get(
            f"{live_server.url}/v1/sources/{source_id}/catalog", headers=live_server.admin_headers
        ).json()
        time.sleep(0.05)
    assert catalog[0]["name"] == "Signed Up"
    assert catalog[0]["count"] == 1
