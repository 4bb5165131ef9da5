"""The public form endpoints: the hosted page, browser posts and JSON posts, and every kind
of bad input (missing answers, markup, huge bodies, floods, honeypots, closed forms)."""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select
from sqlalchemy.orm import Session

from patron.collect.models import Event, Source
from patron.core.runtime import Runtime
from patron.crm.forms.models import FormSubmission
from tests.conftest import assert_error
from tests.crm.forms.conftest import MakeForm, good_answers

SCRIPT = '<script>document.title="pwned"</script><img src=x onerror=alert(1)>'


def submissions(
    client: TestClient, form: dict[str, Any], headers: dict[str, str], **query: str
) -> list[dict[str, Any]]:
    answer = client.get(f"/v1/forms/{form['id']}/submissions", params=query, headers=headers)
    assert answer.status_code == 200, answer.text
    items: list[dict[str, Any]] = answer.json()["items"]
    return items


def form_events(db: Session) -> list[Event]:
    db.rollback()
    forms = select(Source.id).where(Source.kind == "form")
    return list(db.scalars(select(Event).where(Event.source_id.in_(forms)).order_by(Event.seq)))


@pytest.fixture
def other_ip(client: TestClient) -> Iterator[TestClient]:
    """The same application seen from another client address."""
    with TestClient(client.app, client=("203.0.113.9", 40000)) as other:
        yield other


# --- the hosted page -------------------------------------------------------------------


def test_the_hosted_page_carries_the_campaign_and_hides_the_honeypot(
    client: TestClient, make_form: MakeForm
) -> None:
    make_form()
    page = client.get(
        "/f/demo?utm_source=news&utm_campaign=spring&plan=enterprise&patron_anonymous_id=a-1",
        headers={"Referer": "https://blog.example/post"},
    )
    assert page.status_code == 200
    policy = page.headers["content-security-policy"]
    nonce = re.search(r"'nonce-([^']+)'", policy)
    assert nonce is not None
    assert "default-src 'none'" in policy
    assert "form-action 'self'" in policy
    assert page.text.count(f'nonce="{nonce.group(1)}"') == 2  # its style and its script
    assert page.text.count("<script") == 1
    assert '<input type="hidden" name="utm_source" value="news">' in page.text
    assert '<input type="hidden" name="utm_campaign" value="spring">' in page.text
    assert '<input type="hidden" name="patron_anonymous_id" value="a-1">' in page.text
    assert '<input type="hidden" name="patron_referrer" value="https://blog.example/post">' in (
        page.text
    )
    assert 'name="plan" value="enterprise"' in page.text  # a hidden field, from the link
    assert 'class="patron-hp"' in page.text
    assert 'name="patron_website"' in page.text
    assert ".patron-hp { position: absolute; left: -10000px;" in page.text


def test_unknown_and_closed_forms(
    client: TestClient, make_form: MakeForm, admin_headers: dict[str, str], db: Session
) -> None:
    assert client.get("/f/nothing-here").status_code == 404
    assert_error(client.post("/f/nothing-here", json={"email": "a@example.com"}), 404)
    form = make_form()
    client.patch(f"/v1/forms/{form['id']}", json={"enabled": False}, headers=admin_headers)
    closed = client.get("/f/demo")
    assert closed.status_code == 410
    assert "no longer takes answers" in closed.text
    assert_error(client.post("/f/demo", json=good_answers()), 410)
    assert client.post("/f/demo", data=good_answers()).status_code == 410
    kept = submissions(client, form, admin_headers)
    assert [(s["status"], s["reason"]) for s in kept] == [("rejected", "form_disabled")] * 2
    assert form_events(db) == []


# --- good posts ------------------------------------------------------------------------


