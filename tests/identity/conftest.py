"""Helpers for identity tests: send messages through the real API, process the log."""

from __future__ import annotations

import itertools
from collections.abc import Callable
from typing import Any

import pytest
from fastapi.testclient import TestClient

from patron.core.runtime import Runtime
from patron.pipeline import Processor
from tests.conftest import basic

_ids = itertools.count(1)


class Tracker:
    """Sends messages with the source's write key and runs the processor after each call."""

    def __init__(self, client: TestClient, write_key: str, runtime: Runtime) -> None:
        self.client, self.write_key, self.runtime = client, write_key, runtime

    def send(self, *messages: dict[str, Any], process: bool = True) -> None:
        batch = [{"messageId": f"m-{next(_ids)}", **m} for m in messages]
        answer = self.client.post("/v1/batch", auth=basic(self.write_key), json={"batch": batch})
        assert answer.status_code == 200, answer.text
        assert answer.json()["rejected"] == [], answer.text
        if process:
            self.process()

    def process(self) -> int:
        processor = Processor(self.runtime.sessions, settings=self.runtime.settings)
        return processor.drain()


@pytest.fixture
def tracker(client: TestClient, write_key: str, runtime: Runtime) -> Tracker:
    return Tracker(client, write_key, runtime)


Lookup = Callable[..., dict[str, Any]]


@pytest.fixture
def lookup(client: TestClient, admin_headers: dict[str, str]) -> Lookup:
    """Fetch a profile by one identifier (``lookup(email="...")``); asserts it exists."""

    def fetch(**query: str) -> dict[str, Any]:
        answer = client.get("/v1/persons", params=query, headers=admin_headers)
        assert answer.status_code == 200, answer.text
        body: dict[str, Any] = answer.json()
        return body

    return fetch
