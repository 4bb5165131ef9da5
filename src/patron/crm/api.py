"""The CRM API: contacts (the CRM side of persons), companies, custom fields, sharing."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Annotated

from fastapi import APIRouter, Body, Query, Response, status
from fastapi.responses import StreamingResponse

from patron.auth import service as auth
from patron.auth.deps import AdminActor, CurrentActor
from patron.auth.models import RecordShare
from patron.core.errors import NotFound
from patron.core.pagination import Page
from patron.core.web import DB, Cursor, Limit, ListParams, RuntimeDep
from patron.crm import activities, companies, contacts, deals, exports, inbound, pipelines
from patron.crm import fields as custom_fields
from patron.crm import timeline as timelines
from patron.crm.access import writable_company, writable_deal
from patron.crm.leads import scoring as lead_scoring
from patron.crm.models import Activity, Company, CustomField, Deal, Pipeline, Stage
from patron.crm.pipelines import StageSpec
from patron.crm.schemas import (
    ActivityIn,
    ActivityOut,
    ActivityPage,
    ActivityPatch,
    CompanyContactOut,
    CompanyIn,
    CompanyMergeIn,
    CompanyMergeOut,
    CompanyOut,
    CompanyPage,
    CompanyPatch,
    ContactOut,
    ContactPage,
    ContactPatch,
    CustomFieldIn,
    CustomFieldOut,
    DealIn,
    DealOut,
    DealPage,
    DealPatch,
    FieldConflict,
    ForecastRowOut,
    InboundEmailOut,
    MyTasksOut,
    NotificationOut,
    PersonLinkIn,
    PipelineIn,
    PipelineOut,
    PipelinePatch,
    ShareIn,
    ShareOut,
    StageOut,
    StageTimeOut,
    TimelineEntryOut,
    TimelineOut,
)
from patron.identity.models import Person
from patron.profiles.access import visible_person, writable_person

router = APIRouter(prefix="/v1", tags=["crm"])
Search = Annotated[
    str | None, Query(description="Words that must all match (names, emails, phones, companies).")
]
Archived = Annotated[bool, Query(description="List the archived records instead.")]


def _contacts_out(db: DB, persons: list[Person]) -> list[ContactOut]:
    """Contacts with their visible lead scores (one query for the lot)."""
    scores = lead_scoring.visible_scores(db, [p.id for p in persons])
    return [ContactOut.model_validate(p).model_copy(update=scores[p.id]) for p in persons]


def _contact_out(db: DB, person: Person) -> ContactOut:
    return _contacts_out(db, [person])[0]


def _contact_page(db: DB, page: Page[Person]) -> ContactPage:
    items = _contacts_out(db, page.items)
    return ContactPage(
        items=items, total=page.total, total_exact=page.total_exact, next_cursor=page.next_cursor
    )


def _company_page(page: Page[Company]) -> CompanyPage:
    items = [CompanyOut.model_validate(c) for c in page.items]
    return CompanyPage(
        items=items, total=page.total, total_exact=page.total_exact, next_cursor=page.next_cursor
    )


# --- contacts --------------------------------------------------------------------------


@router.get("/contacts", response_model=ContactPage)
def list_contacts(
    db: DB, actor: CurrentActor, params: ListParams, q: Search = None, archived: Archived = False
) -> ContactPage:
    """Persons you may see, with filters on any field (`custom.<key>` and `traits.<name>`
    too), search, sort and keyset pages."""
    page = contacts.list_contacts(db, actor=actor, query=params, search=q, archived=archived)
    return _contact_page(db, page)


@router.get("/contacts/export.csv", response_class=StreamingResponse)
def export_contacts(
    actor: CurrentActor,
    runtime: RuntimeDep,
    params: ListParams,
    q: Search = None,
    archived: Archived = False,
) -> StreamingResponse:
    """The filtered contact list (everything `GET /v1/contacts` takes) as CSV, every page."""
    return _csv("contacts", actor, runtime, params, q, archived)


def _csv(
    kind: str,
    actor: CurrentActor,
    runtime: RuntimeDep,
    params: ListParams,
    q: str | None,
    archived: bool,
) -> StreamingResponse:
    rows = exports.export_csv(
        runtime.readers, kind=kind, actor=actor, query=params, search=q, archived=archived
    )
    return _streamed_csv(kind, rows)


def _streamed_csv(kind: str, rows: Iterator[str]) -> StreamingResponse:
    return StreamingResponse(
        rows,
        media_type="text/csv",
        headers={"Content-Disposition": f'attachment; filename="{kind}.csv"'},
    )


@router.get("/contacts/{person_id}", response_model=ContactOut)
def get_contact(person_id: uuid.UUID, db: DB, actor: CurrentActor) -> ContactOut:
    """A person's CRM record (the whole profile is `GET /v1/persons/{id}`)."""
    return _contact_out(db, visible_person(db, actor, person_id))


