"""Activities, my tasks, reminders, inbound email and the timeline."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient

from patron.core.clock import utcnow
from tests.conftest import MakePerson, MakeUser, Tracker, User, assert_error


def log(client: TestClient, user: User, **body: Any) -> Any:
    return client.post("/v1/activities", json=body, headers=user.headers)


@pytest.fixture
def rep(make_user: MakeUser) -> User:
    return make_user("sales")


@pytest.fixture
def ann(client: TestClient, admin: User, rep: User, make_person: MakePerson) -> str:
    person = make_person("ann@example.com", name="Ann Lee")
    client.patch(f"/v1/contacts/{person}", json={"owner_id": rep.id}, headers=admin.headers)
    return person


def test_each_kind_is_checked_and_logged(
    client: TestClient, rep: User, ann: str, make_person: MakePerson
) -> None:
    hidden = make_person("hidden@example.com")
    cases = [
        ({"kind": "chat", "person_id": ann}, 400, "kind"),
        ({"kind": "note", "body": "hi"}, 400, "person_id"),
        ({"kind": "note", "person_id": ann}, 400, "body"),
        ({"kind": "note", "person_id": hidden, "body": "x"}, 400, "person_id"),
        ({"kind": "task", "person_id": ann}, 400, "subject"),
        ({"kind": "task", "person_id": ann, "subject": "x", "priority": "asap"}, 400, "priority"),
        ({"kind": "task", "person_id": ann, "subject": "x", "due_at": "tomorrow"}, 422, "due_at"),
        ({"kind": "call", "person_id": ann}, 400, "direction"),
        ({"kind": "call", "person_id": ann, "direction": "out"}, 400, "direction"),
        (
            {"kind": "call", "person_id": ann, "direction": "outbound", "duration_seconds": -1},
            400,
            "duration_seconds",
        ),
        (
            {"kind": "call", "person_id": ann, "direction": "outbound", "outcome": "great"},
            400,
            "outcome",
        ),
        (
            {"kind": "note", "person_id": ann, "body": "x", "due_at": "2027-01-01T00:00:00Z"},
            400,
            "due_at",
        ),
        ({"kind": "meeting", "person_id": ann, "subject": "Demo"}, 400, "starts_at"),
        (
            {
                "kind": "meeting",
                "person_id": ann,
                "subject": "Demo",
                "starts_at": "2027-01-01T10:00:00Z",
                "ends_at": "2027-01-01T09:00:00Z",
            },
            400,
            "ends_at",
        ),
        (
            {
                "kind": "meeting",
                "person_id": ann,
                "subject": "Demo",
                "starts_at": "2027-01-01T10:00:00Z",
                "attendees": ["not-an-email"],
            },
            400,
            "attendees",
        ),
    ]
    for body, status, field in cases:
        assert_error(log(client, rep, **body), status, field)
    made = [
        log(client, rep, kind="note", person_id=ann, body="Likes the pro plan"),
        log(
            client,
            rep,
            kind="call",
            person_id=ann,
            direction="outbound",
            duration_seconds=300,
            outcome="connected",
        ),
        log(
            client,
            rep,
            kind="meeting",
            person_id=ann,
            subject="Demo",
            starts_at="2027-01-01T10:00:00Z",
            ends_at="2027-01-01T11:00:00Z",
            attendees=["Ann@Example.com"],
        ),
        log(client, rep, kind="task", person_id=ann, subject="Send quote"),
    ]
    assert [m.status_code for m in made] == [201] * 4, [m.text for m in made]
    assert made[2].json()["details"]["attendees"] == ["ann@example.com"]
    assert made[3].json()["priority"] == "normal"
    assert made[3].json()["owner_id"] == rep.id


def test_roles_and_owners_decide_who_changes_activities(
    client: TestClient, admin: User, rep: User, ann: str, make_user: MakeUser
) -> None:
    note = log(client, rep, kind="note", person_id=ann, body="mine").json()
    url = f"/v1/activities/{note['id']}"
    other = make_user("sales")
    assert client.get(url, headers=other.headers).status_code == 404
    client.post(f"/v1/contacts/{ann}/shares", json={"user_id": other.id}, headers=rep.headers)
    assert client.get(url, headers=other.headers).status_code == 200
    assert_error(client.patch(url, json={"body": "theirs"}, headers=other.headers), 403)
    analyst = make_user("analyst")
    assert client.get(url, headers=analyst.headers).status_code == 200
    assert_error(log(client, analyst, kind="note", person_id=ann, body="x"), 403)
    assert client.patch(url, json={"body": "edited"}, headers=admin.headers).status_code == 200
    assert client.delete(url, headers=rep.headers).status_code == 204
    assert client.get(url, headers=rep.headers).status_code == 404


def test_logging_is_an_event_on_the_person_and_keeps_deals_fresh(
    client: TestClient, admin: User, rep: User, ann: str, tracker: Tracker
) -> None:
    pipeline = client.post(
        "/v1/pipelines",
        json={"name": "P", "rotting_days": 1, "stages": [{"name": "S", "probability": 50}]},
        headers=admin.headers,
    ).json()
    deal = client.post(
        "/v1/deals",
        json={"name": "D", "pipeline_id": pipeline["id"], "person_id": ann},
        headers=rep.headers,
    ).json()
    log(client, rep, kind="note", deal_id=deal["id"], body="on the deal")
    log(client, rep, kind="call", person_id=ann, direction="inbound")
    task = log(client, rep, kind="task", person_id=ann, subject="Follow up").json()
    done = client.patch(f"/v1/activities/{task['id']}", json={"done": True}, headers=rep.headers)
    assert done.json()["done_at"] is not None
    again = client.patch(f"/v1/activities/{task['id']}", json={"done": True}, headers=rep.headers)
    assert again.json()["done_at"] == done.json()["done_at"]
    tracker.process()
    timeline = client.get(f"/v1/persons/{ann}/timeline?type=track", headers=admin.headers)
    names = [e["event"] for e in timeline.json()["items"]]
    assert names[:3] == ["Task Completed", "Call Logged", "Note Added"]
    assert names.count("Task Completed") == 1


def test_my_tasks_and_reminders(
    client: TestClient, rep: User, ann: str, make_user: MakeUser
) -> None:
    now = utcnow()
    iso = lambda delta: (now + delta).isoformat()  # noqa: E731
    overdue = log(
        client,
        rep,
        kind="task",
        person_id=ann,
        subject="Late",
        due_at=iso(timedelta(hours=-2)),
        remind_at=iso(timedelta(hours=-3)),
    ).json()
    later = log(
        client,
        rep,
        kind="task",
        person_id=ann,
        subject="Later",
        due_at=iso(timedelta(days=3)),
        remind_at=iso(timedelta(days=2)),
    ).json()
    log(client, rep, kind="task", person_id=ann, subject="Someday")
    done = log(
        client,
        rep,
        kind="task",
        person_id=ann,
        subject="Done",
        done=True,
        due_at=iso(timedelta(hours=-1)),
    ).json()
    mine = client.get("/v1/my-tasks", headers=rep.headers).json()
    assert [t["subject"] for t in mine["overdue"]] == ["Late"]
    assert [t["subject"] for t in mine["upcoming"]] == ["Later", "Someday"]
    assert done["done_at"] is not None
    assert_error(client.get("/v1/my-tasks?tz=Mars/Base", headers=rep.headers), 400, "tz")
    other = make_user("sales")
    assert client.get("/v1/my-tasks", headers=other.headers).json()["overdue"] == []
    due = client.get("/v1/notifications", headers=rep.headers).json()
    assert [n["id"] for n in due] == [overdue["id"]]
    url = f"/v1/notifications/{overdue['id']}/dismiss"
    assert client.post(url, headers=rep.headers).status_code == 204
    assert_error(client.post(url, headers=rep.headers), 409, "notification_id")
    assert client.get("/v1/notifications", headers=rep.headers).json() == []
    not_due = f"/v1/notifications/{later['id']}/dismiss"
    assert_error(client.post(not_due, headers=rep.headers), 404, "notification_id")
    assert_error(client.post(url, headers=other.headers), 404, "notification_id")


EMAIL = b"""From: Ann Lee <ann@example.com>
To: Rep <REP>, Bob Stone <bob@newcorp.example>
Cc: ann@example.com
Subject: Re: your quote
Message-ID: <abc-123@mail.example.com>
Content-Type: text/plain; charset=utf-8

