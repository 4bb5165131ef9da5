"""What a form submission does once processing has resolved its person: the lead steps.

Runs as a processing step after identity resolution (``pipeline.py`` registers
:func:`after_forms`), for the ``Form Submitted`` tracks of the forms' own source. For each
submission, in a savepoint of its own: the lifecycle stage becomes ``lead`` when it was
lower, the form's owner rule applies, the touches are recorded on the person, the
submission is marked processed, and an audit entry ``form_submitted`` says so (workflow
rules trigger on it). A failure is recorded on the submission and retried with backoff by
:func:`retry_due`; it never holds up the processing loop.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Sequence
from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from patron.auth.models import User
from patron.auth.service import record_audit
from patron.collect.models import Event, LogEntry, Source
from patron.core.clock import utcnow
from patron.crm.contacts import update_contact
from patron.crm.events import FORM_SUBMITTED
from patron.crm.forms.attribution import record_touch, touch_of
from patron.crm.forms.models import Form, FormSubmission
from patron.crm.forms.service import ACCEPTED, FAILED, SOURCE_KIND, form_source
from patron.crm.forms.submissions import track_message_id
from patron.identity.models import Person, PersonEvent
from patron.identity.service import live_person

log = logging.getLogger("patron.forms")
# Lifecycle stages a form submission moves up to "lead". "other" stays: somebody put the
# person off the funnel on purpose (a partner, a supplier), and a form does not undo that.
BELOW_LEAD = (None, "subscriber")
MAX_ATTEMPTS = 8
FIRST_RETRY = timedelta(minutes=1)
LONGEST_RETRY = timedelta(hours=6)
RETRY_BATCH = 100


def after_forms(session: Session, events: Sequence[LogEntry]) -> None:
    """Processing step: the lead steps of the submissions whose track is in this batch."""
    tracks = [e for e in events if e.type == "track" and e.event == FORM_SUBMITTED]
    if not tracks:
        return
    ours = set(session.scalars(select(Source.id).where(Source.kind == SOURCE_KIND)))
    tracks = [e for e in tracks if e.source_id in ours]
    persons = _persons_of(session, [e.seq for e in tracks])
    ids = [i for i in (_submission_id(e) for e in tracks) if i is not None]
    # One query loads them all; the lookups below then find them in the session.
    list(session.scalars(select(FormSubmission).where(FormSubmission.id.in_(ids))))
    now = utcnow()
    for event in tracks:
        submission = _pending(session, event)
        if submission is not None:
            attempt(session, submission, persons.get(event.seq), now)


def _submission_id(event: LogEntry) -> uuid.UUID | None:
    properties = event.payload.get("properties")
    raw = properties.get("submission_id") if isinstance(properties, dict) else None
    try:
        return uuid.UUID(str(raw))
    except ValueError:
        return None


def _persons_of(session: Session, seqs: Sequence[int]) -> dict[int, uuid.UUID]:
    if not seqs:
        return {}
    rows = session.execute(
        select(PersonEvent.seq, PersonEvent.person_id).where(PersonEvent.seq.in_(seqs))
    )
    return {int(seq): person for seq, person in rows}


def _pending(session: Session, event: LogEntry) -> FormSubmission | None:
    """The event's submission, if its lead steps have yet to run (a rebuild replays the
    log: a processed submission is left as it is)."""
    submission_id = _submission_id(event)
    if submission_id is None:
        return None
    submission = session.get(FormSubmission, submission_id)
    if submission is None or submission.status != ACCEPTED or submission.processed_at:
        return None
    return submission


def attempt(
    session: Session, submission: FormSubmission, person_id: uuid.UUID | None, now: datetime
) -> bool:
    """Run the lead steps in a savepoint; on failure, record it and when to try again."""
    try:
        with session.begin_nested():
            apply_lead_steps(session, submission, person_id, now)
    except Exception as exc:  # whatever it was, the loop goes on and the job retries it
        log.warning("form submission %s: lead steps failed: %s", submission.id, exc)
        _failed(submission, exc, now)
        session.flush()
        return False
    return True


def apply_lead_steps(
    session: Session, submission: FormSubmission, person_id: uuid.UUID | None, now: datetime
) -> None:
    """Lifecycle stage, owner rule, touches, processed mark and audit entry, or raise."""
    if person_id is None:
        raise LookupError("processing resolved the submission to no person")
    person = live_person(session, person_id)
    form = session.get(Form, submission.form_id)
    if form is None:
        raise LookupError(f"form {submission.form_id} is gone")
    changes: dict[str, object] = {}
    if person.lifecycle_stage in BELOW_LEAD:
        changes["lifecycle_stage"] = "lead"
    if form.owner_id is not None and person.owner_id is None and _active(session, form.owner_id):
        changes["owner_id"] = form.owner_id
    if changes:
        person, _, _ = update_contact(session, actor=None, person_id=person.id, changes=changes)
    if record_touch(person, touch_of(submission)):
        person.updated_at = now
    submission.person_id = person.id
    submission.assign_team_id = form.team_id
    submission.processed_at = now
    submission.next_attempt_at = None
    submission.error = None
    record_audit(
        session,
        actor=None,
        action="form_submitted",
        record_type="person",
        record_id=str(person.id),
        after={"form_id": str(form.id), "submission_id": str(submission.id)},
    )
    session.flush()


def _active(session: Session, user_id: uuid.UUID) -> bool:
    """A deactivated owner gets no new leads; the lead stays unowned for assignment."""
    user = session.get(User, user_id)
    return user is not None and user.active


def _failed(submission: FormSubmission, exc: Exception, now: datetime) -> None:
    submission.attempts += 1
    submission.error = f"{type(exc).__name__}: {exc}".replace("\x00", "")[:2000]
    if submission.attempts >= MAX_ATTEMPTS:
        submission.status = FAILED
        submission.next_attempt_at = None
        return
    delay = min(FIRST_RETRY * 2 ** (submission.attempts - 1), LONGEST_RETRY)
    submission.next_attempt_at = now + delay


def retry_due(session: Session, *, now: datetime) -> int:
    """Try the lead steps again for the submissions whose retry time has come; returns how
    many succeeded. One whose track processing has not reached yet is left for it."""
    due = list(
        session.scalars(
            select(FormSubmission)
            .where(
                FormSubmission.status == ACCEPTED,
                FormSubmission.processed_at.is_(None),
                FormSubmission.next_attempt_at <= now,
            )
            .order_by(FormSubmission.next_attempt_at)
            .limit(RETRY_BATCH)
        )
    )
    if not due:
        return 0
    source_id = form_source(session).id
    done = 0
    for submission in due:
        seq = session.scalar(
            select(Event.seq).where(
                Event.source_id == source_id,
                Event.message_id == track_message_id(submission.id),
            )
        )
        person = None if seq is None else session.get(PersonEvent, seq)
        if person is not None:
            done += attempt(session, submission, person.person_id, now)
    return done


def preferred_teams(
    session: Session, person_ids: Sequence[uuid.UUID]
) -> dict[uuid.UUID, uuid.UUID]:
    """The team each of these persons should be assigned to first: that of the latest form
    they sent with a team rule (counting the forms sent by persons merged into them)."""
    if not person_ids:
        return {}
    merged = session.execute(
        select(Person.id, Person.merged_into).where(Person.merged_into.in_(list(person_ids)))
    )
    live = {p: p for p in person_ids} | {m: survivor for m, survivor in merged if survivor}
    rows = session.execute(
        select(FormSubmission.person_id, FormSubmission.assign_team_id)
        .where(
            FormSubmission.person_id.in_(list(live)),
            FormSubmission.assign_team_id.is_not(None),
            FormSubmission.processed_at.is_not(None),
        )
        .order_by(FormSubmission.created_at)
    )
    found: dict[uuid.UUID, uuid.UUID] = {}
    for person, team in rows:
        if person is not None and team is not None:
            found[live[person]] = team  # later submissions overwrite earlier ones
    return found