def test_a_json_post_is_stored_with_its_identify_and_track_before_the_201(
    client: TestClient, make_form: MakeForm, admin_headers: dict[str, str], db: Session
) -> None:
    form = make_form()
    answers = good_answers(
        phone="+1 415 555 0100",
        company="Acme",
        size="11-50",
        seats="12",
        newsletter="on",
        **{"consent.marketing": True},
        utm_source="newsletter",
        utm_medium="email",
        utm_campaign="spring",
        utm_term="crm",
        utm_content="hero",
        patron_page_url="https://www.example.com/pricing?utm_source=newsletter",
        patron_referrer="https://mail.example/",
    )
    answer = client.post("/f/demo", json=answers, headers={"Origin": "https://www.example.com"})
    assert answer.status_code == 201, answer.text
    assert answer.headers["access-control-allow-origin"] == "*"
    body = answer.json()
    assert body == {
        "id": body["id"],
        "status": "accepted",
        "message": "Thanks, we will be in touch.",
        "redirect_url": None,
    }
    identify, track = form_events(db)
    anonymous = f"form-submission:{body['id']}"
    assert (identify.type, identify.anonymous_id, identify.user_id) == ("identify", anonymous, None)
    assert identify.payload["traits"] == {
        "email": "ana@example.com",
        "name": "Ana Silva",
        "phone": "+14155550100",
        "company": {"name": "Acme"},
        "team_size": "11-50",
        "seats": 12,
        "plan_interest": "pro",
        "wants_news": True,
    }
    context = track.payload["context"]
    assert context["campaign"] == {
        "name": "spring",
        "source": "newsletter",
        "medium": "email",
        "term": "crm",
        "content": "hero",
    }
    assert context["page"] == {
        "url": "https://www.example.com/pricing?utm_source=newsletter",
        "referrer": "https://mail.example/",
    }
    assert context["consent"] == {"categoryPreferences": {"marketing": True, "terms": True}}
    assert context["patron"] == {"form_id": form["id"], "submission_id": body["id"]}
    assert "ip" not in context  # the address is kept only as a salted hash
    assert context["userAgent"] == "testclient"
    assert (track.event, track.anonymous_id) == ("Form Submitted", anonymous)
    properties = track.payload["properties"]
    assert properties["form_id"] == form["id"]
    assert properties["form_name"] == "Request a demo"
    assert properties["submission_id"] == body["id"]
    assert properties["answers"]["seats"] == 12
    assert properties["page_url"] == "https://www.example.com/pricing?utm_source=newsletter"
    assert properties["utm_campaign"] == "spring"
    [kept] = submissions(client, form, admin_headers, status="accepted")
    assert kept["id"] == body["id"]
    assert kept["attribution"]["utm_source"] == "newsletter"
    assert kept["attribution"]["landing_page"].startswith("https://www.example.com/pricing")
    assert kept["consent"] == {"marketing": True, "terms": True}
    assert len(kept["ip_hash"]) == 64


def test_a_browser_post_gets_the_success_page_or_the_redirect(
    client: TestClient, make_form: MakeForm, admin_headers: dict[str, str]
) -> None:
    make_form()
    done = client.post("/f/demo", data=good_answers())
    assert done.status_code == 200
    assert "Thanks, we will be in touch." in done.text
    assert done.headers["content-security-policy"].startswith("default-src 'none'")
    make_form(slug="redirecting", redirect_url="https://www.example.com/thanks?x=1")
    moved = client.post("/f/redirecting", data=good_answers(), follow_redirects=False)
    assert moved.status_code == 303
    assert moved.headers["location"] == "https://www.example.com/thanks?x=1"
    page = client.get("/f/redirecting")
    assert "form-action 'self' https://www.example.com" in page.headers["content-security-policy"]


def test_the_client_address_is_kept_only_as_a_hash(
    other_ip: TestClient, make_form: MakeForm, admin_headers: dict[str, str]
) -> None:
    form = make_form()
    assert other_ip.post("/f/demo", json=good_answers()).status_code == 201
    again = other_ip.post("/f/demo", json=good_answers("bo@example.com"))
    kept = submissions(other_ip, form, admin_headers)
    assert again.status_code == 201
    assert "203.0.113.9" not in str(kept)
    assert len({s["ip_hash"] for s in kept}) == 1  # the same client, the same hash today


def test_the_visitor_anonymous_id_names_the_messages(
    client: TestClient, make_form: MakeForm, db: Session
) -> None:
    make_form()
    answer = client.post("/f/demo", data=good_answers(patron_anonymous_id="aid-123"))
    assert answer.status_code == 200
    assert {e.anonymous_id for e in form_events(db)} == {"aid-123"}
    bad = client.post("/f/demo", data=good_answers("bo@example.com", patron_anonymous_id="a\nb"))
    assert bad.status_code == 200  # a broken id from the page is dropped, not refused
    assert form_events(db)[-1].anonymous_id.startswith("form-submission:")


