"""The forms management API: definitions (admins and marketing), the embeddable HTML, and
the submissions of each form with why any was rejected."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Query, Request, Response, status

from patron.auth.deps import CurrentActor
from patron.core.web import DB, ListParams, RuntimeDep
from patron.crm.forms import service
from patron.crm.forms.models import Form
from patron.crm.forms.rendering import embed_html
from patron.crm.forms.schemas import (
    FormIn,
    FormOut,
    FormPage,
    FormPatch,
    SubmissionOut,
    SubmissionPage,
)
from patron.crm.forms.submissions import FormView

router = APIRouter(prefix="/v1/forms", tags=["forms"])
Status = Annotated[str | None, Query(description="accepted, rejected or failed.")]


def _base(request: Request, runtime: RuntimeDep) -> str:
    return (runtime.settings.public_url or str(request.base_url)).rstrip("/")


def _out(form: Form, base: str) -> FormOut:
    out = FormOut.model_validate(form)
    out.url = f"{base}/f/{form.slug}"
    return out


@router.post("", response_model=FormOut, status_code=status.HTTP_201_CREATED)
def create_form(
    body: FormIn, db: DB, actor: CurrentActor, request: Request, runtime: RuntimeDep
) -> FormOut:
    """Define a form: fields and their mapping to traits and identifiers, consents, the
    success message or redirect, the lead owner rule (admins and marketing)."""
    form = service.create_form(db, actor=actor, values=body.model_dump())
    db.commit()
    return _out(form, _base(request, runtime))


@router.get("", response_model=FormPage)
def list_forms(
    db: DB, _actor: CurrentActor, params: ListParams, request: Request, runtime: RuntimeDep
) -> FormPage:
    """Every form, with filters (`enabled:eq:true`), sort and keyset pages."""
    page = service.list_forms(db, query=params)
    base = _base(request, runtime)
    return FormPage(
        items=[_out(f, base) for f in page.items],
        total=page.total,
        total_exact=page.total_exact,
        next_cursor=page.next_cursor,
    )


@router.get("/{form_id}", response_model=FormOut)
def get_form(
    form_id: uuid.UUID, db: DB, _actor: CurrentActor, request: Request, runtime: RuntimeDep
) -> FormOut:
    """A form's definition and its public URL."""
    return _out(service.get_form(db, form_id), _base(request, runtime))


@router.patch("/{form_id}", response_model=FormOut)
def update_form(
    form_id: uuid.UUID,
    body: FormPatch,
    db: DB,
    actor: CurrentActor,
    request: Request,
    runtime: RuntimeDep,
) -> FormOut:
    """Change a form (`{"enabled": false}` closes it; its submissions stay)."""
    form = service.update_form(
        db, actor=actor, form_id=form_id, changes=body.model_dump(exclude_unset=True)
    )
    db.commit()
    return _out(form, _base(request, runtime))


@router.get("/{form_id}/embed", response_class=Response)
def embed_form(
    form_id: uuid.UUID, db: DB, _actor: CurrentActor, request: Request, runtime: RuntimeDep
) -> Response:
    """HTML to paste into any page: a plain form posting to the public URL, which fills in
    the page's campaign, URL, referrer and the snippet's anonymous id. Sent as text, to
    copy (a browser shows it rather than running it)."""
    form = service.get_form(db, form_id)
    html = embed_html(FormView.of(form), base_url=_base(request, runtime))
    return Response(html, media_type="text/plain; charset=utf-8")


@router.get("/{form_id}/submissions", response_model=SubmissionPage)
def list_submissions(
    form_id: uuid.UUID, db: DB, actor: CurrentActor, params: ListParams, status: Status = None
) -> SubmissionPage:
    """A form's submissions you may see, newest first: `status` accepted, rejected (with
    `reason`) or failed; filters on `reason`, `person_id`, `processed_at`,
    `attribution.utm_source` and the like."""
    page = service.list_submissions(db, actor=actor, form_id=form_id, query=params, status=status)
    return SubmissionPage(
        items=[SubmissionOut.model_validate(s) for s in page.items],
        total=page.total,
        total_exact=page.total_exact,
        next_cursor=page.next_cursor,
    )


@router.get("/{form_id}/submissions/{submission_id}", response_model=SubmissionOut)
def get_submission(
    form_id: uuid.UUID, submission_id: uuid.UUID, db: DB, actor: CurrentActor
) -> SubmissionOut:
    """One submission."""
    found = service.get_submission(db, actor=actor, form_id=form_id, submission_id=submission_id)
    return SubmissionOut.model_validate(found)


@router.post("/{form_id}/submissions/{submission_id}/retry", response_model=SubmissionOut)
def retry_submission(
    form_id: uuid.UUID, submission_id: uuid.UUID, db: DB, actor: CurrentActor
) -> SubmissionOut:
    """Try a failed submission's lead steps again (admins and marketing)."""
    found = service.retry_submission(db, actor=actor, form_id=form_id, submission_id=submission_id)
    db.commit()
    return SubmissionOut.model_validate(found)
