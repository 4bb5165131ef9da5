"""Request and response shapes of the CRM API."""

from __future__ import annotations

import uuid
from datetime import date, datetime
from decimal import Decimal
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, StrictInt, field_validator
from pydantic.functional_validators import AfterValidator

from patron.core.clock import as_utc

# Times are UTC and aware both ways: SQLite hands back naive values, and a time sent
# without an offset is taken as UTC.
When = Annotated[datetime, AfterValidator(as_utc)]


class Input(BaseModel):
    # An unknown field is a typo the caller wants to hear about, not something to drop.
    model_config = ConfigDict(extra="forbid")

    @field_validator("*", mode="after")
    @classmethod
    def storable(cls, value: Any) -> Any:
        """PostgreSQL cannot store NUL characters in text: refuse them here, by field."""
        if _has_nul(value):
            raise ValueError("text cannot contain NUL characters")
        return value


def _has_nul(value: Any) -> bool:
    if isinstance(value, str):
        return "\x00" in value
    if isinstance(value, dict):
        return any(_has_nul(k) or _has_nul(v) for k, v in value.items())
    if isinstance(value, list):
        return any(_has_nul(v) for v in value)
    return False


class CompanyIn(Input):
    name: str
    domain: str | None = Field(
        None, description="Normalised: `https://www.Acme.com/` is `acme.com`."
    )
    industry: str | None = None
    size: StrictInt | None = Field(None, description="Number of employees.")
    owner_id: uuid.UUID | None = Field(None, description="Default: the creating user.")
    tags: list[str] = Field(default_factory=list)
    custom: dict[str, Any] = Field(default_factory=dict, description="Custom field values.")


class CompanyPatch(Input):
    name: str | None = None
    domain: str | None = None
    industry: str | None = None
    size: StrictInt | None = None
    owner_id: uuid.UUID | None = None
    tags: list[str] | None = None
    custom: dict[str, Any] | None = Field(
        None, description="Only the keys given change; a null value clears one."
    )


class CompanyOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    name: str | None
    domain: str | None
    industry: str | None
    size: int | None
    owner_id: uuid.UUID | None
    tags: list[str]
    custom: dict[str, Any]
    traits: dict[str, Any] = Field(description="Traits from `group` calls.")
    group_id: str | None
    archived_at: When | None
    created_at: When
    updated_at: When


class CompanyPage(BaseModel):
    items: list[CompanyOut]
    total: int
    total_exact: bool = Field(
        True, description="False when total is only a lower bound: lists count up to 1,000."
    )
    next_cursor: str | None


class PersonLinkIn(Input):
    role: str | None = Field(None, description="The person's role at the company.")


class CompanyMergeIn(Input):
    other_id: uuid.UUID = Field(description="The duplicate, merged into this company.")
    prefer: list[str] = Field(
        default_factory=list,
        description="Conflicting fields (`name`, `custom.plan`...) to take from the duplicate.",
    )


class FieldConflict(BaseModel):
    field: str
    survivor: Any
    merged: Any


class CompanyMergeOut(BaseModel):
    survivor_id: uuid.UUID
    merged_id: uuid.UUID
    conflicts: list[FieldConflict]
    result: dict[str, Any] = Field(description="The survivor's fields after the merge.")


class ContactPatch(Input):
    owner_id: uuid.UUID | None = None
    lifecycle_stage: str | None = None
    lead_status: str | None = None
    tags: list[str] | None = None
    custom: dict[str, Any] | None = Field(
        None, description="Only the keys given change; a null value clears one."
    )


class ContactOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    traits: dict[str, Any]
    owner_id: uuid.UUID | None
    lifecycle_stage: str | None
    lead_status: str | None
    tags: list[str]
    custom: dict[str, Any]
    archived_at: When | None
    first_seen: When | None
    last_seen: When | None
    created_at: When
    updated_at: When
    first_touch: dict[str, Any] | None = Field(
        None,
        description="Campaign attribution of the first web form sent (utm_*, referrer, "
        "landing_page, at, form_id); never overwritten.",
    )
    latest_touch: dict[str, Any] | None = Field(
        None, description="Campaign attribution of the latest web form sent."
    )
    lead_score: float | None = Field(None, description="Rule score 0-100 (or its override).")
    predictive_lead_score: float | None = Field(
        None, description="Predicted chance of winning, 0-100 (or its override)."
    )


