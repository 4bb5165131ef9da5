"""Form definitions (admins and marketing manage them) and the submissions list.

Accepting a post is :mod:`patron.crm.forms.submissions`; what happens once processing
resolved the person is :mod:`patron.crm.forms.processing`.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, select, true
from sqlalchemy.orm import Session

from patron.auth.models import Role
from patron.auth.service import Actor, get_team, record_audit
from patron.collect.models import Source
from patron.collect.service import create_source
from patron.core.clock import utcnow
from patron.core.errors import Conflict, InvalidInput, NotFound
from patron.core.pagination import Field, ListQuery, Page, keyset_page
from patron.crm.forms import definitions
from patron.crm.forms.models import Form, FormSubmission
from patron.crm.records import changed, check_owner, snapshot
from patron.identity.models import Person
from patron.profiles.access import readable_persons

RECORD_TYPE = "form"
# Who may define forms (admins always may); everyone signed in may read them.
MANAGERS = (Role.marketing,)
SOURCE_NAME = "Patron forms"
SOURCE_KIND = "form"
ACCEPTED, REJECTED, FAILED = "accepted", "rejected", "failed"
STATUSES = (ACCEPTED, REJECTED, FAILED)
EDITABLE = (
    "name",
    "slug",
    "description",
    "submit_label",
    "fields",
    "consents",
    "success_message",
    "redirect_url",
    "owner_id",
    "team_id",
    "enabled",
)
FORM_FIELDS: dict[str, Field] = {
    "id": Field(Form.id, "uuid", uuid.UUID),
    "name": Field(Form.name),
    "slug": Field(Form.slug),
    "enabled": Field(Form.enabled, "bool", lambda v: v.lower() == "true"),
    "owner_id": Field(Form.owner_id, "uuid", uuid.UUID),
    "team_id": Field(Form.team_id, "uuid", uuid.UUID),
    "created_at": Field(Form.created_at, "datetime", datetime.fromisoformat),
    "updated_at": Field(Form.updated_at, "datetime", datetime.fromisoformat),
}
SUBMISSION_FIELDS: dict[str, Field] = {
    "id": Field(FormSubmission.id, "uuid", uuid.UUID),
    "status": Field(FormSubmission.status),
    "reason": Field(FormSubmission.reason),
    "person_id": Field(FormSubmission.person_id, "uuid", uuid.UUID),
    "anonymous_id": Field(FormSubmission.anonymous_id),
    "ip_hash": Field(FormSubmission.ip_hash),
    "attempts": Field(FormSubmission.attempts, "number", int),
    "processed_at": Field(FormSubmission.processed_at, "datetime", datetime.fromisoformat),
    "created_at": Field(FormSubmission.created_at, "datetime", datetime.fromisoformat),
    **{
        f"attribution.{key}": Field(FormSubmission.attribution[key].as_string())
        for key in (*definitions.UTM, "referrer", "landing_page")
    },
}


def form_source(session: Session) -> Source:
    """The built-in source form submissions enter the log from, made on first use."""
    found = session.scalar(
        select(Source).where(Source.kind == SOURCE_KIND).order_by(Source.created_at).limit(1)
    )
    if found is not None:
        return found
    source, _key = create_source(session, name=SOURCE_NAME, kind=SOURCE_KIND)
    return source


def _cleaned(session: Session, values: Mapping[str, Any]) -> dict[str, Any]:
    """A whole definition checked; the owner rule is a fixed owner or a team, not both."""
    owner_id, team_id = values.get("owner_id"), values.get("team_id")
    if owner_id is not None and team_id is not None:
        raise InvalidInput(
            "the lead owner rule is a fixed owner_id or a team_id, not both", field="team_id"
        )
    if team_id is not None:
        try:
            get_team(session, team_id)
        except NotFound as exc:
            raise InvalidInput(f"no team with id {team_id}", field="team_id") from exc
    redirect = definitions.check_redirect(values.get("redirect_url"))
    success = values.get("success_message")
    return {
        "name": definitions.check_name(values.get("name")),
        "slug": definitions.check_slug(values.get("slug")),
        "description": definitions.check_text(values.get("description"), "description", 5000),
        "submit_label": definitions.check_text(
            values.get("submit_label") or "Submit", "submit_label", 100, required=True
        ),
        "fields": definitions.check_fields(values.get("fields") or []),
        "consents": definitions.check_consents(values.get("consents") or []),
        "success_message": definitions.check_text(
            definitions.DEFAULT_SUCCESS if success is None else success, "success_message", 2000
        ),
        "redirect_url": redirect,
        "owner_id": check_owner(session, owner_id),
        "team_id": team_id,
        "enabled": bool(values.get("enabled", True)),
    }


def _require_manager(actor: Actor | None) -> None:
    if actor is not None:
        actor.require(*MANAGERS)


def _check_slug_free(session: Session, slug: str, form_id: uuid.UUID | None) -> None:
    taken = session.scalar(select(Form.id).where(Form.slug == slug))
    if taken is not None and taken != form_id:
        raise Conflict(f"another form has the slug {slug!r}", field="slug")


def create_form(session: Session, *, actor: Actor | None, values: Mapping[str, Any]) -> Form:
    """Define a form (admins and marketing)."""
    _require_manager(actor)
    cleaned = _cleaned(session, values)
    _check_slug_free(session, cleaned["slug"], None)
    form = Form(**cleaned, created_by=actor.email if actor else "system")
    session.add(form)
    session.flush()
    # Made now rather than by the first submission, so concurrent posts never race to it.
    form_source(session)
    record_audit(
        session,
        actor=actor,
        action="create",
        record_type=RECORD_TYPE,
        record_id=str(form.id),
        after=snapshot(form, EDITABLE),
    )
    return form


def update_form(
    session: Session, *, actor: Actor | None, form_id: uuid.UUID, changes: Mapping[str, Any]
) -> Form:
    """Change a form; the whole definition is checked again as it will be."""
    _require_manager(actor)
    form = get_form(session, form_id)
    current = {name: getattr(form, name) for name in EDITABLE}
    cleaned = _cleaned(session, {**current, **changes})
    _check_slug_free(session, cleaned["slug"], form.id)
    before = snapshot(form, EDITABLE)
    for name, value in cleaned.items():
        setattr(form, name, value)
    old, new = changed(before, snapshot(form, EDITABLE))
    if new:
        form.updated_at = utcnow()
        record_audit(
            session,
            actor=actor,
            action="update",
            record_type=RECORD_TYPE,
            record_id=str(form.id),
            before=old,
            after=new,
        )
    session.flush()
    return form


def get_form(session: Session, form_id: uuid.UUID) -> Form:
    form = session.get(Form, form_id)
    if form is None:
        raise NotFound(f"no form with id {form_id}", field="form_id")
    return form


def form_by_slug(session: Session, slug: str) -> Form | None:
    """The form published at ``/f/<slug>`` (enabled or not), or None."""
    return session.scalar(select(Form).where(Form.slug == slug.lower()))


def list_forms(session: Session, *, query: ListQuery) -> Page[Form]:
    """Every form (definitions are configuration, readable by everyone signed in)."""
    return keyset_page(
        session,
        select(Form),
        fields=FORM_FIELDS,
        query=query,
        default_sort="name",
        tiebreak=FORM_FIELDS["id"],
    )


# --- submissions -----------------------------------------------------------------------


def readable_submissions(actor: Actor | None) -> ColumnElement[bool]:
    """A condition on :class:`FormSubmission`: roles that see every person see every
    submission (rejected ones too); the others those of the persons they may see."""
    if actor is None or actor.sees_everything:
        return true()
    return FormSubmission.person_id.in_(select(Person.id).where(readable_persons(actor)))


def list_submissions(
    session: Session,
    *,
    actor: Actor | None,
    form_id: uuid.UUID,
    query: ListQuery,
    status: str | None = None,
) -> Page[FormSubmission]:
    """A form's submissions ``actor`` may see, newest first, filtered and paged."""
    get_form(session, form_id)
    statement = select(FormSubmission).where(
        FormSubmission.form_id == form_id, readable_submissions(actor)
    )
    if status is not None:
        if status not in STATUSES:
            raise InvalidInput(f"status is one of {', '.join(STATUSES)}", field="status")
        statement = statement.where(FormSubmission.status == status)
    return keyset_page(
        session,
        statement,
        fields=SUBMISSION_FIELDS,
        query=query,
        default_sort="-created_at",
        tiebreak=SUBMISSION_FIELDS["id"],
    )


