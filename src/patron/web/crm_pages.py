"""The CRM pages: the pipeline board, deals, companies, and my tasks.

Like every page they call the services the JSON API calls, with the signed-in user as the
actor, so record-level visibility and the audit log apply exactly as they do there. Forms
post back and redirect (post/redirect/get); a refused change shows the error page.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import datetime
from decimal import Decimal
from typing import Annotated, Any

from fastapi import APIRouter, FastAPI, Form, Request, Response
from fastapi.responses import RedirectResponse
from sqlalchemy import select

from patron.auth.models import User
from patron.auth.service import Actor
from patron.core.errors import InvalidInput, PatronError
from patron.core.pagination import ListQuery
from patron.core.web import DB
from patron.crm import activities, companies, deals, pipelines, timeline
from patron.crm.models import Company, Deal
from patron.identity.models import Person
from patron.web.pages import QueryText, render, safe_next, signed_in, to_login

router = APIRouter(include_in_schema=False)
FormText = Annotated[str, Form()]
OptionalForm = Annotated[str | None, Form()]
BOARD_LIMIT = 200


def install(app: FastAPI) -> None:
    app.include_router(router)


def _page(request: Request, db: DB, build: Callable[[Actor], Response]) -> Response:
    """Sign-in check and domain errors shared by every CRM page and form."""
    actor = signed_in(request, db)
    if actor is None:
        return to_login(request)
    try:
        return build(actor)
    except PatronError as exc:
        db.rollback()
        return render(request, "error.html", exc.status, actor=actor, error=exc)


def _uuid(value: str | None, field: str) -> uuid.UUID | None:
    if not value:
        return None
    try:
        return uuid.UUID(value)
    except ValueError as exc:
        raise InvalidInput(f"{field} is not an id", field=field) from exc


def _names(db: DB, model: Any, ids: set[uuid.UUID]) -> dict[uuid.UUID, str]:
    """Display names of users, persons or companies, by id."""
    if not ids:
        return {}
    if model is User:
        rows = db.execute(select(User.id, User.name, User.email).where(User.id.in_(ids)))
        return {i: name or email for i, name, email in rows}
    if model is Company:
        rows = db.execute(
            select(Company.id, Company.name, Company.domain).where(Company.id.in_(ids))
        )
        return {i: name or domain or "Company" for i, name, domain in rows}
    names: dict[uuid.UUID, str] = {}
    for person_id, traits in db.execute(select(Person.id, Person.traits).where(Person.id.in_(ids))):
        names[person_id] = person_name(traits)
    return names


def person_name(traits: dict[str, Any]) -> str:
    full = traits.get("name") or f"{traits.get('firstName') or ''} {traits.get('lastName') or ''}"
    return str(full).strip() or str(traits.get("email") or "") or "Anonymous visitor"


# --- the pipeline board and deals ------------------------------------------------------


@router.get("/pipeline")
def pipeline_board(request: Request, db: DB, pipeline: QueryText = None) -> Response:
    """Open deals of one pipeline, a column per stage, with the weighted amount of each."""

    def build(actor: Actor) -> Response:
        available = pipelines.list_pipelines(db)
        if not available:
            return render(request, "pipeline.html", actor=actor, pipelines=[], current=None)
        chosen = _uuid(pipeline, "pipeline")
        current, stages = next(((p, s) for p, s in available if p.id == chosen), available[0])
        query = ListQuery(
            filters=(f"pipeline_id:eq:{current.id}", "status:eq:open"),
            sort="-amount",
            limit=BOARD_LIMIT,
        )
        page = deals.list_deals(db, actor=actor, query=query)
        rotting = {d.id for d in page.items if deals.is_rotting(d, current)}
        columns = []
        for stage in stages:
            in_stage = [d for d in page.items if d.stage_id == stage.id]
            amount = sum((d.amount or Decimal(0) for d in in_stage), Decimal(0))
            weighted = amount * stage.probability / 100
            columns.append(
                {"stage": stage, "deals": in_stage, "amount": amount, "weighted": weighted}
            )
        people = _names(db, Person, {d.person_id for d in page.items if d.person_id})
        firms = _names(db, Company, {d.company_id for d in page.items if d.company_id})
        owners = _names(db, User, {d.owner_id for d in page.items if d.owner_id})
        return render(
            request,
            "pipeline.html",
            actor=actor,
            pipelines=[p for p, _ in available],
            current=current,
            stages=stages,
            columns=columns,
            rotting=rotting,
            people=people,
            firms=firms,
            owners=owners,
            more=page.next_cursor is not None,
        )

    return _page(request, db, build)


@router.post("/deals/{deal_id}/stage")
def move_deal(
    request: Request, db: DB, deal_id: uuid.UUID, stage_id: FormText, next: OptionalForm = None
) -> Response:
    """Move a deal to another stage of its pipeline (recorded in its stage history)."""

    def build(actor: Actor) -> Response:
        stage = _uuid(stage_id, "stage_id")
        deals.update_deal(db, actor=actor, deal_id=deal_id, changes={"stage_id": stage})
        db.commit()
        return RedirectResponse(safe_next(next) if next else f"/deals/{deal_id}", 303)

    return _page(request, db, build)


@router.post("/deals/{deal_id}/status")
def close_deal(
    request: Request,
    db: DB,
    deal_id: uuid.UUID,
    status: FormText,
    lost_reason: OptionalForm = None,
) -> Response:
    """Win, lose (with a reason) or reopen a deal."""

    def build(actor: Actor) -> Response:
        changes: dict[str, Any] = {"status": status}
        if lost_reason:
            changes["lost_reason"] = lost_reason
        deals.update_deal(db, actor=actor, deal_id=deal_id, changes=changes)
        db.commit()
        return RedirectResponse(f"/deals/{deal_id}", 303)

    return _page(request, db, build)


@router.get("/deals/{deal_id}")
def deal_page(request: Request, db: DB, deal_id: uuid.UUID, cursor: QueryText = None) -> Response:
    """One deal: its fields, stage history, and timeline; log a call, a note or a task."""

    def build(actor: Actor) -> Response:
        deal = deals.get_deal(db, actor=actor, deal_id=deal_id)
        pipeline = pipelines.get_pipeline(db, deal.pipeline_id)
        stages = pipelines.stages_of(db, deal.pipeline_id)
        history = deals.stage_history(db, actor=actor, deal_id=deal.id)
        scope = timeline.deal_scope(db, actor, deal.id)
        entries = timeline.timeline(db, actor=actor, scope=scope, limit=50, cursor=cursor or None)
        return render(
            request,
            "deal.html",
            actor=actor,
            deal=deal,
            pipeline=pipeline,
            stages=stages,
            history=history,
            entries=entries,
            rotting=deals.is_rotting(deal, pipeline),
            person=_names(db, Person, {deal.person_id} if deal.person_id else set()),
            firm=_names(db, Company, {deal.company_id} if deal.company_id else set()),
            owner=_names(db, User, {deal.owner_id} if deal.owner_id else set()),
            older=f"/deals/{deal.id}?cursor={entries.next_cursor}" if entries.next_cursor else None,
        )

    return _page(request, db, build)


# --- activities --------------------------------------------------------------------------


@router.post("/activities")
def log_activity(
    request: Request,
    db: DB,
    kind: FormText,
    subject: FormText = "",
    body: FormText = "",
    person_id: OptionalForm = None,
    company_id: OptionalForm = None,
    deal_id: OptionalForm = None,
    due_at: OptionalForm = None,
    duration_minutes: OptionalForm = None,
    outcome: OptionalForm = None,
    next: OptionalForm = None,
) -> Response:
    """Log a call or a note, or create a task, on a person, company or deal."""

    def build(actor: Actor) -> Response:
        values: dict[str, Any] = {"subject": subject, "body": body}
        for name, raw in (
            ("person_id", person_id),
            ("company_id", company_id),
            ("deal_id", deal_id),
        ):
            if raw:
                values[name] = _uuid(raw, name)
        if kind == "task" and due_at:
            try:
                values["due_at"] = datetime.fromisoformat(due_at)
            except ValueError as exc:
                raise InvalidInput("the due time is not a date and time", field="due_at") from exc
        if kind == "call":
            values["direction"] = "outbound"
            if outcome:
                values["outcome"] = outcome
            if duration_minutes:
                try:
                    values["duration_seconds"] = round(float(duration_minutes) * 60)
                except ValueError as exc:
                    raise InvalidInput(
                        "the duration is a number of minutes", field="duration_minutes"
                    ) from exc
        activities.create_activity(db, actor=actor, kind=kind, values=values)
        db.commit()
        return RedirectResponse(safe_next(next), 303)

    return _page(request, db, build)


@router.get("/tasks")
def my_tasks(request: Request, db: DB) -> Response:
    """The signed-in user's open tasks (overdue, today, upcoming) and due reminders."""

    def build(actor: Actor) -> Response:
        tasks = activities.my_tasks(db, actor=actor)
        due = activities.notifications(db, actor=actor)
        every = [*tasks.overdue, *tasks.today, *tasks.upcoming]
        return render(
            request,
            "tasks.html",
            actor=actor,
            tasks=tasks,
            reminders=due,
            people=_names(db, Person, {t.person_id for t in every if t.person_id}),
            firms=_names(db, Company, {t.company_id for t in every if t.company_id}),
            deal_names=dict(
                db.execute(
                    select(Deal.id, Deal.name).where(
                        Deal.id.in_({t.deal_id for t in every if t.deal_id})
                    )
                ).all()
            ),
        )

    return _page(request, db, build)