class ContactPage(BaseModel):
    items: list[ContactOut]
    total: int
    total_exact: bool = Field(
        True, description="False when total is only a lower bound: lists count up to 1,000."
    )
    next_cursor: str | None


class CompanyContactOut(ContactOut):
    role: str | None = Field(description="The person's role at the company.")


class CustomFieldIn(Input):
    record_type: str = Field(description="person, company, deal or ticket.")
    key: str = Field(description="How values are addressed: `custom.<key>`.")
    label: str = ""
    type: str = Field(
        description="text, number, money, date, datetime, single_select, multi_select, "
        "boolean, url, email, phone or reference."
    )
    options: list[str] = Field(default_factory=list, description="The choices of a select.")
    reference_type: str | None = Field(None, description="What a reference points at.")


class CustomFieldOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    record_type: str
    key: str
    label: str
    type: str
    options: list[str]
    reference_type: str | None
    created_at: When


class ShareIn(Input):
    user_id: uuid.UUID | None = None
    team_id: uuid.UUID | None = None


class ShareOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    record_type: str
    record_id: uuid.UUID
    user_id: uuid.UUID | None
    team_id: uuid.UUID | None
    created_by: str
    created_at: When


class StageIn(Input):
    id: uuid.UUID | None = Field(None, description="An existing stage (to rename or move it).")
    name: str
    probability: StrictInt = Field(description="Percent chance a deal here is won, 0 to 100.")


class StageOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    name: str
    position: int
    probability: int


class PipelineIn(Input):
    name: str
    rotting_days: StrictInt | None = Field(
        None, description="Flag open deals with no activity for this many days."
    )
    stages: list[StageIn]


class PipelinePatch(Input):
    name: str | None = None
    rotting_days: StrictInt | None = None
    stages: list[StageIn] | None = Field(
        None, description="The whole ordered list; a stage left out is removed."
    )


class PipelineOut(BaseModel):
    id: uuid.UUID
    name: str
    rotting_days: int | None
    stages: list[StageOut]
    created_at: When


# Checked by the service, so that text ("1000") is refused with the field named, not coerced.
Amount = Annotated[
    Any,
    Field(
        description="A number, 0 or more, at most 4 decimals.", json_schema_extra={"type": "number"}
    ),
]


class DealIn(Input):
    name: str
    pipeline_id: uuid.UUID
    stage_id: uuid.UUID | None = Field(None, description="Default: the pipeline's first stage.")
    amount: Amount | None = None
    currency: str | None = Field(None, description="ISO 4217; required with an amount.")
    expected_close_date: date | None = None
    owner_id: uuid.UUID | None = Field(None, description="Default: the creating user.")
    person_id: uuid.UUID | None = None
    company_id: uuid.UUID | None = None
    custom: dict[str, Any] = Field(default_factory=dict)


class DealPatch(Input):
    name: str | None = None
    pipeline_id: uuid.UUID | None = None
    stage_id: uuid.UUID | None = None
    amount: Amount | None = None
    currency: str | None = None
    expected_close_date: date | None = None
    owner_id: uuid.UUID | None = None
    person_id: uuid.UUID | None = None
    company_id: uuid.UUID | None = None
    status: str | None = Field(None, description="open, won or lost.")
    lost_reason: str | None = Field(None, description="Why a deal was lost (required then).")
    custom: dict[str, Any] | None = None


class DealOut(BaseModel):
    id: uuid.UUID
    name: str
    amount: Decimal | None
    currency: str | None
    expected_close_date: date | None
    owner_id: uuid.UUID | None
    person_id: uuid.UUID | None
    company_id: uuid.UUID | None
    pipeline_id: uuid.UUID
    stage_id: uuid.UUID
    stage: str
    probability: int
    weighted_amount: Decimal | None
    status: str
    lost_reason: str | None
    closed_at: When | None
    custom: dict[str, Any]
    rotting: bool = Field(description="Open with no activity for longer than the pipeline allows.")
    last_activity_at: When
    created_at: When
    updated_at: When


class DealPage(BaseModel):
    items: list[DealOut]
    total: int
    total_exact: bool = Field(
        True, description="False when total is only a lower bound: lists count up to 1,000."
    )
    next_cursor: str | None


