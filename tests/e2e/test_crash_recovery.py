"""SIGKILL the server in the middle of a load: what was answered 2xx survives, once.

Several threads post batches of 100 messages with unique ids. The server is killed while
they run, then started again. Every message of a request that got a 2xx must be stored
exactly once; requests that failed may or may not have landed (the answer can be lost
after the commit), but nothing is stored twice. The processor's cursor must resume where
it stopped, so the catalog's counts end up equal to the stored events per name.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

import httpx
import pytest
from sqlalchemy import func, select

from patron.collect.models import Event, Source
from patron.core.runtime import Runtime
from tests.e2e.conftest import LiveServer

THREADS = 4
BATCH = 100
NAMES = ("Page Viewed", "Product Added", "Order Completed")


@dataclass
class Load:
    """What the posting threads sent and which requests the server confirmed."""

    url: str
    write_key: str
    stop: threading.Event = field(default_factory=threading.Event)
    lock: threading.Lock = field(default_factory=threading.Lock)
    confirmed: list[list[str]] = field(default_factory=list)
    unconfirmed: list[list[str]] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)

    def post_until_stopped(self, worker: int) -> None:
        with httpx.Client(base_url=self.url, auth=(self.write_key, ""), timeout=30) as http:
            number = 0
            while not self.stop.is_set():
                ids = [f"crash-{worker}-{number}-{i}" for i in range(BATCH)]
                batch = [
                    {
                        "type": "track",
                        "userId": f"user-{worker}-{i % 7}",
                        "event": NAMES[(number + i) % len(NAMES)],
                        "messageId": message_id,
                        "properties": {"worker": worker, "batch": number, "i": i},
                    }
                    for i, message_id in enumerate(ids)
                ]
                number += 1
                try:
                    response = http.post("/v1/batch", json={"batch": batch})
                except httpx.HTTPError:
                    with self.lock:
                        self.unconfirmed.append(ids)
                    continue
                with self.lock:
                    if 200 <= response.status_code < 300:
                        self.confirmed.append(ids)
                        if response.json()["accepted"] != BATCH:
                            self.unexpected.append(response.text)
                    else:
                        self.unconfirmed.append(ids)
                        self.unexpected.append(f"{response.status_code} {response.text}")

    def confirmed_count(self) -> int:
        with self.lock:
            return len(self.confirmed)


def stored_ids(runtime: Runtime) -> Counter[str]:
    with runtime.readers() as session:
        return Counter(session.scalars(select(Event.message_id)))


def wait_for(condition: Callable[[], bool], timeout: float, interval: float = 0.05) -> None:
    """Poll ``condition`` until it is true or ``timeout`` seconds pass (the assert follows)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and not condition():
        time.sleep(interval)


@pytest.mark.e2e
@pytest.mark.parametrize("live_server", [1, 2], indirect=True, ids=["1-worker", "2-workers"])
def test_sigkill_mid_load_loses_no_confirmed_message(
    live_server: LiveServer, runtime: Runtime, source: tuple[Source, str]
) -> None:
    load = Load(live_server.url, live_server.write_key)
    threads = [
        threading.Thread(target=load.post_until_stopped, args=(n,), daemon=True)
        for n in range(THREADS)
    ]
    for thread in threads:
        thread.start()
    wait_for(lambda: load.confirmed_count() >= 30, timeout=120)
    assert load.confirmed_count() >= 30, "the load never got going"
    live_server.kill()  # mid-load: the threads still have requests in flight
    time.sleep(0.5)  # let the in-flight requests fail against the dead server
    load.stop.set()
    for thread in threads:
        thread.join(timeout=60)
    assert not any(t.is_alive() for t in threads)
    assert load.unexpected == []
    assert load.unconfirmed, "the kill should have cut some requests off"

    live_server.start()
    health = httpx.get(f"{live_server.url}/healthz", timeout=10)
    assert health.status_code == 200
    after = httpx.post(
        f"{live_server.url}/v1/track",
        auth=(live_server.write_key, ""),
        json={"userId": "after", "event": "After Restart", "messageId": "after-restart"},
        timeout=10,
    )
    assert after.status_code == 200, after.text

    stored = stored_ids(runtime)
    assert max(stored.values()) == 1, "a message was stored twice"
    confirmed = {i for ids in load.confirmed for i in ids}
    maybe = {i for ids in load.unconfirmed for i in ids}
    assert confirmed <= set(stored), f"{len(confirmed - set(stored))} confirmed messages lost"
    assert set(stored) <= confirmed | maybe | {"after-restart"}

    # The processor resumes from its cursor: eventually every event counted once.
    def per_name() -> Counter[str]:
        with runtime.readers() as session:
            rows = session.execute(select(Event.event, func.count()).group_by(Event.event))
            return Counter({name or "": count for name, count in rows})

    def catalog() -> Counter[str]:
        response = httpx.get(
            f"{live_server.url}/v1/sources/{source[0].id}/catalog",
            headers=live_server.admin_headers,
            timeout=10,
        )
        assert response.status_code == 200, response.text
        return Counter({entry["name"]: entry["count"] for entry in response.json()})

    expected = per_name()
    assert sum(expected.values()) == len(stored)
    wait_for(lambda: catalog() == expected, timeout=60, interval=0.2)
    assert catalog() == expected