@router.patch("/contacts/{person_id}", response_model=ContactOut)
def update_contact(
    person_id: uuid.UUID, body: ContactPatch, db: DB, actor: CurrentActor
) -> ContactOut:
    """Change owner, lifecycle stage, lead status, tags or custom fields."""
    person, _, _ = contacts.update_contact(
        db, actor=actor, person_id=person_id, changes=body.model_dump(exclude_unset=True)
    )
    db.commit()
    return _contact_out(db, person)


@router.post("/contacts/{person_id}/archive", response_model=ContactOut)
def archive_contact(person_id: uuid.UUID, db: DB, actor: CurrentActor) -> ContactOut:
    """Take a person off the contact lists (the CDP keeps them)."""
    person = contacts.set_archived(db, actor=actor, person_id=person_id, archived=True)
    db.commit()
    return _contact_out(db, person)


@router.post("/contacts/{person_id}/restore", response_model=ContactOut)
def restore_contact(person_id: uuid.UUID, db: DB, actor: CurrentActor) -> ContactOut:
    """Bring an archived person back to the contact lists."""
    person = contacts.set_archived(db, actor=actor, person_id=person_id, archived=False)
    db.commit()
    return _contact_out(db, person)


# --- companies -------------------------------------------------------------------------


@router.post("/companies", response_model=CompanyOut, status_code=status.HTTP_201_CREATED)
def create_company(body: CompanyIn, db: DB, actor: CurrentActor) -> Company:
    """Create a company (the domain, normalised, must be unused)."""
    company = companies.create_company(db, actor=actor, values=body.model_dump(exclude_unset=True))
    db.commit()
    return company


@router.get("/companies", response_model=CompanyPage)
def list_companies(
    db: DB, actor: CurrentActor, params: ListParams, q: Search = None, archived: Archived = False
) -> CompanyPage:
    """Companies you may see, with filters, search (name, domain), sort and keyset pages."""
    page = companies.list_companies(db, actor=actor, query=params, search=q, archived=archived)
    return _company_page(page)


@router.get("/companies/export.csv", response_class=StreamingResponse)
def export_companies(
    actor: CurrentActor,
    runtime: RuntimeDep,
    params: ListParams,
    q: Search = None,
    archived: Archived = False,
) -> StreamingResponse:
    """The filtered company list (everything `GET /v1/companies` takes) as CSV."""
    return _csv("companies", actor, runtime, params, q, archived)


@router.get("/companies/{company_id}", response_model=CompanyOut)
def get_company(company_id: uuid.UUID, db: DB, actor: CurrentActor) -> Company:
    """A company; the id of a merged company answers with the one it was merged into."""
    return companies.get_company(db, actor=actor, company_id=company_id)


@router.patch("/companies/{company_id}", response_model=CompanyOut)
def update_company(
    company_id: uuid.UUID, body: CompanyPatch, db: DB, actor: CurrentActor
) -> Company:
    """Change the fields given."""
    company = companies.update_company(
        db, actor=actor, company_id=company_id, changes=body.model_dump(exclude_unset=True)
    )
    db.commit()
    return company


@router.post("/companies/{company_id}/archive", response_model=CompanyOut)
def archive_company(company_id: uuid.UUID, db: DB, actor: CurrentActor) -> Company:
    """Archive a company: it leaves the lists (`?archived=true` shows it)."""
    company = companies.set_archived(db, actor=actor, company_id=company_id, archived=True)
    db.commit()
    return company


@router.post("/companies/{company_id}/restore", response_model=CompanyOut)
def restore_company(company_id: uuid.UUID, db: DB, actor: CurrentActor) -> Company:
    """Bring an archived company back."""
    company = companies.set_archived(db, actor=actor, company_id=company_id, archived=False)
    db.commit()
    return company