class StageTimeOut(BaseModel):
    stage_id: uuid.UUID
    stage: str
    entered_at: When
    left_at: When | None
    outcome: str | None = Field(
        description="How the stay ended: moved_on (to a later stage), moved_back (to an"
        " earlier stage or another pipeline), won or lost; null while it goes on."
    )
    ended_at: When | None = Field(
        description="When it ended: when the deal left the stage, or closed in it."
    )
    seconds: float = Field(
        description="Time in the stage: until it ended (a won or lost deal's last stage"
        " ends when it closed), until now for one that goes on."
    )


class ForecastRowOut(BaseModel):
    key: str | None = Field(description="The month (YYYY-MM), owner id or pipeline id.")
    currency: str | None
    deals: int
    amount: Decimal
    weighted: Decimal = Field(description="Sum of amount times the stage's win probability.")


class ActivityIn(Input):
    kind: str = Field(description="task, call, meeting, note or email.")
    subject: str | None = Field(None, description="A task's title; a meeting's or email's subject.")
    body: str | None = None
    person_id: uuid.UUID | None = None
    company_id: uuid.UUID | None = None
    deal_id: uuid.UUID | None = None
    ticket_id: uuid.UUID | None = None
    owner_id: uuid.UUID | None = Field(None, description="A task's assignee. Default: you.")
    occurred_at: When | None = Field(None, description="When it happened. Default: now.")
    due_at: When | None = None
    remind_at: When | None = Field(None, description="When the reminder comes due.")
    priority: str | None = Field(None, description="low, normal or high (tasks).")
    done: bool | None = None
    direction: str | None = Field(None, description="inbound or outbound (calls, emails).")
    duration_seconds: StrictInt | None = None
    outcome: str | None = Field(
        None, description="connected, no_answer, left_voicemail, busy or wrong_number."
    )
    starts_at: When | None = None
    ends_at: When | None = None
    attendees: list[str] | None = Field(None, description="Meeting attendees' emails.")


class ActivityPatch(Input):
    subject: str | None = None
    body: str | None = None
    person_id: uuid.UUID | None = None
    company_id: uuid.UUID | None = None
    deal_id: uuid.UUID | None = None
    ticket_id: uuid.UUID | None = None
    owner_id: uuid.UUID | None = None
    occurred_at: When | None = None
    due_at: When | None = None
    remind_at: When | None = None
    priority: str | None = None
    done: bool | None = None
    direction: str | None = None
    duration_seconds: StrictInt | None = None
    outcome: str | None = None
    starts_at: When | None = None
    ends_at: When | None = None
    attendees: list[str] | None = None


class ActivityOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    kind: str
    subject: str
    body: str
    person_id: uuid.UUID | None
    company_id: uuid.UUID | None
    deal_id: uuid.UUID | None
    ticket_id: uuid.UUID | None
    owner_id: uuid.UUID | None
    created_by: str
    occurred_at: When
    due_at: When | None
    remind_at: When | None
    priority: str | None
    done_at: When | None
    direction: str | None
    duration_seconds: int | None
    outcome: str | None
    starts_at: When | None
    ends_at: When | None
    details: dict[str, Any]
    created_at: When
    updated_at: When


class ActivityPage(BaseModel):
    items: list[ActivityOut]
    total: int
    total_exact: bool = Field(
        True, description="False when total is only a lower bound: lists count up to 1,000."
    )
    next_cursor: str | None


class MyTasksOut(BaseModel):
    overdue: list[ActivityOut]
    today: list[ActivityOut]
    upcoming: list[ActivityOut]


class NotificationOut(BaseModel):
    id: uuid.UUID = Field(description="The task's id (dismiss with it).")
    kind: str = "task_reminder"
    title: str
    remind_at: When
    due_at: When | None
    person_id: uuid.UUID | None
    company_id: uuid.UUID | None
    deal_id: uuid.UUID | None


class InboundEmailOut(BaseModel):
    activities: list[ActivityOut]
    created_persons: list[str] = Field(description="Unknown senders who became persons.")
    duplicate: bool = Field(description="This Message-ID was logged before; nothing changed.")


class TimelineEntryOut(BaseModel):
    kind: str = Field(description="event, change, task, call, meeting, note or email.")
    at: When
    id: str
    title: str
    data: dict[str, Any]


class TimelineOut(BaseModel):
    items: list[TimelineEntryOut]
    total: int
    next_cursor: str | None
