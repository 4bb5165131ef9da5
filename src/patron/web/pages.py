"""The server-rendered UI: sign-in, the live event debugger, sources, people.

Every page calls the same service functions as the JSON API. Templates autoescape, because
event payloads carry strings any website visitor can choose. Pages answer with a strict
Content-Security-Policy: the only script that runs is the page's own, marked by a nonce.
"""

from __future__ import annotations

import secrets
import uuid
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import urlencode

import orjson
from fastapi import APIRouter, FastAPI, Form, Query, Request, Response
from fastapi.responses import HTMLResponse, RedirectResponse
from fastapi.staticfiles import StaticFiles
from jinja2 import Environment, FileSystemLoader, select_autoescape
from sqlalchemy import select

from patron.auth import service as auth_service
from patron.auth.api import set_session_cookie
from patron.auth.deps import SESSION_COOKIE
from patron.auth.models import Role
from patron.auth.service import Actor
from patron.collect import service as collect_service
from patron.collect.catalog import catalog_for
from patron.core.errors import InvalidInput, PatronError, Unauthenticated
from patron.core.pagination import ListQuery
from patron.core.web import DB, Limit, RuntimeDep
from patron.crm import deals as crm_deals
from patron.crm import timeline as crm_timeline
from patron.identity import linkage
from patron.identity import service as identity_service
from patron.identity.models import Person
from patron.profiles import service as profile_service
from patron.profiles.access import readable_persons, visible_person

HERE = Path(__file__).parent
templates = Environment(
    loader=FileSystemLoader(HERE / "templates"),
    autoescape=select_autoescape(default=True, default_for_string=True),
    trim_blocks=True,
    lstrip_blocks=True,
)
templates.filters["pretty_json"] = lambda value: orjson.dumps(
    value, option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS
).decode()
templates.filters["when"] = lambda value: value.strftime("%Y-%m-%d %H:%M:%S")

router = APIRouter(include_in_schema=False)
# Who may read the event log, as in the JSON API (admins are always allowed).
READERS = (Role.manager, Role.marketing, Role.analyst)
QueryText = Annotated[str | None, Query()]


def install(app: FastAPI) -> None:
    """Add the pages and their static files to ``app``."""
    app.include_router(router)
    app.mount("/static", StaticFiles(directory=HERE / "static"), name="static")


def render(request: Request, template: str, status_code: int = 200, **context: Any) -> HTMLResponse:
    """A page, with a policy that runs only scripts carrying this response's nonce."""
    nonce = secrets.token_urlsafe(16)
    html = templates.get_template(template).render(request=request, nonce=nonce, **context)
    policy = (
        f"default-src 'self'; script-src 'nonce-{nonce}'; style-src 'self'; img-src 'self' data:; "
        "object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
    )
    headers = {"Content-Security-Policy": policy, "Cache-Control": "no-store"}
    return HTMLResponse(html, status_code=status_code, headers=headers)


def signed_in(request: Request, db: DB) -> Actor | None:
    """The actor of the session cookie, or None when there is no valid session."""
    cookie = request.cookies.get(SESSION_COOKIE)
    if not cookie:
        return None
    try:
        return auth_service.actor_from_login_session(db, cookie)
    except Unauthenticated:
        return None


def to_login(request: Request) -> RedirectResponse:
    target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    return RedirectResponse(f"/login?{_query(next=target)}", status_code=303)


def _query(**params: str | None) -> str:
    return urlencode({k: v for k, v in params.items() if v})


def safe_next(target: str | None) -> str:
    # Only paths on this site: "//host" and "/\host" would send the browser elsewhere.
    if target and target.startswith("/") and not target.startswith(("//", "/\\")):
        return target
    return "/"


@router.get("/")
def home(request: Request, db: DB) -> Response:
    """The event debugger when signed in, else the sign-in page."""
    return RedirectResponse("/events" if signed_in(request, db) else "/login", status_code=303)


@router.get("/login")
def login_form(request: Request, next: QueryText = None) -> Response:
    """The sign-in form."""
    return render(request, "login.html", next=safe_next(next), email="", error=None)


@router.post("/login")
def login(
    request: Request,
    db: DB,
    runtime: RuntimeDep,
    email: Annotated[str, Form()] = "",
    password: Annotated[str, Form()] = "",
    next: Annotated[str, Form()] = "/",
) -> Response:
    """Check the password, start a session, set its cookie and go on to ``next``."""
    try:
        user = auth_service.authenticate(db, email=email, password=password)
    except Unauthenticated as exc:
        return render(
            request, "login.html", 401, next=safe_next(next), email=email, error=exc.message
        )
    settings = runtime.settings
    cookie = auth_service.create_login_session(db, user=user, days=settings.session_days)
    db.commit()
    response = RedirectResponse(safe_next(next), status_code=303)
    set_session_cookie(response, cookie, settings.session_days, settings.cookie_secure)
    return response


