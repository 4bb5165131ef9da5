"""Rate limits counted in the database, through the service the public endpoint calls, at
chosen instants: the sliding window, Retry-After, what counts, and the IP hash's salt."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import func, select

from patron.core.runtime import Runtime
from patron.core.settings import Settings
from patron.crm.forms import rates
from patron.crm.forms.models import Form, FormIpSalt, FormRateCounter
from patron.crm.forms.submissions import Outcome, SubmissionMeta, submit
from tests.crm.forms.conftest import MakeForm, good_answers

# The start of a minute, so that offsets within it are exact.
MINUTE = datetime(2026, 3, 2, 9, 15, tzinfo=UTC)
SALTED = datetime(2031, 7, 1, 12, 0, tzinfo=UTC)


class Poster:
    def __init__(
        self, runtime: Runtime, form_id: str, start: datetime = MINUTE, **limits: int
    ) -> None:
        self.runtime, self.form_id, self.start = runtime, uuid.UUID(form_id), start
        self.settings = Settings(**{**runtime.settings.model_dump(), **limits})

    def post(self, seconds: float, ip: str = "192.0.2.1", **answers: Any) -> Outcome:
        meta = SubmissionMeta(received_at=self.start + timedelta(seconds=seconds), ip=ip)
        payload = answers or good_answers(f"{uuid.uuid4().hex[:8]}@example.com")
        with self.runtime.sessions() as session:
            form = session.get(Form, self.form_id)
            assert form is not None
            outcome = submit(session, form=form, payload=payload, meta=meta, settings=self.settings)
            session.commit()
        return outcome


def test_one_address_gets_its_limit_and_retry_after_says_when_there_is_room(
    runtime: Runtime, make_form: MakeForm
) -> None:
    poster = Poster(runtime, make_form()["id"], form_rate_per_ip_minute=3)
    assert [poster.post(10 + i).status for i in range(3)] == ["accepted"] * 3
    refused = poster.post(10)
    assert (refused.status, refused.reason) == ("rejected", "rate_limited")
    assert refused.problem is not None
    assert refused.problem.status == 429
    # Four counted this minute: the next minute starts 50 s from now, and by 30 s into it
    # half of those four have left the window, leaving room for one.
    assert refused.retry_after == 80
    assert poster.post(60 + 29).status == "rejected"  # one second early
    assert poster.post(60 + 59).status == "accepted"
    assert poster.post(10, ip="192.0.2.2").status == "accepted"  # another client


def test_refused_honeypot_and_invalid_posts_count_for_the_address(
    runtime: Runtime, make_form: MakeForm
) -> None:
    poster = Poster(runtime, make_form()["id"], form_rate_per_ip_minute=3)
    assert poster.post(1, patron_website="spam", **good_answers()).reason == "honeypot"
    assert poster.post(2, email="nope").reason == "invalid"
    assert poster.post(3).status == "accepted"
    assert poster.post(4).reason == "rate_limited"


def test_a_form_counts_only_what_it_accepted(runtime: Runtime, make_form: MakeForm) -> None:
    poster = Poster(runtime, make_form()["id"], form_rate_per_form_minute=2)
    assert poster.post(1, ip="192.0.2.10").status == "accepted"
    assert poster.post(2, ip="192.0.2.11", email="bad").reason == "invalid"  # not counted
    assert poster.post(3, ip="192.0.2.12").status == "accepted"
    for i in range(5):
        assert poster.post(4 + i, ip=f"192.0.2.{20 + i}").reason == "rate_limited"
    # Refusals did not count: half a minute into the next one, half of the two are gone.
    assert poster.post(60 + 31, ip="192.0.2.30").status == "accepted"


def test_zero_turns_the_limits_off(runtime: Runtime, make_form: MakeForm) -> None:
    poster = Poster(
        runtime, make_form()["id"], form_rate_per_ip_minute=0, form_rate_per_form_minute=0
    )
    assert {poster.post(1).status for _ in range(30)} == {"accepted"}
    with runtime.readers() as session:
        assert session.scalar(select(func.count()).select_from(FormRateCounter)) == 0


def test_counts_and_salts_are_pruned_and_the_salt_changes_daily(
    runtime: Runtime, make_form: MakeForm
) -> None:
    # Days of their own: a salt, once read, is remembered by the process (and these tests
    # empty the database between them, which a running server never sees).
    poster = Poster(runtime, make_form()["id"], start=SALTED)
    poster.post(1)
    poster.post(86_400 + 1)  # the next day
    with runtime.sessions() as session:
        today, tomorrow = SALTED.date(), SALTED.date() + timedelta(days=1)
        assert rates.hash_ip(session, "192.0.2.1", today) != rates.hash_ip(
            session, "192.0.2.1", tomorrow
        )
        assert rates.hash_ip(session, "192.0.2.1", today) == rates.hash_ip(
            session, "192.0.2.1", today
        )
        # Yesterday's salt stays a day (for posts around midnight), then it is gone.
        rates.prune(session, SALTED + timedelta(days=1, seconds=200))
        assert sorted(session.scalars(select(FormIpSalt.day))) == [today, tomorrow]
        rates.prune(session, SALTED + timedelta(days=2))
        session.commit()
        assert list(session.scalars(select(FormIpSalt.day))) == [tomorrow]
        windows = set(session.scalars(select(FormRateCounter.window)))
    assert windows == set()  # both posts' minutes are over
