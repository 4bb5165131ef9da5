"""Request and response shapes of the workflow rules API."""

from __future__ import annotations

import uuid
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictInt, TypeAdapter

from patron.crm.schemas import Input, When

TriggerType = Literal[
    "record_created",
    "field_changed",
    "stage_changed",
    "deal_won",
    "deal_lost",
    "sla_warning",
    "sla_breach",
    "form_submitted",
]
RecordType = Literal["person", "company", "deal", "activity", "task", "ticket"]
ConditionOp = Literal["eq", "ne", "in", "gt", "lt", "contains", "empty", "not_empty"]
MAX_CONDITIONS = 20
MAX_ACTIONS = 10


class TriggerIn(Input):
    """What fires a rule. Which options apply depends on ``type``."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    type: TriggerType
    record_type: RecordType | None = Field(
        None,
        description="record_created and field_changed: person (field_changed only), company, "
        "deal, activity, task or ticket. The others imply theirs (deal, ticket, person).",
    )
    field: str | None = Field(
        None,
        max_length=200,
        description="field_changed: a column, or `custom.KEY`.",
    )
    from_: Any = Field(
        None,
        alias="from",
        description="field_changed, stage_changed: only changes from this value (a stage id). "
        "Given as null: from empty.",
    )
    to: Any = Field(
        None,
        description="field_changed, stage_changed: only changes to this value (a stage id). "
        "Given as null: to empty.",
    )
    kind: str | None = Field(
        None, description="record_created on activity: only activities of this kind."
    )
    target: Literal["first_response", "resolution"] | None = Field(
        None, description="sla_warning, sla_breach: only this SLA target."
    )
    form_id: uuid.UUID | None = Field(None, description="form_submitted: only this form.")


class ConditionIn(Input):
    field: str = Field(
        min_length=1,
        max_length=200,
        description="A column of the record, `custom.KEY`, or (persons) `traits.NAME`.",
    )
    op: ConditionOp
    value: Any = Field(None, description="A list for `in`; nothing for empty and not_empty.")


class AssignOwnerIn(Input):
    type: Literal["assign_owner"]
    user_id: uuid.UUID = Field(description="The new owner (a ticket's assignee).")


class SetFieldIn(Input):
    type: Literal["set_field"]
    field: str = Field(min_length=1, max_length=200, description="A field or `custom.KEY`.")
    value: Any = None


class CreateTaskIn(Input):
    type: Literal["create_task"]
    subject: str = Field(min_length=1, max_length=300)
    due_in_hours: StrictInt | None = Field(None, ge=0, le=87_600)
    due_in_days: StrictInt | None = Field(None, ge=0, le=3_650)
    assignee: Literal["owner"] | uuid.UUID = Field(
        "owner", description="`owner` (the record's owner) or a user id."
    )
    priority: Literal["low", "normal", "high"] = "normal"


class AddNoteIn(Input):
    type: Literal["add_note"]
    body: str = Field(min_length=1, max_length=100_000)


class SendWebhookIn(Input):
    type: Literal["send_webhook"]
    url: str = Field(min_length=1, max_length=2_000, description="http or https.")


ActionIn = Annotated[
    AssignOwnerIn | SetFieldIn | CreateTaskIn | AddNoteIn | SendWebhookIn,
    Field(discriminator="type"),
]
# Reads stored actions back into their models (to check them again against a new trigger).
ACTIONS: TypeAdapter[list[ActionIn]] = TypeAdapter(list[ActionIn])


class RuleIn(Input):
    name: str = Field(min_length=1, max_length=200)
    description: str = Field("", max_length=2_000)
    enabled: bool = True
    trigger: TriggerIn
    conditions: list[ConditionIn] = Field(default_factory=list, max_length=MAX_CONDITIONS)
    actions: list[ActionIn] = Field(min_length=1, max_length=MAX_ACTIONS)


class RulePatch(Input):
    name: str | None = Field(None, min_length=1, max_length=200)
    description: str | None = Field(None, max_length=2_000)
    enabled: bool | None = None
    trigger: TriggerIn | None = Field(None, description="Replaces the trigger.")
    conditions: list[ConditionIn] | None = Field(
        None, max_length=MAX_CONDITIONS, description="Replaces the conditions."
    )
    actions: list[ActionIn] | None = Field(
        None, min_length=1, max_length=MAX_ACTIONS, description="Replaces the actions."
    )


class RuleOut(BaseModel):
    id: uuid.UUID
    name: str
    description: str
    enabled: bool
    trigger: dict[str, Any]
    conditions: list[dict[str, Any]]
    actions: list[dict[str, Any]]
    created_by: str
    created_at: When
    updated_at: When


class RuleWithSecretOut(RuleOut):
    webhook_secret: str = Field(
        description="Signs this rule's webhooks (Standard Webhooks). Shown only now."
    )


class RulePage(BaseModel):
    items: list[RuleOut]
    total: int
    total_exact: bool = Field(
        True, description="False when total is only a lower bound: lists count up to 1,000."
    )
    next_cursor: str | None


class RunOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    rule_id: uuid.UUID
    rule_name: str
    trigger_key: str = Field(description="What fired it: `audit:<audit entry id>`.")
    record_type: str
    record_id: uuid.UUID
    change: dict[str, Any] = Field(description="The change: action, before, after, actor, at.")
    depth: int = Field(description="How many runs led to this one (0: a person's change).")
    parent_run_id: int | None
    status: str = Field(
        description="pending, running, retrying, succeeded, failed, loop_stopped or cancelled."
    )
    attempts: int
    next_attempt_at: When
    steps: list[dict[str, Any]] = Field(
        description="Per action: status (pending, ok, failed), attempts, error, result."
    )
    last_error: str | None
    created_at: When
    updated_at: When
    finished_at: When | None


class RunPage(BaseModel):
    items: list[RunOut]
    total: int
    total_exact: bool = Field(
        True, description="False when total is only a lower bound: lists count up to 1,000."
    )
    next_cursor: str | None