@router.post("/logout")
def logout(request: Request, db: DB) -> Response:
    """End this browser's session and go back to the sign-in page."""
    cookie = request.cookies.get(SESSION_COOKIE)
    if cookie:
        auth_service.end_login_session(db, cookie)
        db.commit()
    response = RedirectResponse("/login", status_code=303)
    response.delete_cookie(SESSION_COOKIE)
    return response


@router.get("/events")
def events(
    request: Request,
    db: DB,
    limit: Limit = 50,
    cursor: QueryText = None,
    source: QueryText = None,
    type: QueryText = None,
    event: QueryText = None,
    user_id: Annotated[str | None, Query(alias="userId")] = None,
    anonymous_id: Annotated[str | None, Query(alias="anonymousId")] = None,
    rows: Annotated[bool, Query(description="Only the table body, for live refresh.")] = False,
) -> Response:
    """The live event debugger: the newest stored messages, filtered, refreshed every second."""
    actor = signed_in(request, db)
    if actor is None:
        return to_login(request)
    filters = {
        "source": source or None,
        "type": type or None,
        "event": event or None,
        "userId": user_id or None,
        "anonymousId": anonymous_id or None,
    }
    try:
        actor.require(*READERS)
        page = collect_service.list_events(
            db,
            filters=collect_service.EventFilter(
                source_id=_source_id(filters["source"]),
                type=filters["type"],
                event=filters["event"],
                user_id=filters["userId"],
                anonymous_id=filters["anonymousId"],
            ),
            limit=limit,
            cursor=cursor or None,
        )
    except PatronError as exc:
        return render(request, "error.html", exc.status, actor=actor, error=exc)
    sources = collect_service.list_sources(db)
    context: dict[str, Any] = {
        "actor": actor,
        "page": page,
        "filters": filters,
        "sources": sources,
        "source_names": {s.id: s.name for s in sources},
        "live": cursor is None,
        "older": f"/events?{_query(**filters, cursor=page.next_cursor)}"
        if page.next_cursor
        else None,
        "newest": f"/events?{_query(**filters)}",
        "refresh": f"/events?{_query(**filters, rows='1')}",
    }
    return render(request, "event_rows.html" if rows else "events.html", **context)


def _source_id(value: str | None) -> uuid.UUID | None:
    if value is None:
        return None
    try:
        return uuid.UUID(value)
    except ValueError:
        raise InvalidInput("source must be a source id", field="source") from None


@router.get("/sources")
def sources(request: Request, db: DB, runtime: RuntimeDep) -> Response:
    """The sources, each with its event catalog and, for browsers, the install snippet."""
    actor = signed_in(request, db)
    if actor is None:
        return to_login(request)
    try:
        actor.require(*READERS)
    except PatronError as exc:
        return render(request, "error.html", exc.status, actor=actor, error=exc)
    base = (runtime.settings.public_url or str(request.base_url)).rstrip("/")
    listed = [(s, catalog_for(db, s.id)) for s in collect_service.list_sources(db)]
    return render(request, "sources.html", actor=actor, sources=listed, base=base)


LOOKUP_KINDS = ("email", "user_id", "phone", "anonymous_id")
# Who may split a merge from the person page, as in the JSON API (admins always may).
STEWARDS = (Role.manager,)


@router.get("/people")
def people(
    request: Request,
    db: DB,
    runtime: RuntimeDep,
    cursor: QueryText = None,
    kind: QueryText = None,
    value: QueryText = None,
) -> Response:
    """Every person, newest first; a lookup by identifier opens that person's page."""
    actor = signed_in(request, db)
    if actor is None:
        return to_login(request)
    if kind and value:
        try:
            found = identity_service.find_by_identifier(
                db, kind=kind, value=value, settings=runtime.settings
            )
            visible_person(db, actor, found.id)
        except PatronError as exc:
            page = identity_service.list_persons(
                db, limit=50, cursor=None, where=readable_persons(actor)
            )
            return render(
                request,
                "people.html",
                exc.status,
                actor=actor,
                page=page,
                error=exc.message,
                kind=kind,
                value=value,
                kinds=LOOKUP_KINDS,
                older=None,
            )
        return RedirectResponse(f"/people/{found.id}", status_code=303)
    try:
        page = identity_service.list_persons(
            db, limit=50, cursor=cursor or None, where=readable_persons(actor)
        )
    except PatronError as exc:
        return render(request, "error.html", exc.status, actor=actor, error=exc)
    older = f"/people?{_query(cursor=page.next_cursor)}" if page.next_cursor else None
    return render(
        request,
        "people.html",
        actor=actor,
        page=page,
        error=None,
        kind=kind or "email",
        value=value or "",
        kinds=LOOKUP_KINDS,
        older=older,
    )