@router.get("/companies/{company_id}/persons", response_model=list[CompanyContactOut])
def company_persons(company_id: uuid.UUID, db: DB, actor: CurrentActor) -> list[CompanyContactOut]:
    """The persons at a company you may see, with their role there."""
    rows = companies.persons_of(db, actor=actor, company_id=company_id)
    outs = _contacts_out(db, [p for p, _ in rows])
    return [
        CompanyContactOut(**out.model_dump(), role=link.role)
        for out, (_, link) in zip(outs, rows, strict=True)
    ]


@router.put("/companies/{company_id}/persons/{person_id}", status_code=status.HTTP_204_NO_CONTENT)
def link_person(
    company_id: uuid.UUID,
    person_id: uuid.UUID,
    db: DB,
    actor: CurrentActor,
    body: PersonLinkIn | None = None,
) -> Response:
    """Link a person to the company with their role there (or change the role); the body
    is optional, as a link needs no role."""
    role = body.role if body is not None else None
    companies.link_person_to_company(
        db, actor=actor, company_id=company_id, person_id=person_id, role=role
    )
    db.commit()
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.delete(
    "/companies/{company_id}/persons/{person_id}", status_code=status.HTTP_204_NO_CONTENT
)
def unlink_person(
    company_id: uuid.UUID, person_id: uuid.UUID, db: DB, actor: CurrentActor
) -> Response:
    """Take a person off the company."""
    companies.unlink_person(db, actor=actor, company_id=company_id, person_id=person_id)
    db.commit()
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.get("/companies/{company_id}/merge-preview", response_model=CompanyMergeOut)
def preview_merge(
    company_id: uuid.UUID,
    db: DB,
    actor: CurrentActor,
    other_id: uuid.UUID,
    prefer: Annotated[list[str] | None, Query()] = None,
) -> CompanyMergeOut:
    """What merging `other_id` into this company would give, with the conflicting fields."""
    plan = companies.plan_merge(
        db,
        actor=actor,
        company_id=company_id,
        other_id=other_id,
        prefer_other=frozenset(prefer or ()),
    )
    return _merge_out(plan)


@router.post("/companies/{company_id}/merge", response_model=CompanyMergeOut)
def merge_company(
    company_id: uuid.UUID, body: CompanyMergeIn, db: DB, actor: CurrentActor
) -> CompanyMergeOut:
    """Merge a duplicate into this company; conflicts keep this company's values unless
    named in `prefer`."""
    plan = companies.merge_companies(
        db,
        actor=actor,
        company_id=company_id,
        other_id=body.other_id,
        prefer_other=frozenset(body.prefer),
    )
    db.commit()
    return _merge_out(plan)


def _merge_out(plan: companies.MergePlan) -> CompanyMergeOut:
    return CompanyMergeOut(
        survivor_id=plan.survivor.id,
        merged_id=plan.merged.id,
        conflicts=[FieldConflict(**c) for c in plan.conflicts],
        result=plan.result,
    )


# --- sharing ---------------------------------------------------------------------------


def _writable(db: DB, actor: CurrentActor, record_type: str, record_id: uuid.UUID) -> uuid.UUID:
    if record_type == "contacts":
        return writable_person(db, actor, record_id).id
    if record_type == "deals":
        return writable_deal(db, actor, record_id).id
    return writable_company(db, actor, record_id).id


SHARED = ("contacts", "companies", "deals")
TYPES = {"contacts": "person", "companies": "company", "deals": "deal"}


@router.get("/{kind}/{record_id}/shares", response_model=list[ShareOut])
def list_shares(kind: str, record_id: uuid.UUID, db: DB, actor: CurrentActor) -> list[RecordShare]:
    """Who a contact, company or deal is shared with (`kind`: contacts, companies, deals)."""
    found = _writable(db, actor, _kind(kind), record_id)
    return auth.list_shares(db, record_type=TYPES[kind], record_id=found)


@router.post(
    "/{kind}/{record_id}/shares", response_model=ShareOut, status_code=status.HTTP_201_CREATED
)
def share(
    kind: str, record_id: uuid.UUID, body: ShareIn, db: DB, actor: CurrentActor
) -> RecordShare:
    """Share a contact, company or deal with a user or a team: they may see and change it."""
    found = _writable(db, actor, _kind(kind), record_id)
    made = auth.share_record(
        db,
        record_type=TYPES[kind],
        record_id=found,
        user_id=body.user_id,
        team_id=body.team_id,
        actor=actor,
    )
    db.commit()
    return made


