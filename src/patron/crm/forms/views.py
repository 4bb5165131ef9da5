"""The public side of forms, without sign-in: the hosted page ``GET /f/{slug}`` and
``POST /f/{slug}``, which takes a browser's form post (answered with a page or a redirect)
or JSON (answered with JSON, from any origin).

A handler reads the post, has :func:`submissions.prepare` check it outside any
transaction, and hands :func:`submissions.store` to the shared write transaction
(``runtime.writer``): the answer comes only once the submission, and for an accepted one its
messages in the event log, are committed.
"""

from __future__ import annotations

import secrets
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import date
from typing import Any
from urllib.parse import urlsplit

import orjson
from fastapi import APIRouter, Request, Response
from fastapi.responses import HTMLResponse, RedirectResponse
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool

from patron.collect.models import Source
from patron.collect.tracking import read_capped
from patron.core.clock import utcnow
from patron.core.errors import PatronError, PayloadTooLarge
from patron.core.runtime import Runtime
from patron.core.web import DB, RuntimeDep, client_ip, json_response
from patron.crm.forms import definitions as d
from patron.crm.forms import rates, service
from patron.crm.forms.models import Form
from patron.crm.forms.rendering import render
from patron.crm.forms.submissions import (
    JSON_CONTENT,
    MAX_BODY_BYTES,
    Draft,
    FormView,
    Outcome,
    SubmissionMeta,
    field_errors,
    parse_body,
    prepare,
    refused,
    store,
)

router = APIRouter(tags=["forms (public)"])
# Any website may post to a form with JSON: no cookie or credential is involved.
CORS_HEADERS = {
    "Access-Control-Allow-Origin": "*",
    "Access-Control-Allow-Methods": "GET, POST, OPTIONS",
    "Access-Control-Allow-Headers": "Content-Type",
    "Access-Control-Expose-Headers": "Retry-After",
    "Access-Control-Max-Age": "86400",
}
TITLES = {
    404: "Form not found",
    410: "This form is closed",
    413: "Too much to send",
    415: "This cannot be sent",
    429: "Too many submissions",
}


# --- the hosted page -------------------------------------------------------------------


def page(
    template: str, *, status: int = 200, form: FormView | None = None, **context: Any
) -> HTMLResponse:
    """A page whose only script and styles are its own (by nonce), posting only to this
    site (and, after a post, redirecting only to the form's redirect URL)."""
    nonce = secrets.token_urlsafe(16)
    targets = "'self'"
    if form is not None and form.redirect_url:
        parts = urlsplit(form.redirect_url)
        targets += f" {parts.scheme}://{parts.netloc}"
    policy = (
        f"default-src 'none'; script-src 'nonce-{nonce}'; style-src 'nonce-{nonce}'; "
        f"img-src data:; form-action {targets}; base-uri 'none'; frame-ancestors 'none'"
    )
    html = render(template, nonce=nonce, form=form, **context)
    headers = {
        "Content-Security-Policy": policy,
        "Cache-Control": "no-store",
        "X-Content-Type-Options": "nosniff",
    }
    return HTMLResponse(html, status_code=status, headers=headers)


def message_page(status: int, message: str, *, title: str | None = None) -> HTMLResponse:
    return page(
        "message.html",
        status=status,
        title=title or TITLES.get(status, "Something went wrong"),
        message=message,
        success=status < 400,
    )


def form_page_response(
    form: FormView,
    values: Mapping[str, Any],
    *,
    status: int = 200,
    errors: Mapping[str, str] | None = None,
    problem: str | None = None,
) -> HTMLResponse:
    return page(
        "page.html",
        status=status,
        form=form,
        values=values,
        errors=errors or {},
        problem=problem,
        action=f"/f/{form.slug}",
    )


def _public_url(request: Request, runtime: Runtime) -> str:
    base = runtime.settings.public_url
    if not base:
        return str(request.url)
    query = f"?{request.url.query}" if request.url.query else ""
    return f"{base.rstrip('/')}{request.url.path}{query}"


def initial_values(form: FormView, request: Request, runtime: Runtime) -> dict[str, Any]:
    """The page's hidden inputs: campaign and anonymous id from the link that led here,
    this page's URL and its referrer; hidden fields take a value from the link too."""
    query = request.query_params
    values: dict[str, Any] = {name: query.get(name, "") for name in (*d.UTM, d.ANONYMOUS)}
    values[d.PAGE_URL] = _public_url(request, runtime)
    values[d.REFERRER] = request.headers.get("referer", "")
    for field in form.fields:
        if field["type"] == "hidden" and field["key"] in query:
            values[field["key"]] = query[field["key"]]
    return values


@router.get("/f/{slug}", include_in_schema=False)
def form_page(slug: str, request: Request, db: DB, runtime: RuntimeDep) -> Response:
    """The hosted form."""
    form = service.form_by_slug(db, slug)
    if form is None:
        return message_page(404, "There is no form at this address.")
    view = FormView.of(form)
    if not view.enabled:
        return message_page(410, "This form no longer takes answers.")
    return form_page_response(view, initial_values(view, request, runtime))


# --- posting ---------------------------------------------------------------------------


# The source form submissions enter the log from, beside the form in one query.
FORM_SOURCE = (
    select(Source.id)
    .where(Source.kind == service.SOURCE_KIND)
    .order_by(Source.created_at)
    .limit(1)
    .scalar_subquery()
)


@dataclass(frozen=True)
class Loaded:
    form: FormView
    source_id: uuid.UUID
    ip_hash: str | None