@router.get("/people/duplicates")
def duplicates(request: Request, db: DB, cursor: QueryText = None) -> Response:
    """Pairs the matcher found likely to be one person, waiting for someone to decide."""
    actor = signed_in(request, db)
    if actor is None:
        return to_login(request)
    try:
        # The evidence shows names, birth dates and addresses across the whole base: the
        # queue is for data stewards (managers and admins), as in the API.
        actor.require(*STEWARDS)
        page = linkage.list_candidates(db, status="pending", limit=25, cursor=cursor or None)
    except PatronError as exc:
        return render(request, "error.html", exc.status, actor=actor, error=exc)
    ids = {i for c in page.items for i in (c.left_id, c.right_id)}
    persons = {p.id: p for p in db.scalars(select(Person).where(Person.id.in_(ids)))}
    older = f"/people/duplicates?{_query(cursor=page.next_cursor)}" if page.next_cursor else None
    return render(
        request,
        "duplicates.html",
        actor=actor,
        page=page,
        persons=persons,
        older=older,
        may_decide=actor.role in (Role.admin, *STEWARDS),
    )


@router.post("/people/duplicates/run")
def run_duplicates(request: Request, db: DB, runtime: RuntimeDep) -> Response:
    """Run record linkage now over what changed, then show the queue."""
    actor = signed_in(request, db)
    if actor is None:
        return to_login(request)
    try:
        actor.require(*STEWARDS)
        db.rollback()  # scoring reads in its own transaction; hold no lock meanwhile
        linkage.run_matching(
            runtime.readers, runtime.sessions, settings=runtime.settings, actor=actor
        )
    except PatronError as exc:
        return render(request, "error.html", exc.status, actor=actor, error=exc)
    return RedirectResponse("/people/duplicates", status_code=303)


@router.post("/people/duplicates/{candidate_id}/{decision}")
def decide_duplicate(
    request: Request, db: DB, runtime: RuntimeDep, candidate_id: int, decision: str
) -> Response:
    """Accept (merge) or reject a pair from the review queue."""
    actor = signed_in(request, db)
    if actor is None:
        return to_login(request)
    try:
        actor.require(*STEWARDS)
        if decision == "accept":
            linkage.accept_candidate(
                db, candidate_id=candidate_id, settings=runtime.settings, actor=actor
            )
        elif decision == "reject":
            linkage.reject_candidate(db, candidate_id=candidate_id, actor=actor)
        else:
            raise InvalidInput("the decision is accept or reject", field="decision")
        db.commit()
    except PatronError as exc:
        return render(request, "error.html", exc.status, actor=actor, error=exc)
    return RedirectResponse("/people/duplicates", status_code=303)


@router.get("/people/{person_id}")
def person(request: Request, db: DB, person_id: uuid.UUID, cursor: QueryText = None) -> Response:
    """One person: traits with their sources, identities, companies, merges, CRM fields and
    deals, and one timeline of events, activities and changes; log a call, note or task."""
    actor = signed_in(request, db)
    if actor is None:
        return to_login(request)
    try:
        visible_person(db, actor, person_id)
        profile = profile_service.get_profile(db, person_id, actor=actor, with_lineage=True)
        if profile.person.id != person_id:  # a merged person's id: show the survivor
            return RedirectResponse(f"/people/{profile.person.id}", status_code=303)
        scope = crm_timeline.person_scope(db, actor, person_id)
        entries = crm_timeline.timeline(db, actor=actor, scope=scope, limit=50, cursor=cursor)
        query = ListQuery(filters=(f"person_id:eq:{person_id}",), limit=50)
        person_deals = crm_deals.list_deals(db, actor=actor, query=query).items
    except PatronError as exc:
        return render(request, "error.html", exc.status, actor=actor, error=exc)
    owner = profile.person.owner_id
    older = (
        f"/people/{person_id}?{_query(cursor=entries.next_cursor)}" if entries.next_cursor else None
    )
    return render(
        request,
        "person.html",
        actor=actor,
        profile=profile,
        entries=entries,
        deals=person_deals,
        owner=auth_service.get_user(db, owner).email if owner else None,
        older=older,
        may_unmerge=actor.role in (Role.admin, *STEWARDS),
        sources={s.id: s.name for s in collect_service.list_sources(db)},
    )


@router.post("/people/{person_id}/merges/{merge_id}/undo")
def undo_merge(
    request: Request, db: DB, runtime: RuntimeDep, person_id: uuid.UUID, merge_id: int
) -> Response:
    """Split a merge from the person page, then show the person again."""
    actor = signed_in(request, db)
    if actor is None:
        return to_login(request)
    try:
        actor.require(*STEWARDS)
        identity_service.unmerge(db, merge_id=merge_id, settings=runtime.settings, actor=actor)
        db.commit()
    except PatronError as exc:
        return render(request, "error.html", exc.status, actor=actor, error=exc)
    return RedirectResponse(f"/people/{person_id}", status_code=303)