@router.delete("/{kind}/{record_id}/shares/{share_id}", status_code=status.HTTP_204_NO_CONTENT)
def unshare(
    kind: str, record_id: uuid.UUID, share_id: int, db: DB, actor: CurrentActor
) -> Response:
    """Stop sharing."""
    found = _writable(db, actor, _kind(kind), record_id)
    auth.unshare_record(
        db, record_type=TYPES[kind], record_id=found, share_id=share_id, actor=actor
    )
    db.commit()
    return Response(status_code=status.HTTP_204_NO_CONTENT)


def _kind(kind: str) -> str:
    if kind not in SHARED:
        raise NotFound(f"no shareable records called {kind!r}", field="kind")
    return kind


# --- custom fields ---------------------------------------------------------------------


@router.get("/custom-fields", response_model=list[CustomFieldOut])
def list_custom_fields(
    db: DB, _actor: CurrentActor, record_type: str | None = None
) -> list[CustomField]:
    """Custom field definitions, of one record type or all."""
    return custom_fields.list_fields(db, record_type)


@router.post("/custom-fields", response_model=CustomFieldOut, status_code=status.HTTP_201_CREATED)
def create_custom_field(body: CustomFieldIn, db: DB, actor: AdminActor) -> CustomField:
    """Add a typed field to persons, companies, deals or tickets (admins)."""
    field = custom_fields.create_field(db, actor=actor, **body.model_dump())
    db.commit()
    return field


@router.delete("/custom-fields/{field_id}", status_code=status.HTTP_204_NO_CONTENT)
def delete_custom_field(field_id: int, db: DB, actor: AdminActor) -> Response:
    """Remove a custom field definition (admins)."""
    custom_fields.delete_field(db, field_id=field_id, actor=actor)
    db.commit()
    return Response(status_code=status.HTTP_204_NO_CONTENT)


# --- pipelines -------------------------------------------------------------------------


def _pipeline_out(pipeline: Pipeline, stages: list[Stage]) -> PipelineOut:
    return PipelineOut(
        id=pipeline.id,
        name=pipeline.name,
        rotting_days=pipeline.rotting_days,
        stages=[StageOut.model_validate(s) for s in stages],
        created_at=pipeline.created_at,
    )


def _specs(body: PipelineIn | PipelinePatch) -> list[StageSpec] | None:
    if body.stages is None:
        return None
    return [StageSpec(name=s.name, probability=s.probability, id=s.id) for s in body.stages]


@router.post("/pipelines", response_model=PipelineOut, status_code=status.HTTP_201_CREATED)
def create_pipeline(body: PipelineIn, db: DB, actor: AdminActor) -> PipelineOut:
    """Create a pipeline with its ordered stages (admins)."""
    pipeline = pipelines.create_pipeline(
        db, name=body.name, rotting_days=body.rotting_days, stages=_specs(body) or [], actor=actor
    )
    db.commit()
    return _pipeline_out(pipeline, pipelines.stages_of(db, pipeline.id))


@router.get("/pipelines", response_model=list[PipelineOut])
def list_pipelines(db: DB, _actor: CurrentActor) -> list[PipelineOut]:
    """Every pipeline with its stages in order."""
    return [_pipeline_out(p, stages) for p, stages in pipelines.list_pipelines(db)]


@router.get("/pipelines/{pipeline_id}", response_model=PipelineOut)
def get_pipeline(pipeline_id: uuid.UUID, db: DB, _actor: CurrentActor) -> PipelineOut:
    """One pipeline with its stages."""
    pipeline = pipelines.get_pipeline(db, pipeline_id)
    return _pipeline_out(pipeline, pipelines.stages_of(db, pipeline.id))


@router.patch("/pipelines/{pipeline_id}", response_model=PipelineOut)
def update_pipeline(
    pipeline_id: uuid.UUID, body: PipelinePatch, db: DB, actor: AdminActor
) -> PipelineOut:
    """Rename, change rotting, or reorder, rename, add and remove stages (admins)."""
    pipeline = pipelines.update_pipeline(
        db,
        pipeline_id=pipeline_id,
        name=body.name,
        rotting_days=body.rotting_days,
        set_rotting="rotting_days" in body.model_fields_set,
        stages=_specs(body),
        actor=actor,
    )
    db.commit()
    return _pipeline_out(pipeline, pipelines.stages_of(db, pipeline.id))


