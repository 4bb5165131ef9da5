"""The server process answers over real HTTP and processing runs inside it."""

from __future__ import annotations

import threading
import time

import httpx
import pytest

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


@pytest.mark.parametrize("live_server", [2], indirect=True, ids=["2-workers"])
def test_two_workers_accept_and_store_everything(live_server: LiveServer) -> None:
    """Concurrent batches spread over both workers; every acknowledged message is stored
    once and the one processor (in its own process) counts each exactly once."""
    sent: list[str] = []
    lock = threading.Lock()

    def post(worker: int) -> None:
        # A new connection per request, so the kernel spreads them over both workers.
        for number in range(10):
            ids = [f"w{worker}-{number}-{i}" for i in range(50)]
            batch = [
                {"type": "track", "userId": f"u{i % 5}", "event": "Tick", "messageId": m}
                for i, m in enumerate(ids)
            ]
            answer = httpx.post(
                f"{live_server.url}/v1/batch",
                auth=(live_server.write_key, ""),
                json={"batch": batch},
                timeout=30,
            )
            assert answer.status_code == 200, answer.text
            assert answer.json()["accepted"] == 50
            with lock:
                sent.extend(ids)

    threads = [threading.Thread(target=post, args=(n,)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(sent) == 2000
    headers = live_server.admin_headers
    events = httpx.get(f"{live_server.url}/v1/events", headers=headers, timeout=10).json()
    assert events["total"] == 2000
    source_id = events["items"][0]["source_id"]

    def counted() -> int:
        url = f"{live_server.url}/v1/sources/{source_id}/catalog"
        entries = httpx.get(url, headers=headers, timeout=10).json()
        return sum(int(e["count"]) for e in entries)

    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and counted() < 2000:
        time.sleep(0.1)
    assert counted() == 2000