def test_cors_preflight_for_json_posts(client: TestClient, make_form: MakeForm) -> None:
    make_form()
    answer = client.options(
        "/f/demo",
        headers={"Origin": "https://site.example", "Access-Control-Request-Method": "POST"},
    )
    assert answer.status_code == 204
    assert answer.headers["access-control-allow-origin"] == "*"
    assert "POST" in answer.headers["access-control-allow-methods"]
    assert "Content-Type" in answer.headers["access-control-allow-headers"]


# --- bad input -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("answers", "field"),
    [
        ({"name": "No email", "consent.terms": "true"}, "email"),
        (good_answers(**{"consent.terms": ""}), "consent.terms"),
        (good_answers("not-an-email"), "email"),
        (good_answers("ana@localhost"), "email"),
        (good_answers(phone="call me maybe"), "phone"),
        (good_answers(phone="+1 555"), "phone"),
        (good_answers(size="1000+"), "size"),
        (good_answers(seats="twelve"), "seats"),
        (good_answers(seats="NaN"), "seats"),
        (good_answers(message="x" * 2001), "message"),
        (good_answers(name="a\x00b"), "name"),
        (good_answers(newsletter="maybe"), "newsletter"),
    ],
)
def test_bad_answers_are_400_naming_the_field_and_kept(
    client: TestClient,
    make_form: MakeForm,
    admin_headers: dict[str, str],
    db: Session,
    answers: dict[str, Any],
    field: str,
) -> None:
    form = make_form()
    assert_error(client.post("/f/demo", json=answers), 400, field)
    [kept] = submissions(client, form, admin_headers, status="rejected")
    assert (kept["reason"], kept["error_field"]) == ("invalid", field)
    assert form_events(db) == []


def test_every_problem_is_listed_and_the_form_comes_back_with_the_answers(
    client: TestClient, make_form: MakeForm
) -> None:
    make_form()
    sent = {"name": SCRIPT, "phone": "nope", "company": SCRIPT, "message": SCRIPT}
    answer = client.post("/f/demo", data=sent)
    assert answer.status_code == 400
    assert "Work email is required" in answer.text
    assert "Phone is not a valid phone number" in answer.text
    assert "This consent is needed to send the form" in answer.text
    assert SCRIPT not in answer.text
    escaped = "&lt;script&gt;document.title=&#34;pwned&#34;&lt;/script&gt;"
    assert answer.text.count(escaped) == 3  # name, company and message, as text
    assert answer.text.count("<script") == 1  # the page's own
    as_json = client.post("/f/demo", json=sent).json()
    assert [d["field"] for d in as_json["details"]] == ["email", "phone", "consent.terms"]


def test_markup_in_every_field_is_kept_as_data(
    client: TestClient, make_form: MakeForm, admin_headers: dict[str, str], db: Session
) -> None:
    form = make_form()
    answers = good_answers(
        name=SCRIPT,
        company=SCRIPT,
        message=SCRIPT,
        plan=SCRIPT,
        utm_source=SCRIPT,
        patron_page_url="javascript:alert(1)",
        patron_referrer=SCRIPT,
    )
    assert client.post("/f/demo", json=answers).status_code == 201
    [kept] = submissions(client, form, admin_headers)
    assert kept["answers"]["name"] == kept["answers"]["message"] == SCRIPT
    assert kept["attribution"] == {"utm_source": SCRIPT}  # non-web URLs are dropped
    identify, _track = form_events(db)
    assert identify.payload["traits"]["company"] == {"name": SCRIPT}


def test_ten_megabytes_are_refused_at_once_and_kept_as_too_large(
    client: TestClient, make_form: MakeForm, admin_headers: dict[str, str], db: Session
) -> None:
    form = make_form()
    huge = b"email=" + b"a" * (10 * 1024 * 1024)
    form_post = {"Content-Type": "application/x-www-form-urlencoded"}
    answer = client.post("/f/demo", content=huge, headers=form_post)
    assert answer.status_code == 413
    as_json = client.post(
        "/f/demo",
        content=b'{"email": "' + huge + b'"}',
        headers={"Content-Type": "application/json"},
    )
    assert_error(as_json, 413)
    kept = submissions(client, form, admin_headers)
    assert [(s["status"], s["reason"]) for s in kept] == [("rejected", "too_large")] * 2
    assert all(s["answers"] == {} for s in kept)
    assert form_events(db) == []