def get_submission(
    session: Session, *, actor: Actor | None, form_id: uuid.UUID, submission_id: uuid.UUID
) -> FormSubmission:
    """One submission, if ``actor`` may see it (else 404, as for one that does not exist)."""
    found = session.scalar(
        select(FormSubmission).where(
            FormSubmission.id == submission_id,
            FormSubmission.form_id == form_id,
            readable_submissions(actor),
        )
    )
    if found is None:
        raise NotFound(f"no submission {submission_id} of this form", field="submission_id")
    return found


def retry_submission(
    session: Session, *, actor: Actor | None, form_id: uuid.UUID, submission_id: uuid.UUID
) -> FormSubmission:
    """Give a failed submission a fresh series of attempts at its lead steps (the retry
    job runs them within a minute)."""
    _require_manager(actor)
    submission = get_submission(session, actor=actor, form_id=form_id, submission_id=submission_id)
    if submission.status != FAILED:
        raise Conflict(
            f"only failed submissions are retried; this one is {submission.status}",
            field="submission_id",
        )
    submission.status = ACCEPTED
    submission.attempts = 0
    submission.next_attempt_at = utcnow()
    record_audit(
        session,
        actor=actor,
        action="retry",
        record_type="form_submission",
        record_id=str(submission.id),
        before={"status": FAILED, "error": submission.error},
        after={"status": ACCEPTED},
    )
    session.flush()
    return submission
