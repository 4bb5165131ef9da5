"""The demo shop loads through ingestion, once, and its admin can sign in."""

from __future__ import annotations

import json

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import distinct, func, select
from sqlalchemy.orm import Session
from typer.testing import CliRunner

from patron.auth.models import User
from patron.cli import app
from patron.collect.models import Event, Source
from patron.core.settings import Settings
from patron.crm.models import Activity, Deal, Pipeline
from patron.identity.models import Identity, Person


def test_demo_loads_a_realistic_shop_once(
    settings: Settings,
    monkeypatch: pytest.MonkeyPatch,
    runtime: object,
    db: Session,
    client: TestClient,
) -> None:
    monkeypatch.setenv("PATRON_DATABASE_URL", str(settings.database_url))
    monkeypatch.setenv("PATRON_DATA_DIR", str(settings.data_dir))
    first = CliRunner().invoke(app, ["demo", "--people", "120", "--json"])
    assert first.exit_code == 0, first.output
    summary = json.loads(first.stdout)
    assert summary["loaded_now"] is True
    assert summary["people"] == 120
    # The shop's own messages: not the CRM's changes, nor the web forms' submissions.
    shop = Event.source_id.in_(select(Source.id).where(Source.kind.not_in(("crm", "form"))))
    stored = db.scalar(select(func.count()).select_from(Event).where(shop))
    assert stored == summary["messages"] > 120
    types = set(db.scalars(select(Event.type).where(shop).distinct()))
    assert types == {"page", "track", "identify", "group"}
    names = set(db.scalars(select(Event.event).where(Event.type == "track", shop).distinct()))
    assert names == {
        "Product Viewed",
        "Product Added",
        "Cart Viewed",
        "Checkout Started",
        "Order Completed",
        "Signed Up",
        "Signed In",
    }
    # Somebody browsed on two devices and later identified on both.
    per_user = (
        select(Event.user_id, func.count(distinct(Event.anonymous_id)).label("devices"))
        .where(Event.user_id.is_not(None), Event.anonymous_id.is_not(None))
        .group_by(Event.user_id)
        .subquery()
    )
    assert db.scalar(select(func.max(per_user.c.devices))) >= 2
    # Identity resolution made one person of each customer, whatever the device or email.
    db.rollback()
    holders = select(Identity.person_id).where(Identity.kind == "user_id")
    customers = list(db.scalars(select(Person).where(Person.id.in_(holders))))
    assert all(p.merged_into is None for p in customers)
    # One person per customer, whatever the device or email: the web account (cust-N) and,
    # when record linkage merged them, the shop's loyalty card of the same customer (pos-N).
    ids_of: dict[object, set[str]] = {}
    for person_id, value in db.execute(
        select(Identity.person_id, Identity.value).where(
            Identity.kind.in_(("user_id", "loyalty_card"))
        )
    ):
        ids_of.setdefault(person_id, set()).add(value)
    assert all(len({v.split("-")[1] for v in values}) == 1 for values in ids_of.values())
    user_ids = set(db.scalars(select(Event.user_id).where(Event.user_id.is_not(None))))
    assert {v for values in ids_of.values() for v in values if v.startswith("cust-")} == user_ids
    assert any(v.startswith("pos-") for values in ids_of.values() for v in values)
    assert any(p.computed.get("lifetime_value", 0) > 0 for p in customers)
    devices = (
        select(Identity.person_id, func.count().label("n"))
        .where(Identity.kind == "anonymous_id")
        .group_by(Identity.person_id)
        .subquery()
    )
    assert db.scalar(select(func.max(devices.c.n))) >= 2
    signed_in = client.post(
        "/v1/session",
        json={"email": summary["admin_email"], "password": summary["admin_password"]},
    )
    assert signed_in.status_code == 200
    again = CliRunner().invoke(app, ["demo", "--people", "120", "--json"])
    assert again.exit_code == 0, again.output
    assert json.loads(again.stdout)["loaded_now"] is False
    assert json.loads(again.stdout)["write_key"] == summary["write_key"]
    db.rollback()
    assert db.scalar(select(func.count()).select_from(Event).where(shop)) == stored


def test_demo_has_a_sales_team_at_work(
    settings: Settings, monkeypatch: pytest.MonkeyPatch, runtime: object, db: Session
) -> None:
    monkeypatch.setenv("PATRON_DATABASE_URL", str(settings.database_url))
    monkeypatch.setenv("PATRON_DATA_DIR", str(settings.data_dir))
    loaded = CliRunner().invoke(app, ["demo", "--people", "60", "--json"])
    assert loaded.exit_code == 0, loaded.output
    db.rollback()
    roles = set(db.scalars(select(User.role)))
    assert {"admin", "manager", "sales", "support", "marketing"} <= roles
    assert db.scalar(select(func.count()).select_from(Pipeline)) == 2
    statuses = set(db.scalars(select(Deal.status)))
    assert "open" in statuses
    assert db.scalar(select(func.count()).select_from(Deal)) >= 5
    kinds = set(db.scalars(select(Activity.kind)))
    assert kinds == {"note", "call", "task"}
    owned = db.scalar(select(func.count()).select_from(Person).where(Person.owner_id.is_not(None)))
    assert owned is not None
    assert owned >= 20  # two thirds of the customers who signed up
    crm = select(Source.id).where(Source.kind == "crm")
    names = set(db.scalars(select(Event.event).where(Event.source_id.in_(crm)).distinct()))
    assert {"Contact Owner Changed", "Deal Created", "Note Added", "Call Logged"} <= names