@router.post("/tasks/{task_id}/done")
def complete_task(request: Request, db: DB, task_id: uuid.UUID) -> Response:
    def build(actor: Actor) -> Response:
        activities.update_activity(db, actor=actor, activity_id=task_id, changes={"done": True})
        db.commit()
        return RedirectResponse("/tasks", 303)

    return _page(request, db, build)


@router.post("/reminders/{task_id}/dismiss")
def dismiss_reminder(request: Request, db: DB, task_id: uuid.UUID) -> Response:
    def build(actor: Actor) -> Response:
        activities.dismiss_notification(db, actor=actor, activity_id=task_id)
        db.commit()
        return RedirectResponse("/tasks", 303)

    return _page(request, db, build)


# --- companies ---------------------------------------------------------------------------


@router.get("/companies")
def company_list(
    request: Request, db: DB, q: QueryText = None, cursor: QueryText = None
) -> Response:
    """Companies the user may see, by name; search by name or domain."""

    def build(actor: Actor) -> Response:
        query = ListQuery(sort="name", limit=50, cursor=cursor or None)
        page = companies.list_companies(db, actor=actor, query=query, search=q or None)
        older = None
        if page.next_cursor:
            older = f"/companies?cursor={page.next_cursor}" + (f"&q={q}" if q else "")
        return render(
            request,
            "companies.html",
            actor=actor,
            page=page,
            q=q or "",
            owners=_names(db, User, {c.owner_id for c in page.items if c.owner_id}),
            older=older,
        )

    return _page(request, db, build)


@router.get("/companies/{company_id}")
def company_page(
    request: Request, db: DB, company_id: uuid.UUID, cursor: QueryText = None
) -> Response:
    """One company: its fields, people, deals and timeline; log a call, note or task."""

    def build(actor: Actor) -> Response:
        company = companies.get_company(db, actor=actor, company_id=company_id)
        people = companies.persons_of(db, actor=actor, company_id=company.id)
        query = ListQuery(filters=(f"company_id:eq:{company.id}",), limit=100)
        its_deals = deals.list_deals(db, actor=actor, query=query).items
        scope = timeline.company_scope(db, actor, company.id)
        entries = timeline.timeline(db, actor=actor, scope=scope, limit=50, cursor=cursor or None)
        return render(
            request,
            "company.html",
            actor=actor,
            company=company,
            people=people,
            deals=its_deals,
            entries=entries,
            owner=_names(db, User, {company.owner_id} if company.owner_id else set()),
            older=(
                f"/companies/{company.id}?cursor={entries.next_cursor}"
                if entries.next_cursor
                else None
            ),
        )

    return _page(request, db, build)