# --- deals -----------------------------------------------------------------------------


@dataclass
class _Loaded:
    """Stages and pipelines a list has loaded already: the session holds only weak
    references, so each deal of a page would fetch its stage and pipeline again."""

    stages: dict[uuid.UUID, Stage] = field(default_factory=dict)
    pipelines: dict[uuid.UUID, Pipeline] = field(default_factory=dict)


def _deal_out(db: DB, deal: Deal, loaded: _Loaded | None = None) -> DealOut:
    loaded = loaded or _Loaded()
    stage = loaded.stages.get(deal.stage_id)
    if stage is None:
        stage = loaded.stages[deal.stage_id] = db.get_one(Stage, deal.stage_id)
    pipeline = loaded.pipelines.get(deal.pipeline_id)
    if pipeline is None:
        pipeline = loaded.pipelines[deal.pipeline_id] = db.get_one(Pipeline, deal.pipeline_id)
    weighted = None if deal.amount is None else deal.amount * stage.probability / 100
    return DealOut(
        id=deal.id,
        name=deal.name,
        amount=deal.amount,
        currency=deal.currency,
        expected_close_date=deal.expected_close_date,
        owner_id=deal.owner_id,
        person_id=deal.person_id,
        company_id=deal.company_id,
        pipeline_id=deal.pipeline_id,
        stage_id=deal.stage_id,
        stage=stage.name,
        probability=stage.probability,
        weighted_amount=weighted,
        status=deal.status,
        lost_reason=deal.lost_reason,
        closed_at=deal.closed_at,
        custom=deal.custom,
        rotting=deals.is_rotting(deal, pipeline),
        last_activity_at=deal.last_activity_at,
        created_at=deal.created_at,
        updated_at=deal.updated_at,
    )


@router.post("/deals", response_model=DealOut, status_code=status.HTTP_201_CREATED)
def create_deal(body: DealIn, db: DB, actor: CurrentActor) -> DealOut:
    """Create an open deal (admins, managers, sales)."""
    deal = deals.create_deal(db, actor=actor, values=body.model_dump(exclude_unset=True))
    db.commit()
    return _deal_out(db, deal)


@router.get("/deals", response_model=DealPage)
def list_deals(
    db: DB,
    actor: CurrentActor,
    params: ListParams,
    q: Annotated[str | None, Query(description="Words that must all be in the name.")] = None,
    rotting: Annotated[bool | None, Query(description="Only rotting (true) or fresh.")] = None,
) -> DealPage:
    """Deals you may see, with filters, search, sort and keyset pages."""
    page = deals.list_deals(db, actor=actor, query=params, search=q, rotting=rotting)
    loaded = _Loaded()
    items = [_deal_out(db, d, loaded) for d in page.items]
    return DealPage(
        items=items, total=page.total, total_exact=page.total_exact, next_cursor=page.next_cursor
    )


@router.get("/deals/export.csv", response_class=StreamingResponse)
def export_deals(
    actor: CurrentActor,
    runtime: RuntimeDep,
    params: ListParams,
    q: Annotated[str | None, Query(description="Words that must all be in the name.")] = None,
    rotting: Annotated[bool | None, Query(description="Only rotting (true) or fresh.")] = None,
) -> StreamingResponse:
    """The filtered deal list (everything `GET /v1/deals` takes) as CSV, every page."""
    rows = exports.export_csv(
        runtime.readers, kind="deals", actor=actor, query=params, search=q, rotting=rotting
    )
    return _streamed_csv("deals", rows)


@router.get("/deals/forecast", response_model=list[ForecastRowOut])
def forecast(
    db: DB,
    actor: CurrentActor,
    group_by: Annotated[str, Query(description="month, owner or pipeline.")] = "month",
    pipeline_id: uuid.UUID | None = None,
) -> list[ForecastRowOut]:
    """Open deals' weighted forecast, per month of expected close, owner or pipeline, and
    per currency."""
    rows = deals.forecast(db, actor=actor, group_by=group_by, pipeline_id=pipeline_id)
    return [ForecastRowOut(**vars(r)) for r in rows]