def _load(runtime: Runtime, slug: str, ip: str | None, day: date) -> Loaded | None:
    """The form at ``slug``, its source, and the client address's hash, read before the
    write transaction (which then has less to do)."""
    with runtime.readers() as db:
        row = db.execute(select(Form, FORM_SOURCE).where(Form.slug == slug.lower())).first()
        if row is None:
            return None
        form, source_id = row
        view = FormView.of(form)
        salt = rates.known_salt(db, day) if ip else None
    if source_id is None:  # forms made before there was a source, or by hand
        source_id = _write_once(runtime, service.form_source)
    if ip and salt is None:  # the day's first post
        _write_once(runtime, lambda db: rates.make_salt(db, day))
        with runtime.readers() as db:
            salt = rates.known_salt(db, day)
    ip_hash = rates.keyed_hash(salt, ip) if ip and salt else None
    return Loaded(view, source_id, ip_hash)


def _write_once(runtime: Runtime, make: Callable[[Session], Any]) -> Any:
    """Make something every post needs in a transaction of its own; if another request
    made it a moment ago, what it made is used."""
    with runtime.sessions() as db:
        try:
            made = make(db)
            db.commit()
        except IntegrityError:
            db.rollback()
            made = make(db)
            db.commit()
    return getattr(made, "id", made)


@router.post(
    "/f/{slug}",
    status_code=201,
    summary="Submit a form (JSON or a browser's form post)",
    responses={
        400: {"description": "An answer is missing or invalid (`field` names it)."},
        404: {"description": "No form at this slug."},
        410: {"description": "The form is disabled."},
        413: {"description": "The post is over 64 KB."},
        429: {"description": "Too many submissions from this client or to this form."},
    },
)
async def submit_form(slug: str, request: Request) -> Response:
    """Accepts `application/json` (an object of answers keyed like the form's inputs,
    consents as `consent.<purpose>`; answered with JSON) or a browser's
    `application/x-www-form-urlencoded` post (answered with the success page, a 303 to the
    form's redirect URL, or the form again with its problems). A 201 means stored."""
    runtime: Runtime = request.app.state.runtime
    as_json = _wants_json(request)
    now, ip = utcnow(), client_ip(request)
    loaded = await run_in_threadpool(_load, runtime, slug, ip, now.date())
    if loaded is None:
        problem = PatronError("there is no form at this address", code="not_found", status=404)
        return _problem(problem, as_json, retry_after=None)
    form, source_id = loaded.form, loaded.source_id
    meta = SubmissionMeta(
        received_at=now,
        ip=ip,
        user_agent=request.headers.get("user-agent"),
        ip_hash=loaded.ip_hash,
    )
    payload: dict[str, Any] = {}
    try:
        raw = await read_capped(request, MAX_BODY_BYTES)
        payload = parse_body(raw, request.headers.get("content-type"))
    except PayloadTooLarge as exc:
        draft = refused(form, meta, exc, "too_large")
    except PatronError as exc:
        draft = refused(form, meta, exc, "invalid")
    else:
        draft = prepare(form, payload, meta, source_id=source_id, settings=runtime.settings)
    outcome = await run_in_threadpool(_store, runtime, draft)
    return _answer(form, draft, outcome, payload, as_json)


def _wants_json(request: Request) -> bool:
    """JSON posts get JSON answers; so does a client that asks for JSON and not HTML."""
    if request.headers.get("content-type", "").startswith(JSON_CONTENT):
        return True
    accept = request.headers.get("accept", "")
    return JSON_CONTENT in accept and "text/html" not in accept


def _store(runtime: Runtime, draft: Draft) -> Outcome:
    settings = runtime.settings
    return runtime.writer.run(lambda db: store(db, draft, settings=settings))


def _answer(
    form: FormView, draft: Draft, outcome: Outcome, payload: Mapping[str, Any], as_json: bool
) -> Response:
    problem = outcome.problem
    if problem is None:  # accepted, or a honeypot answered as if it were
        return _success(form, outcome, as_json)
    if as_json or problem.status != 400:
        return _problem(problem, as_json, retry_after=outcome.retry_after)
    errors = field_errors(draft.errors)
    shown = {k: v for k, v in payload.items() if k != d.HONEYPOT and isinstance(k, str)}
    response = form_page_response(
        form,
        shown,
        status=400,
        errors=errors,
        problem=problem.message if problem.field not in errors else "Please check the answers.",
    )
    response.headers.update(CORS_HEADERS)
    return response


def _success(form: FormView, outcome: Outcome, as_json: bool) -> Response:
    if as_json:
        body = {
            "id": str(outcome.submission_id),
            "status": "accepted",
            "message": form.success_message,
            "redirect_url": form.redirect_url,
        }
        return json_response(body, status_code=201, headers=CORS_HEADERS)
    if form.redirect_url:
        return RedirectResponse(form.redirect_url, status_code=303, headers=CORS_HEADERS)
    response = page("message.html", title=form.name, message=form.success_message, success=True)
    response.headers.update(CORS_HEADERS)
    return response


def _problem(problem: PatronError, as_json: bool, *, retry_after: int | None) -> Response:
    headers = dict(CORS_HEADERS)
    if retry_after is not None:
        headers["Retry-After"] = str(retry_after)
    if as_json:
        return Response(
            orjson.dumps(problem.body()),
            status_code=problem.status,
            media_type="application/json",
            headers=headers,
        )
    response = message_page(problem.status, problem.message)
    response.headers.update(headers)
    return response


@router.options("/f/{slug}", include_in_schema=False)
def preflight() -> Response:
    """CORS preflight for JSON posts from other sites."""
    return Response(status_code=204, headers=CORS_HEADERS)