def test_answers_that_could_not_fit_the_log_are_413(
    client: TestClient, make_form: MakeForm, admin_headers: dict[str, str]
) -> None:
    email = {"key": "email", "type": "email", "identifier": "email"}
    long = [{"key": f"t{i}", "type": "textarea", "max_length": 10_000} for i in range(4)]
    form = make_form(slug="long", fields=[email, *long], consents=[])
    answers = {"email": "ana@example.com", **{f"t{i}": "x" * 9000 for i in range(4)}}
    assert_error(client.post("/f/long", json=answers), 413)
    assert submissions(client, form, admin_headers)[0]["reason"] == "too_large"


def test_bodies_that_are_not_answers(
    client: TestClient, make_form: MakeForm, admin_headers: dict[str, str]
) -> None:
    form = make_form()

    def post(body: bytes, content_type: str) -> Any:
        headers = {"Content-Type": content_type, "Accept": "application/json"}
        return client.post("/f/demo", content=body, headers=headers)

    assert_error(post(b"[1, 2]", "application/json"), 400)
    assert_error(post(b"{nope", "application/json"), 400)
    assert_error(post(b"email=x", "text/plain"), 415)
    assert post(b"email=%FF", "application/x-www-form-urlencoded").status_code == 400
    kept = submissions(client, form, admin_headers)
    assert [s["reason"] for s in kept] == ["invalid"] * 4


def test_a_filled_honeypot_looks_like_success_and_stays_out_of_the_log(
    client: TestClient, make_form: MakeForm, admin_headers: dict[str, str], db: Session
) -> None:
    form = make_form()
    bot = good_answers(patron_website="http://spam.example")
    as_json = client.post("/f/demo", json=bot)
    assert as_json.status_code == 201
    assert as_json.json()["status"] == "accepted"
    page = client.post("/f/demo", data=bot)
    assert page.status_code == 200
    assert "Thanks, we will be in touch." in page.text
    kept = submissions(client, form, admin_headers, status="rejected")
    assert [s["reason"] for s in kept] == ["honeypot", "honeypot"]
    assert {s["id"] for s in kept} >= {as_json.json()["id"]}
    assert kept[0]["answers"]["patron_website"] == "http://spam.example"
    assert form_events(db) == []


def test_a_flood_from_one_address_is_429_and_the_posts_before_it_are_kept(
    client: TestClient,
    other_ip: TestClient,
    make_form: MakeForm,
    admin_headers: dict[str, str],
    runtime: Runtime,
    db: Session,
) -> None:
    runtime.settings.form_rate_per_ip_minute = 3
    form = make_form()
    good = [client.post("/f/demo", json=good_answers(f"p{i}@example.com")) for i in range(3)]
    assert [a.status_code for a in good] == [201, 201, 201]
    flood = [client.post("/f/demo", json=good_answers(f"f{i}@example.com")) for i in range(5)]
    for answer in flood:
        assert_error(answer, 429)
        assert 1 <= int(answer.headers["retry-after"]) <= 120
        assert answer.headers["access-control-expose-headers"] == "Retry-After"
    page = client.post("/f/demo", data=good_answers("html@example.com"))
    assert page.status_code == 429
    assert "retry-after" in page.headers
    # Another visitor is not held up by this one.
    assert other_ip.post("/f/demo", json=good_answers("other@example.com")).status_code == 201
    accepted = submissions(client, form, admin_headers, status="accepted")
    emails = {s["answers"]["email"] for s in accepted}
    assert emails == {"p0@example.com", "p1@example.com", "p2@example.com", "other@example.com"}
    limited = submissions(client, form, admin_headers, status="rejected")
    assert len(limited) == 6
    assert {s["reason"] for s in limited} == {"rate_limited"}
    assert len(form_events(db)) == 8  # two messages for each accepted post


def test_a_form_takes_its_limit_a_minute_from_everyone(
    client: TestClient, make_form: MakeForm, runtime: Runtime, db: Session
) -> None:
    runtime.settings.form_rate_per_form_minute = 2
    make_form()
    statuses = []
    for i in range(4):
        with TestClient(client.app, client=(f"198.51.100.{i}", 1)) as visitor:
            statuses.append(visitor.post("/f/demo", json=good_answers(f"v{i}@example.com")))
    assert [a.status_code for a in statuses] == [201, 201, 429, 429]
    db.rollback()
    first = uuid.UUID(statuses[0].json()["id"])
    stored = db.scalar(select(FormSubmission.status).where(FormSubmission.id == first))
    assert stored == "accepted"