@router.get("/deals/{deal_id}", response_model=DealOut)
def get_deal(deal_id: uuid.UUID, db: DB, actor: CurrentActor) -> DealOut:
    """A deal."""
    return _deal_out(db, deals.get_deal(db, actor=actor, deal_id=deal_id))


@router.patch("/deals/{deal_id}", response_model=DealOut)
def update_deal(deal_id: uuid.UUID, body: DealPatch, db: DB, actor: CurrentActor) -> DealOut:
    """Change a deal: fields, stage (recorded in its history), won, lost (with a reason),
    reopened."""
    deal = deals.update_deal(
        db, actor=actor, deal_id=deal_id, changes=body.model_dump(exclude_unset=True)
    )
    db.commit()
    return _deal_out(db, deal)


@router.get("/deals/{deal_id}/stages", response_model=list[StageTimeOut])
def deal_stages(deal_id: uuid.UUID, db: DB, actor: CurrentActor) -> list[StageTimeOut]:
    """The stages a deal has been in, with when it entered, left, and how long it stayed."""
    return [StageTimeOut(**vars(s)) for s in deals.stage_history(db, actor=actor, deal_id=deal_id)]


# --- activities, my tasks, reminders ---------------------------------------------------


@router.post("/activities", response_model=ActivityOut, status_code=status.HTTP_201_CREATED)
def create_activity(body: ActivityIn, db: DB, actor: CurrentActor) -> Activity:
    """Create a task, or log a call, meeting, note or email, on a person, company or deal."""
    values = body.model_dump(exclude_unset=True)
    kind = values.pop("kind")
    activity = activities.create_activity(db, actor=actor, kind=kind, values=values)
    db.commit()
    return activity


@router.get("/activities", response_model=ActivityPage)
def list_activities(
    db: DB,
    actor: CurrentActor,
    params: ListParams,
    q: Annotated[str | None, Query(description="Words that must all be in the subject.")] = None,
) -> ActivityPage:
    """Activities you may see, with filters (`kind:eq:call`, `owner_id:eq:...`,
    `deal_id:eq:...`, `due_at:lt:...`), search, sort and keyset pages; newest first."""
    page = activities.list_activities(db, actor=actor, query=params, search=q)
    items = [ActivityOut.model_validate(a) for a in page.items]
    return ActivityPage(
        items=items, total=page.total, total_exact=page.total_exact, next_cursor=page.next_cursor
    )


@router.get("/activities/export.csv", response_class=StreamingResponse)
def export_activities(
    actor: CurrentActor,
    runtime: RuntimeDep,
    params: ListParams,
    q: Annotated[str | None, Query(description="Words that must all be in the subject.")] = None,
) -> StreamingResponse:
    """The filtered activity list (everything `GET /v1/activities` takes) as CSV."""
    rows = exports.export_csv(
        runtime.readers, kind="activities", actor=actor, query=params, search=q
    )
    return _streamed_csv("activities", rows)


@router.get("/activities/{activity_id}", response_model=ActivityOut)
def get_activity(activity_id: uuid.UUID, db: DB, actor: CurrentActor) -> Activity:
    """An activity (visible with any record it is linked to)."""
    return activities.get_activity(db, actor=actor, activity_id=activity_id)


@router.patch("/activities/{activity_id}", response_model=ActivityOut)
def update_activity(
    activity_id: uuid.UUID, body: ActivityPatch, db: DB, actor: CurrentActor
) -> Activity:
    """Change an activity; `{"done": true}` completes a task."""
    activity = activities.update_activity(
        db, actor=actor, activity_id=activity_id, changes=body.model_dump(exclude_unset=True)
    )
    db.commit()
    return activity


@router.delete("/activities/{activity_id}", status_code=status.HTTP_204_NO_CONTENT)
def delete_activity(activity_id: uuid.UUID, db: DB, actor: CurrentActor) -> Response:
    """Delete an activity (audited)."""
    activities.delete_activity(db, actor=actor, activity_id=activity_id)
    db.commit()
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.get("/my-tasks", response_model=MyTasksOut)
def my_tasks(
    db: DB,
    actor: CurrentActor,
    tz: Annotated[str, Query(description="IANA time zone that says when today ends.")] = "UTC",
) -> MyTasksOut:
    """Your open tasks: overdue, due today, upcoming."""
    found = activities.my_tasks(db, actor=actor, tz=tz)
    return MyTasksOut(
        overdue=[ActivityOut.model_validate(a) for a in found.overdue],
        today=[ActivityOut.model_validate(a) for a in found.today],
        upcoming=[ActivityOut.model_validate(a) for a in found.upcoming],
    )