Looks good, let's sign.
"""


def test_inbound_email_logs_on_known_persons_once(
    client: TestClient, rep: User, ann: str, tracker: Tracker
) -> None:
    raw = EMAIL.replace(b"REP", rep.email.encode())
    headers = {**rep.headers, "Content-Type": "message/rfc822"}
    answer = client.post("/v1/inbound-email", content=raw, headers=headers)
    assert answer.status_code == 201, answer.text
    body = answer.json()
    assert body["created_persons"] == []  # bob is not the sender: not made a person
    assert [a["person_id"] for a in body["activities"]] == [ann]
    activity = body["activities"][0]
    assert (activity["kind"], activity["subject"], activity["direction"]) == (
        "email",
        "Re: your quote",
        "inbound",
    )
    assert activity["body"].strip() == "Looks good, let's sign."
    assert activity["details"]["to"] == [rep.email, "bob@newcorp.example"]
    again = client.post("/v1/inbound-email", content=raw, headers=headers)
    assert again.status_code == 200
    assert again.json()["duplicate"] is True
    timeline = client.get(f"/v1/contacts/{ann}/timeline?kind=email", headers=rep.headers).json()
    assert timeline["total"] == 1


def test_an_unknown_sender_becomes_a_person(
    client: TestClient, rep: User, admin: User, tracker: Tracker
) -> None:
    raw = (
        b"From: New Lead <lead@prospect.example>\r\nTo: "
        + rep.email.encode()
        + (b"\r\nSubject: Hello\r\n\r\nInterested.\r\n")
    )
    headers = {**rep.headers, "Content-Type": "message/rfc822"}
    answer = client.post("/v1/inbound-email", content=raw, headers=headers)
    assert answer.status_code == 201, answer.text
    assert answer.json()["created_persons"] == ["lead@prospect.example"]
    activity = answer.json()["activities"][0]
    assert activity["person_id"] is None  # until processing makes the person
    tracker.process()
    person = client.get("/v1/persons?email=lead@prospect.example", headers=admin.headers).json()
    assert person["traits"]["name"] == "New Lead"
    fetched = client.get(f"/v1/activities/{activity['id']}", headers=rep.headers).json()
    assert fetched["person_id"] == person["id"]


@pytest.mark.parametrize(
    ("raw", "field"),
    [
        (b"", "message"),
        (b"just some text without headers", "message"),
        (b"To: a@example.com\r\nSubject: x\r\n\r\nno sender", "from"),
        (b"From: not an address\r\nSubject: x\r\n\r\nbody", "from"),
        (b"From: a@example.com, b@example.com\r\n\r\ntwo senders", "from"),
    ],
)
def test_malformed_messages_are_400s(client: TestClient, rep: User, raw: bytes, field: str) -> None:
    headers = {**rep.headers, "Content-Type": "message/rfc822"}
    assert_error(client.post("/v1/inbound-email", content=raw, headers=headers), 400, field)


def test_timelines_interleave_events_activities_and_changes(
    client: TestClient, admin: User, rep: User, ann: str, tracker: Tracker
) -> None:
    tracker.send({"type": "track", "userId": "u-ann@example.com", "event": "Viewed Pricing"})
    log(client, rep, kind="note", person_id=ann, body="Called about pricing")
    client.patch(
        f"/v1/contacts/{ann}", json={"lifecycle_stage": "opportunity"}, headers=rep.headers
    )
    tracker.process()
    url = f"/v1/contacts/{ann}/timeline"
    full = client.get(url, headers=rep.headers).json()
    kinds = [e["kind"] for e in full["items"]]
    assert {"event", "note", "change"} <= set(kinds)
    assert full["total"] == len(full["items"])
    times = [e["at"] for e in full["items"]]
    assert times == sorted(times, reverse=True)
    seen: list[str] = []
    cursor = None
    while True:
        page = client.get(
            url, params={"limit": 2, **({"cursor": cursor} if cursor else {})}, headers=rep.headers
        ).json()
        seen += [f"{e['kind']}:{e['id']}" for e in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == [f"{e['kind']}:{e['id']}" for e in full["items"]]
    notes = client.get(url, params={"kind": "note"}, headers=rep.headers).json()
    assert [e["title"] for e in notes["items"]] == ["note"]
    assert_error(client.get(url, params={"kind": "fax"}, headers=rep.headers), 400, "kind")
    other = client.get(url, headers=admin.headers).json()
    assert other["total"] == full["total"]
    company = client.post("/v1/companies", json={"name": "Acme"}, headers=rep.headers).json()
    log(client, rep, kind="note", company_id=company["id"], body="Company note")
    company_line = client.get(f"/v1/companies/{company['id']}/timeline", headers=rep.headers)
    assert [e["kind"] for e in company_line.json()["items"]] == ["note", "change"]


def test_the_activity_list_filters_sorts_pages_and_exports(
    client: TestClient, admin: User, rep: User, ann: str, make_user: MakeUser
) -> None:
    for subject in ("Send quote", "Book demo", "Send contract"):
        log(client, rep, kind="task", person_id=ann, subject=subject)
    log(client, rep, kind="call", person_id=ann, direction="outbound", duration_seconds=60)
    mine = client.get("/v1/activities", headers=rep.headers).json()
    assert mine["total"] == 4
    tasks = client.get(
        "/v1/activities",
        params={"filter": "kind:eq:task", "sort": "subject", "limit": 2},
        headers=rep.headers,
    ).json()
    assert [t["subject"] for t in tasks["items"]] == ["Book demo", "Send contract"]
    rest = client.get(
        "/v1/activities",
        params={"filter": "kind:eq:task", "sort": "subject", "cursor": tasks["next_cursor"]},
        headers=rep.headers,
    ).json()
    assert [t["subject"] for t in rest["items"]] == ["Send quote"]
    assert rest["next_cursor"] is None
    found = client.get("/v1/activities", params={"q": "send"}, headers=rep.headers).json()
    assert found["total"] == 2
    stranger = make_user("sales")
    assert client.get("/v1/activities", headers=stranger.headers).json()["total"] == 0
    assert client.get("/v1/activities", headers=admin.headers).json()["total"] == 4
    assert_error(
        client.get("/v1/activities", params={"filter": "colour:eq:red"}, headers=rep.headers),
        400,
        "filter",
    )
    csv = client.get(
        "/v1/activities/export.csv", params={"filter": "kind:eq:call"}, headers=rep.headers
    )
    assert csv.status_code == 200
    lines = csv.text.strip().splitlines()
    assert lines[0].startswith("id,kind,subject")
    assert len(lines) == 2
    assert ",call," in lines[1]
