"""CRM changes are track events on the person, through the event log like any message."""

from __future__ import annotations

from fastapi.testclient import TestClient
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from patron.collect.models import Event, Source
from patron.core.runtime import Runtime
from patron.identity.models import Person
from patron.pipeline import rebuild
from tests.conftest import MakePerson, MakeUser, Tracker, User


def crm_events(db: Session) -> list[Event]:
    db.rollback()  # a fresh snapshot: the app committed since
    return list(
        db.scalars(
            select(Event)
            .join(Source, Source.id == Event.source_id)
            .where(Source.kind == "crm")
            .order_by(Event.seq)
        )
    )


def test_owner_and_stage_changes_become_events_on_the_person(
    client: TestClient,
    admin: User,
    make_user: MakeUser,
    make_person: MakePerson,
    tracker: Tracker,
    db: Session,
) -> None:
    person = make_person("ann@example.com")
    rep = make_user("sales")
    answer = client.patch(
        f"/v1/contacts/{person}",
        json={"owner_id": rep.id, "lifecycle_stage": "lead", "tags": ["x"]},
        headers=admin.headers,
    )
    assert answer.status_code == 200
    logged = crm_events(db)
    assert [(e.type, e.event) for e in logged] == [
        ("track", "Contact Owner Changed"),
        ("track", "Lifecycle Stage Changed"),
    ]
    assert logged[0].payload["properties"] == {"previous_owner_id": None, "owner_id": rep.id}
    assert logged[1].payload["properties"] == {"previous_stage": None, "stage": "lead"}
    assert logged[1].payload["context"]["patron"]["actor"] == admin.email
    persons_before = db.scalar(select(func.count()).select_from(Person))
    tracker.process()
    timeline = client.get(f"/v1/persons/{person}/timeline?type=track", headers=admin.headers).json()
    assert [e["event"] for e in timeline["items"]] == [
        "Lifecycle Stage Changed",
        "Contact Owner Changed",
    ]
    assert db.scalar(select(func.count()).select_from(Person)) == persons_before
    # a second change of the same field says where it came from
    client.patch(
        f"/v1/contacts/{person}", json={"lifecycle_stage": "customer"}, headers=admin.headers
    )
    assert crm_events(db)[-1].payload["properties"] == {
        "previous_stage": "lead",
        "stage": "customer",
    }
    # an edit that changes nothing writes nothing
    client.patch(
        f"/v1/contacts/{person}", json={"lifecycle_stage": "customer"}, headers=admin.headers
    )
    assert len(crm_events(db)) == 3


def test_a_person_known_only_by_email_gets_its_event(
    client: TestClient, admin: User, tracker: Tracker, db: Session
) -> None:
    # "undefined" is a placeholder that never links: the person is known by email alone
    tracker.send(
        {"type": "identify", "anonymousId": "undefined", "traits": {"email": "e@example.com"}}
    )
    person = client.get("/v1/persons?email=e@example.com", headers=admin.headers).json()
    assert [i["kind"] for i in person["identities"]] == ["email"]
    client.patch(
        f"/v1/contacts/{person['id']}", json={"lead_status": "open"}, headers=admin.headers
    )
    event = crm_events(db)[-1]
    assert event.payload["anonymousId"] == f"patron-person:{person['id']}"
    assert event.payload["context"]["externalIds"][0] == {
        "id": "e@example.com",
        "type": "email",
        "collection": "users",
    }
    tracker.process()
    timeline = client.get(f"/v1/persons/{person['id']}/timeline?type=track", headers=admin.headers)
    assert [e["event"] for e in timeline.json()["items"]] == ["Lead Status Changed"]
    assert client.get("/v1/contacts", headers=admin.headers).json()["total"] == 1


def test_custom_field_edits_survive_a_rebuild_in_log_order(
    client: TestClient, admin: User, tracker: Tracker, runtime: Runtime, db: Session
) -> None:
    client.post(
        "/v1/custom-fields",
        json={"record_type": "person", "key": "seats", "type": "number"},
        headers=admin.headers,
    )
    tracker.send({"type": "identify", "userId": "u1", "context": {"crm": {"custom": {"seats": 4}}}})
    person = client.get("/v1/persons?user_id=u1", headers=admin.headers).json()["id"]
    client.patch(f"/v1/contacts/{person}", json={"custom": {"seats": 9}}, headers=admin.headers)
    assert crm_events(db)[-1].payload["properties"] == {"changes": {"seats": 9}}
    tracker.process()
    rebuild(runtime.sessions, runtime.settings)
    after = client.get(f"/v1/contacts/{person}", headers=admin.headers).json()
    assert after["custom"] == {"seats": 9}
