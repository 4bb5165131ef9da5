"""SIGKILL the server while its processor is merging persons: nothing is left half-merged.

The log is loaded in a few requests (processing runs behind ingestion, inside the
server). The server is killed while the processor is part-way through the log, in the
middle of a stream of merges, then started again and left to finish. What it derived
must equal what a rebuild from the log derives: a half-applied merge would leave
identities, events, traits or computed traits on the wrong person, or a person pointing
nowhere.
"""

from __future__ import annotations

import time
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from patron.collect.models import Event
from patron.core.runtime import Runtime
from patron.identity.models import Person
from patron.pipeline import position, rebuild
from tests.e2e.conftest import LiveServer
from tests.identity.snapshots import snapshot

pytestmark = pytest.mark.e2e
CHAIN = 600


def merge_heavy_log() -> list[dict[str, Any]]:
    """A chain of devices that each next message links, and customers who sign in on two
    devices and buy under a second email: hundreds of merges, traits and orders."""
    out: list[dict[str, Any]] = []
    for n in range(CHAIN):
        external = [{"id": f"d-{n}", "type": "device_id", "collection": "users"}]
        out.append({"type": "page", "anonymousId": f"a-{n}", "context": {"externalIds": external}})
    for n in range(CHAIN - 1):
        external = [{"id": f"d-{n}", "type": "device_id", "collection": "users"}]
        out.append(
            {
                "type": "track",
                "event": "Product Viewed",
                "anonymousId": f"a-{n + 1}",
                "context": {"externalIds": external},
            }
        )
    for n in range(300):
        out += [
            {"type": "page", "anonymousId": f"phone-{n}", "name": "Home"},
            {"type": "page", "anonymousId": f"laptop-{n}", "name": "Shoes"},
            {
                "type": "identify",
                "userId": f"c-{n}",
                "anonymousId": f"phone-{n}",
                "traits": {"email": f"c{n}@example.com", "name": f"Customer {n}"},
            },
            {"type": "identify", "userId": f"c-{n}", "anonymousId": f"laptop-{n}"},
            {
                "type": "track",
                "userId": f"c-{n}",
                "event": "Order Completed",
                "properties": {"revenue": n},
                "context": {"traits": {"email": f"work{n}@example.com"}},
            },
        ]
    return out


def processed(runtime: Runtime) -> tuple[int, int]:
    with runtime.readers() as db:
        return position(db), db.scalar(select(func.max(Event.seq))) or 0


def test_a_kill_mid_merge_leaves_what_a_rebuild_would_derive(
    live_server: LiveServer, runtime: Runtime, db: Session
) -> None:
    messages = merge_heavy_log()
    with httpx.Client(
        base_url=live_server.url, auth=(live_server.write_key, ""), timeout=60
    ) as http:
        for start in range(0, len(messages), 500):
            sent = http.post("/v1/batch", json={"batch": messages[start : start + 500]})
            assert sent.status_code == 200, sent.text
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        done, total = processed(runtime)
        if done >= total * 0.3:
            break
        time.sleep(0.02)
    done, total = processed(runtime)
    assert 0 < done < total, f"the processor should be part-way: {done} of {total}"
    live_server.kill()

    live_server.start()
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline and processed(runtime)[0] < total:
        time.sleep(0.1)
    assert processed(runtime) == (total, total)
    live_server.stop()

    live = snapshot(db)
    db.rollback()
    dangling = select(func.count()).select_from(Person).where(Person.merged_into.is_not(None))
    assert db.scalar(dangling) > CHAIN - 2  # the chain and the customers did merge
    rebuild(runtime.sessions, runtime.settings)
    assert snapshot(db) == live
