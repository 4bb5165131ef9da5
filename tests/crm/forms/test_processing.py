"""What a submission does once processing resolved its person: the person and its
identifiers, the lead stage, the owner rule, attribution, the audit entry; failures retried
with backoff without holding up the processing loop."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from datetime import timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import text, update
from sqlalchemy.orm import Session

from patron.auth.models import User
from patron.core.clock import as_utc, utcnow
from patron.core.runtime import Runtime
from patron.crm.forms.jobs import run_form_jobs
from patron.crm.forms.models import FormSubmission
from patron.crm.forms.processing import MAX_ATTEMPTS, retry_due
from patron.pipeline import JOBS, rebuild
from tests.conftest import Lookup, MakeUser, Tracker
from tests.crm.forms.conftest import MakeForm, good_answers

Process = Callable[[], int]


def post(client: TestClient, slug: str = "demo", **answers: Any) -> str:
    answer = client.post(f"/f/{slug}", json=answers)
    assert answer.status_code == 201, answer.text
    return str(answer.json()["id"])


def submission(db: Session, submission_id: str) -> FormSubmission:
    db.rollback()
    found = db.get(FormSubmission, uuid.UUID(submission_id))
    assert found is not None
    return found


def contact(client: TestClient, headers: dict[str, str], person_id: str) -> dict[str, Any]:
    answer = client.get(f"/v1/contacts/{person_id}", headers=headers)
    assert answer.status_code == 200, answer.text
    body: dict[str, Any] = answer.json()
    return body


def test_a_submission_becomes_a_lead_with_its_attribution(
    client: TestClient,
    make_form: MakeForm,
    process: Process,
    admin_headers: dict[str, str],
    lookup: Lookup,
    db: Session,
) -> None:
    form = make_form()
    sent = post(
        client,
        **good_answers(
            phone="+44 20 7946 0958",
            utm_source="newsletter",
            utm_campaign="spring",
            patron_referrer="https://mail.example/",
            patron_page_url="https://www.example.com/demo",
        ),
    )
    process()
    person = lookup(email="ana@example.com")
    assert lookup(phone="+442079460958")["id"] == person["id"]
    kept = submission(db, sent)
    assert (str(kept.person_id), kept.processed_at is not None) == (person["id"], True)
    crm = contact(client, admin_headers, person["id"])
    assert crm["lifecycle_stage"] == "lead"
    assert crm["traits"]["name"] == "Ana Silva"
    touch = {
        "utm_source": "newsletter",
        "utm_campaign": "spring",
        "referrer": "https://mail.example/",
        "landing_page": "https://www.example.com/demo",
        "form_id": form["id"],
        "submission_id": sent,
        "at": crm["first_touch"]["at"],
    }
    assert crm["first_touch"] == crm["latest_touch"] == touch
    audit = client.get(
        "/v1/audit",
        params={"record_type": "person", "record_id": person["id"]},
        headers=admin_headers,
    ).json()["items"]
    submitted = [a for a in audit if a["action"] == "form_submitted"]
    assert [a["after"] for a in submitted] == [{"form_id": form["id"], "submission_id": sent}]
    assert submitted[0]["actor_id"] is None
    timeline = client.get(
        f"/v1/contacts/{person['id']}/timeline", params={"kind": "event"}, headers=admin_headers
    ).json()["items"]
    titles = [entry["title"] for entry in timeline]
    assert "Form Submitted" in titles
    assert "Lifecycle Stage Changed" in titles
    found = client.get(
        "/v1/contacts",
        params={"filter": "first_touch.utm_source:eq:newsletter"},
        headers=admin_headers,
    ).json()
    assert [c["id"] for c in found["items"]] == [person["id"]]
    none = client.get(
        "/v1/contacts", params={"filter": "first_touch.utm_source:eq:ads"}, headers=admin_headers
    ).json()
    assert none["total"] == 0


def test_the_anonymous_history_of_the_visitor_joins_the_lead(
    client: TestClient, make_form: MakeForm, tracker: Tracker, process: Process, lookup: Lookup
) -> None:
    make_form()
    tracker.send(
        {"type": "page", "anonymousId": "aid-9", "properties": {"path": "/pricing"}},
        {"type": "track", "anonymousId": "aid-9", "event": "Pricing Viewed"},
    )
    before = lookup(anonymous_id="aid-9")
    post(client, **good_answers("zoe@example.com", patron_anonymous_id="aid-9"))
    process()
    person = lookup(email="zoe@example.com")
    assert person["id"] == before["id"]
    assert person["traits"]["email"] == "zoe@example.com"


def test_a_known_email_updates_that_person(
    client: TestClient,
    make_form: MakeForm,
    tracker: Tracker,
    process: Process,
    lookup: Lookup,
    admin_headers: dict[str, str],
) -> None:
    make_form()
    tracker.send({"type": "identify", "userId": "u-1", "traits": {"email": "ana@example.com"}})
    known = lookup(user_id="u-1")
    post(client, **good_answers(company="Acme"))
    process()
    assert lookup(email="ana@example.com")["id"] == known["id"]
    assert lookup(user_id="u-1")["traits"]["company"] == {"name": "Acme"}
    assert client.get("/v1/contacts", headers=admin_headers).json()["total"] == 1


@pytest.mark.parametrize(
    ("stage", "after"),
    [(None, "lead"), ("subscriber", "lead"), ("customer", "customer"), ("other", "other")],
)
def test_the_lifecycle_stage_only_moves_up_to_lead(
    client: TestClient,
    make_form: MakeForm,
    tracker: Tracker,
    process: Process,
    lookup: Lookup,
    admin_headers: dict[str, str],
    stage: str | None,
    after: str,
) -> None:
    make_form()
    tracker.send({"type": "identify", "userId": "u-1", "traits": {"email": "ana@example.com"}})
    person = lookup(user_id="u-1")["id"]
    patched = client.patch(
        f"/v1/contacts/{person}", json={"lifecycle_stage": stage}, headers=admin_headers
    )
    assert patched.status_code == 200
    post(client, **good_answers())
    process()
    assert contact(client, admin_headers, person)["lifecycle_stage"] == after


def test_a_fixed_owner_gets_the_leads_that_have_none(
    client: TestClient,
    make_form: MakeForm,
    make_user: MakeUser,
    tracker: Tracker,
    process: Process,
    lookup: Lookup,
    admin_headers: dict[str, str],
    runtime: Runtime,
) -> None:
    rep, other = make_user("sales"), make_user("sales")
    make_form(owner_id=rep.id)
    tracker.send({"type": "identify", "userId": "u-9", "traits": {"email": "owned@example.com"}})
    owned = lookup(user_id="u-9")["id"]
    client.patch(f"/v1/contacts/{owned}", json={"owner_id": other.id}, headers=admin_headers)
    post(client, **good_answers())
    post(client, **good_answers("owned@example.com"))
    process()
    new = lookup(email="ana@example.com")["id"]
    assert contact(client, admin_headers, new)["owner_id"] == rep.id
    assert contact(client, admin_headers, owned)["owner_id"] == other.id  # kept
    # A deactivated owner gets no new leads: they stay unowned for assignment.
    with runtime.sessions() as session:
        session.execute(update(User).where(User.email == rep.email).values(active=False))
        session.commit()
    post(client, **good_answers("late@example.com"))
    process()
    assert (
        contact(client, admin_headers, lookup(email="late@example.com")["id"])["owner_id"] is None
    )


def test_a_team_rule_is_left_on_the_submission_for_the_assignment_engine(
    client: TestClient,
    make_form: MakeForm,
    process: Process,
    admin_headers: dict[str, str],
    db: Session,
) -> None:
    team = client.post("/v1/teams", json={"name": "Inbound"}, headers=admin_headers).json()
    make_form(team_id=team["id"])
    sent = post(client, **good_answers())
    process()
    kept = submission(db, sent)
    assert str(kept.assign_team_id) == team["id"]
    assert contact(client, admin_headers, str(kept.person_id))["owner_id"] is None


def test_the_first_touch_stays_and_the_latest_moves(
    client: TestClient,
    make_form: MakeForm,
    process: Process,
    lookup: Lookup,
    admin_headers: dict[str, str],
) -> None:
    make_form()
    post(client, **good_answers(utm_source="ads", utm_campaign="launch"))
    process()
    second = post(client, **good_answers(utm_source="newsletter"))
    process()
    crm = contact(client, admin_headers, lookup(email="ana@example.com")["id"])
    assert crm["first_touch"]["utm_source"] == "ads"
    assert crm["first_touch"]["utm_campaign"] == "launch"
    assert crm["latest_touch"]["utm_source"] == "newsletter"
    assert "utm_campaign" not in crm["latest_touch"]
    assert crm["latest_touch"]["submission_id"] == second


def test_a_merge_keeps_the_earliest_first_touch_and_the_latest_latest_touch(
    client: TestClient,
    make_form: MakeForm,
    process: Process,
    lookup: Lookup,
    admin_headers: dict[str, str],
) -> None:
    make_form()
    post(client, **good_answers("one@example.com", utm_source="first"))
    post(client, **good_answers("two@example.com", utm_source="second"))
    post(client, **good_answers("one@example.com", utm_source="third"))
    process()
    one, two = lookup(email="one@example.com")["id"], lookup(email="two@example.com")["id"]
    merged = client.post(f"/v1/persons/{two}/merge", json={"other_id": one}, headers=admin_headers)
    assert merged.status_code == 200, merged.text
    survivor = merged.json()["survivor_id"]
    crm = contact(client, admin_headers, survivor)
    assert crm["first_touch"]["utm_source"] == "first"
    assert crm["latest_touch"]["utm_source"] == "third"
    undone = client.post(f"/v1/merges/{merged.json()['id']}/undo", json={}, headers=admin_headers)
    assert undone.status_code == 200, undone.text
    # The merged person kept its own touches all along, so the unmerge gives them back.
    assert merged.json()["merged_id"] == two
    back = contact(client, admin_headers, two)
    assert back["first_touch"]["utm_source"] == back["latest_touch"]["utm_source"] == "second"


def test_a_rebuild_leaves_submissions_and_touches_as_they_are(
    client: TestClient,
    make_form: MakeForm,
    process: Process,
    lookup: Lookup,
    admin_headers: dict[str, str],
    runtime: Runtime,
) -> None:
    make_form()
    post(client, **good_answers(utm_source="ads"))
    process()
    person = lookup(email="ana@example.com")["id"]
    before = contact(client, admin_headers, person)
    rebuild(runtime.sessions, runtime.settings)
    after = contact(client, admin_headers, person)
    assert (after["first_touch"], after["lifecycle_stage"]) == (before["first_touch"], "lead")
    audit = client.get(
        "/v1/audit", params={"record_type": "person", "record_id": person}, headers=admin_headers
    ).json()["items"]
    assert [a["action"] for a in audit].count("form_submitted") == 1


# --- failures and retries --------------------------------------------------------------

FAILING = {
    "sqlite": [
        "CREATE TRIGGER fail_form_audit BEFORE INSERT ON audit_log "
        "WHEN NEW.action = 'form_submitted' BEGIN SELECT RAISE(ABORT, 'audit is down'); END"
    ],
    "postgresql": [
        "CREATE FUNCTION fail_form_audit() RETURNS trigger AS $$ BEGIN "
        "IF NEW.action = 'form_submitted' THEN RAISE EXCEPTION 'audit is down'; END IF; "
        "RETURN NEW; END $$ LANGUAGE plpgsql",
        "CREATE TRIGGER fail_form_audit BEFORE INSERT ON audit_log FOR EACH ROW "
        "EXECUTE FUNCTION fail_form_audit()",
    ],
}
HEALED = {
    "sqlite": ["DROP TRIGGER IF EXISTS fail_form_audit"],
    "postgresql": [
        "DROP TRIGGER IF EXISTS fail_form_audit ON audit_log",
        "DROP FUNCTION IF EXISTS fail_form_audit()",
    ],
}


class Outage:
    """A real failure of the lead steps: the database refuses their audit entry."""

    def __init__(self, runtime: Runtime, dialect: str) -> None:
        self.runtime, self.dialect = runtime, dialect

    def _run(self, statements: list[str]) -> None:
        with self.runtime.engine.begin() as connection:
            for statement in statements:
                connection.execute(text(statement))

    def start(self) -> None:
        self._run(FAILING[self.dialect])

    def end(self) -> None:
        self._run(HEALED[self.dialect])


@pytest.fixture
def outage(runtime: Runtime, dialect: str) -> Iterator[Outage]:
    made = Outage(runtime, dialect)
    yield made
    made.end()


def test_a_failing_lead_step_is_retried_with_backoff_and_never_blocks_processing(
    client: TestClient,
    make_form: MakeForm,
    process: Process,
    tracker: Tracker,
    lookup: Lookup,
    outage: Outage,
    runtime: Runtime,
    admin_headers: dict[str, str],
    db: Session,
) -> None:
    make_form()
    outage.start()
    sent = post(client, **good_answers())
    tracker.send({"type": "identify", "userId": "after", "traits": {"plan": "pro"}}, process=False)
    process()
    assert lookup(user_id="after")["traits"]["plan"] == "pro"  # the loop went on
    failed = submission(db, sent)
    assert (failed.status, failed.attempts, failed.processed_at) == ("accepted", 1, None)
    assert failed.error is not None
    assert "audit is down" in failed.error
    assert failed.next_attempt_at is not None
    first_retry = as_utc(failed.next_attempt_at)
    assert timedelta(seconds=50) < first_retry - utcnow() <= timedelta(minutes=1)
    person = lookup(email="ana@example.com")["id"]
    assert contact(client, admin_headers, person)["lifecycle_stage"] is None  # all or nothing

    with runtime.sessions() as session, session.begin():
        assert retry_due(session, now=first_retry - timedelta(seconds=1)) == 0  # not yet
        assert retry_due(session, now=first_retry) == 0  # due, and still failing
    again = submission(db, sent)
    assert again.attempts == 2
    assert as_utc(again.next_attempt_at) - first_retry == timedelta(minutes=2)  # doubled

    outage.end()
    with runtime.sessions() as session, session.begin():
        assert retry_due(session, now=as_utc(again.next_attempt_at)) == 1
    done = submission(db, sent)
    assert (done.processed_at is not None, done.error, str(done.person_id)) == (True, None, person)
    assert contact(client, admin_headers, person)["lifecycle_stage"] == "lead"


def test_a_submission_that_keeps_failing_is_listed_as_failed_and_can_be_retried(
    client: TestClient,
    make_form: MakeForm,
    process: Process,
    outage: Outage,
    runtime: Runtime,
    admin_headers: dict[str, str],
    db: Session,
) -> None:
    form = make_form()
    outage.start()
    sent = post(client, **good_answers())
    process()
    for _ in range(MAX_ATTEMPTS - 1):
        due = as_utc(submission(db, sent).next_attempt_at)
        with runtime.sessions() as session, session.begin():
            retry_due(session, now=due)
    gave_up = submission(db, sent)
    assert (gave_up.status, gave_up.attempts, gave_up.next_attempt_at) == (
        "failed",
        MAX_ATTEMPTS,
        None,
    )
    url = f"/v1/forms/{form['id']}/submissions"
    listed = client.get(url, params={"status": "failed"}, headers=admin_headers).json()
    assert [s["id"] for s in listed["items"]] == [sent]
    assert "audit is down" in listed["items"][0]["error"]

    outage.end()
    retried = client.post(f"{url}/{sent}/retry", headers=admin_headers)
    assert retried.status_code == 200, retried.text
    assert (retried.json()["status"], retried.json()["attempts"]) == ("accepted", 0)
    assert client.post(f"{url}/{sent}/retry", headers=admin_headers).status_code == 409
    assert run_form_jobs(runtime.sessions, runtime.settings) == 1
    assert submission(db, sent).processed_at is not None


def test_the_forms_job_is_scheduled() -> None:
    assert "forms" in {job.name for job in JOBS}


def test_assignment_sends_a_form_lead_to_the_forms_team_first(
    client: TestClient,
    make_form: MakeForm,
    make_user: MakeUser,
    process: Process,
    admin_headers: dict[str, str],
    db: Session,
) -> None:
    inbound_rep, other_rep = make_user("sales"), make_user("sales")
    teams = {}
    for name, rep in (("Inbound", inbound_rep), ("Everyone else", other_rep)):
        made = client.post("/v1/teams", json={"name": name}, headers=admin_headers).json()
        client.post(
            f"/v1/teams/{made['id']}/members", json={"user_id": rep.id}, headers=admin_headers
        )
        teams[name] = made["id"]
    answer = client.put(
        "/v1/assignment/default-team",
        json={"team_id": teams["Everyone else"]},
        headers=admin_headers,
    )
    assert answer.status_code == 200, answer.text
    make_form(team_id=teams["Inbound"])
    sent = post(client, **good_answers())
    process()
    person = str(submission(db, sent).person_id)
    report = client.post("/v1/assignment/run", json={}, headers=admin_headers)
    assert report.status_code == 200, report.text
    assert report.json()["by_team"] == {"Inbound": 1}
    assert contact(client, admin_headers, person)["owner_id"] == inbound_rep.id
    log = client.get("/v1/assignment/log", params={"person_id": person}, headers=admin_headers)
    assert "preferred team Inbound" in log.json()["items"][0]["reason"]
