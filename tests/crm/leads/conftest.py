"""Helpers for the lead tests: persons with traits and past events, made through ingestion."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import select

from patron.auth.service import Actor
from patron.core.clock import utcnow
from patron.core.runtime import Runtime
from patron.crm import contacts
from patron.identity.models import Identity
from tests.conftest import Tracker

People = Callable[..., dict[str, str]]


@pytest.fixture
def people(tracker: Tracker, runtime: Runtime) -> People:
    """``people({"email": ..., "traits": {...}, "events": [(name, days_ago, props)],
    "seen_days_ago": 3}, ...)``: persons from identify and track calls (processed), by email.
    """

    def make(*specs: dict[str, Any]) -> dict[str, str]:
        messages: list[dict[str, Any]] = []
        now = utcnow()
        for spec in specs:
            user_id = f"u-{spec['email']}"
            seen = now - timedelta(days=spec.get("seen_days_ago", 0))
            messages.append(
                {
                    "type": "identify",
                    "userId": user_id,
                    "timestamp": seen.isoformat(),
                    "traits": {"email": spec["email"], **spec.get("traits", {})},
                }
            )
            for name, days_ago, properties in spec.get("events", []):
                at = now - timedelta(days=days_ago)
                messages.append(
                    {
                        "type": "track",
                        "userId": user_id,
                        "event": name,
                        "properties": properties,
                        "timestamp": at.isoformat(),
                    }
                )
        tracker.send(*messages)
        with runtime.readers() as session:
            rows = session.execute(
                select(Identity.value, Identity.person_id).where(
                    Identity.kind == "email",
                    Identity.value.in_([s["email"].lower() for s in specs]),
                )
            )
            return {value: str(person) for value, person in rows}

    return make


SetCrm = Callable[..., None]


@pytest.fixture
def set_crm(runtime: Runtime) -> SetCrm:
    """Change CRM fields of persons through the contact service, as the system."""

    def change(person_ids: list[str], actor: Actor | None = None, **changes: Any) -> None:
        with runtime.sessions() as session:
            for person_id in person_ids:
                contacts.update_contact(
                    session, actor=actor, person_id=uuid.UUID(person_id), changes=changes
                )
            session.commit()

    return change