@router.get("/notifications", response_model=list[NotificationOut])
def list_notifications(db: DB, actor: CurrentActor) -> list[NotificationOut]:
    """Your task reminders that have come due and that you have not dismissed."""
    return [
        NotificationOut(
            id=t.id,
            title=t.subject,
            remind_at=t.remind_at,
            due_at=t.due_at,
            person_id=t.person_id,
            company_id=t.company_id,
            deal_id=t.deal_id,
        )
        for t in activities.notifications(db, actor=actor)
        if t.remind_at is not None
    ]


@router.post("/notifications/{notification_id}/dismiss", status_code=status.HTTP_204_NO_CONTENT)
def dismiss_notification(notification_id: uuid.UUID, db: DB, actor: CurrentActor) -> Response:
    """Dismiss a reminder."""
    activities.dismiss_notification(db, actor=actor, activity_id=notification_id)
    db.commit()
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.post("/inbound-email", response_model=InboundEmailOut, status_code=status.HTTP_201_CREATED)
def inbound_email(
    db: DB,
    actor: CurrentActor,
    runtime: RuntimeDep,
    response: Response,
    raw: Annotated[bytes, Body(media_type="message/rfc822")] = b"",
) -> InboundEmailOut:
    """Log a raw RFC 822 message (BCC or forward) as an email on the persons it names; an
    unknown sender becomes a person. The same Message-ID again answers 200 and changes
    nothing."""
    result = inbound.log_inbound_email(db, actor=actor, raw=raw, settings=runtime.settings)
    db.commit()
    if result.duplicate:
        response.status_code = status.HTTP_200_OK
    return InboundEmailOut(
        activities=[ActivityOut.model_validate(a) for a in result.activities],
        created_persons=result.created_persons,
        duplicate=result.duplicate,
    )


# --- timelines -------------------------------------------------------------------------

Kinds = Annotated[
    list[str] | None,
    Query(description="event, change, task, call, meeting, note, email (repeatable)."),
]


def _timeline(
    db: DB,
    actor: CurrentActor,
    scope_of: Callable[[DB, CurrentActor, uuid.UUID], timelines.Scope],
    record_id: uuid.UUID,
    kind: list[str] | None,
    limit: int,
    cursor: str | None,
) -> TimelineOut:
    scope = scope_of(db, actor, record_id)
    page = timelines.timeline(
        db, actor=actor, scope=scope, kinds=kind or (), limit=limit, cursor=cursor
    )
    return TimelineOut(
        items=[
            TimelineEntryOut(kind=e.kind, at=e.at, id=e.id, title=e.title, data=e.data)
            for e in page.items
        ],
        total=page.total,
        total_exact=page.total_exact,
        next_cursor=page.next_cursor,
    )


@router.get("/contacts/{person_id}/timeline", response_model=TimelineOut)
def contact_timeline(
    person_id: uuid.UUID,
    db: DB,
    actor: CurrentActor,
    kind: Kinds = None,
    limit: Limit = 50,
    cursor: Cursor = None,
) -> TimelineOut:
    """A person's events, activities and changes, newest first."""
    return _timeline(db, actor, timelines.person_scope, person_id, kind, limit, cursor)


@router.get("/companies/{company_id}/timeline", response_model=TimelineOut)
def company_timeline(
    company_id: uuid.UUID,
    db: DB,
    actor: CurrentActor,
    kind: Kinds = None,
    limit: Limit = 50,
    cursor: Cursor = None,
) -> TimelineOut:
    """A company's activities and changes, with the events of its people you may see."""
    return _timeline(db, actor, timelines.company_scope, company_id, kind, limit, cursor)


@router.get("/deals/{deal_id}/timeline", response_model=TimelineOut)
def deal_timeline(
    deal_id: uuid.UUID,
    db: DB,
    actor: CurrentActor,
    kind: Kinds = None,
    limit: Limit = 50,
    cursor: Cursor = None,
) -> TimelineOut:
    """A deal's activities and changes (stage changes among them), with its person's events."""
    return _timeline(db, actor, timelines.deal_scope, deal_id, kind, limit, cursor)
