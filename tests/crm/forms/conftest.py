"""Helpers for the forms tests: a form defined through the API, processing the log."""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import pytest
from fastapi.testclient import TestClient

from patron.core.runtime import Runtime
from patron.pipeline import Processor

DEMO_FORM: dict[str, Any] = {
    "name": "Request a demo",
    "slug": "demo",
    "description": "Tell us about your team.",
    "fields": [
        {"key": "email", "label": "Work email", "type": "email", "required": True,
         "identifier": "email"},
        {"key": "name", "label": "Name", "type": "text", "trait": "name"},
        {"key": "phone", "label": "Phone", "type": "phone", "identifier": "phone"},
        {"key": "company", "label": "Company", "type": "text", "trait": "company.name"},
        {"key": "size", "label": "Team size", "type": "select",
         "options": ["1-10", "11-50", "51+"], "trait": "team_size"},
        {"key": "message", "label": "Message", "type": "textarea", "max_length": 2000},
        {"key": "seats", "label": "Seats", "type": "number", "trait": "seats"},
        {"key": "plan", "type": "hidden", "default": "pro", "trait": "plan_interest"},
        {"key": "newsletter", "label": "Newsletter", "type": "checkbox", "trait": "wants_news"},
    ],
    "consents": [
        {"purpose": "marketing", "label": "Send me product news"},
        {"purpose": "terms", "label": "I accept the terms", "required": True},
    ],
    "success_message": "Thanks, we will be in touch.",
}  # fmt: skip

MakeForm = Callable[..., dict[str, Any]]


@pytest.fixture
def make_form(client: TestClient, admin_headers: dict[str, str]) -> MakeForm:
    """Define a form through the API (the demo form, with ``overrides``); returns it."""

    def make(**overrides: Any) -> dict[str, Any]:
        body = {**copy.deepcopy(DEMO_FORM), **overrides}
        answer = client.post("/v1/forms", json=body, headers=admin_headers)
        assert answer.status_code == 201, answer.text
        form: dict[str, Any] = answer.json()
        return form

    return make


def good_answers(email: str = "ana@example.com", **more: Any) -> dict[str, Any]:
    """A complete, valid set of answers to the demo form."""
    return {"email": email, "name": "Ana Silva", "consent.terms": "true", **more}


@pytest.fixture
def process(runtime: Runtime) -> Callable[[], int]:
    """Drain the event log through the real processor."""

    def drain() -> int:
        return Processor(runtime.sessions, settings=runtime.settings).drain()

    return drain
