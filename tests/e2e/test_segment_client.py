"""Segment's official Python library, unmodified, pointed at a real Patron server."""

from __future__ import annotations

from typing import Any

import pytest
from segment.analytics import Client
from sqlalchemy import select
from sqlalchemy.orm import Session

from patron.collect.models import Event
from tests.e2e.conftest import LiveServer


def stored(db: Session) -> dict[str, Event]:
    db.rollback()  # a fresh snapshot: the server wrote after this session last read
    events = list(db.scalars(select(Event)))
    by_id = {e.message_id: e for e in events}
    assert len(by_id) == len(events), "a messageId was stored twice"
    return by_id


@pytest.mark.parametrize("gzip", [False, True], ids=["plain", "gzip"])
def test_official_client_messages_are_stored_exactly_once(
    live_server: LiveServer, db: Session, gzip: bool
) -> None:
    failures: list[Any] = []
    client = Client(
        live_server.write_key,
        host=live_server.url,
        gzip=gzip,
        max_queue_size=20_000,
        on_error=lambda error, batch: failures.append((error, len(batch))),
    )
    sent: dict[str, str] = {}

    def keep(result: tuple[bool, dict[str, Any]]) -> None:
        message = result[1]
        sent[message["messageId"]] = message["type"]

    keep(
        client.identify(
            "user-1", {"email": "ana@example.com", "plan": "pro"}, anonymous_id="anon-1"
        )
    )
    keep(client.track("user-1", "Order Completed", {"revenue": 42.5, "currency": "EUR"}))
    keep(client.page("user-1", "Docs", "Install", {"path": "/docs/install"}))
    keep(client.screen("user-1", "App", "Home"))
    keep(client.group("user-1", "acme", {"name": "Acme", "employees": 40}))
    keep(client.alias("anon-1", "user-1"))
    for i in range(10_000):
        keep(client.track(f"user-{i % 250}", "Product Viewed", {"product_id": f"sku-{i}"}))
    client.flush()
    client.join()
    assert failures == []
    assert len(sent) == 10_006

    events = stored(db)
    assert set(events) == set(sent)
    for message_id, kind in sent.items():
        assert events[message_id].type == kind
    identify = next(e for e in events.values() if e.type == "identify")
    assert identify.payload["traits"] == {"email": "ana@example.com", "plan": "pro"}
    assert identify.anonymous_id == "anon-1"
    assert identify.payload["context"]["library"]["name"] == "analytics-python"
    alias = next(e for e in events.values() if e.type == "alias")
    assert (alias.payload["previousId"], alias.user_id) == ("anon-1", "user-1")
    group = next(e for e in events.values() if e.type == "group")
    assert group.payload["groupId"] == "acme"
    page = next(e for e in events.values() if e.type == "page")
    assert page.payload["name"] == "Install"
    assert page.payload["category"] == "Docs"
    assert page.payload["properties"]["path"] == "/docs/install"
