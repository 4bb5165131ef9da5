"""Fixtures of the workflow tests: rules made through the API, the runs run on demand, and a
real webhook receiver on localhost."""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from fastapi.testclient import TestClient

from patron.core.runtime import Runtime
from patron.core.settings import Settings
from patron.crm.workflows.engine import run_due
from patron.crm.workflows.jobs import run_until_idle
from tests.conftest import User


@dataclass
class Delivery:
    headers: dict[str, str]
    body: str


@dataclass
class Receiver:
    """An HTTP server that answers each POST with the next of ``statuses`` (then 200),
    after ``delay`` seconds, and keeps what it was sent."""

    statuses: list[int] = field(default_factory=list)
    delay: float = 0.0
    received: list[Delivery] = field(default_factory=list)
    url: str = ""

    def answer(self, headers: dict[str, str], body: str) -> int:
        self.received.append(Delivery(headers, body))
        time.sleep(self.delay)
        return self.statuses.pop(0) if self.statuses else 200


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    state = Receiver()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            length = int(self.headers.get("content-length", 0))
            body = self.rfile.read(length).decode()
            status = state.answer({k.lower(): v for k, v in self.headers.items()}, body)
            try:
                self.send_response(status)
                self.end_headers()
            except (BrokenPipeError, ConnectionResetError):
                pass  # the sender gave up waiting (the timeout test)

        def log_message(self, *_args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    state.url = f"http://127.0.0.1:{server.server_address[1]}/hook"
    yield state
    server.shutdown()
    server.server_close()


MakeRule = Callable[..., dict[str, Any]]
# The trigger most tests use: a person's lead status changes.
LEAD_STATUS = {"type": "field_changed", "record_type": "person", "field": "lead_status"}


@pytest.fixture
def make_rule(client: TestClient, admin: User) -> MakeRule:
    """Define a rule through the API as an admin; returns the answer (with the secret)."""

    def make(trigger: dict[str, Any], *actions: dict[str, Any], **extra: Any) -> dict[str, Any]:
        body = {"name": extra.pop("name", "Rule"), "trigger": trigger, "actions": list(actions)}
        answer = client.post("/v1/workflow-rules", json={**body, **extra}, headers=admin.headers)
        assert answer.status_code == 201, answer.text
        made: dict[str, Any] = answer.json()
        return made

    return make


Work = Callable[..., Counter[str]]


@pytest.fixture
def work(runtime: Runtime) -> Work:
    """Run the due runs once (``now`` moves the clock on, ``settings`` changes), or with
    ``until_idle=True`` until nothing is due."""

    def run(
        *, now: datetime | None = None, until_idle: bool = False, **settings: Any
    ) -> Counter[str]:
        chosen: Settings = runtime.settings.model_copy(update=settings)
        if until_idle:
            return run_until_idle(runtime.sessions, chosen)
        return run_due(runtime.sessions, chosen, now=now)

    return run


def runs(client: TestClient, user: User, **params: Any) -> list[dict[str, Any]]:
    answer = client.get("/v1/workflow-runs", params={"limit": 500, **params}, headers=user.headers)
    assert answer.status_code == 200, answer.text
    items: list[dict[str, Any]] = answer.json()["items"]
    return items


def patch_contact(client: TestClient, user: User, person: str, **changes: Any) -> None:
    answer = client.patch(f"/v1/contacts/{person}", json=changes, headers=user.headers)
    assert answer.status_code == 200, answer.text
