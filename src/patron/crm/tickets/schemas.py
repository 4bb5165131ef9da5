"""Request and response shapes of the tickets and SLA policies API."""

from __future__ import annotations

import uuid
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictInt

from patron.crm.schemas import Input, When


class TicketIn(Input):
    subject: str
    description: str = ""
    person_id: uuid.UUID | None = Field(None, description="The requester (none: internal).")
    company_id: uuid.UUID | None = None
    status: str = Field("new", description="new, open or pending.")
    priority: str = Field("normal", description="low, normal, high or urgent.")
    channel: str = Field("api", description="email, web, phone, chat, form or api.")
    assignee_id: uuid.UUID | None = Field(
        None, description="An admin, manager or support user (none: the queue)."
    )
    tags: list[str] = Field(default_factory=list)
    custom: dict[str, Any] = Field(default_factory=dict, description="Custom field values.")


class TicketPatch(Input):
    subject: str | None = None
    description: str | None = None
    person_id: uuid.UUID | None = None
    company_id: uuid.UUID | None = None
    status: str | None = Field(
        None,
        description="new -> open, pending, solved; open -> pending, solved; pending -> open, "
        "solved; solved -> open (reopen), closed; closed is final.",
    )
    priority: str | None = None
    channel: str | None = None
    assignee_id: uuid.UUID | None = None
    tags: list[str] | None = None
    custom: dict[str, Any] | None = Field(
        None, description="Only the keys given change; a null value clears one."
    )


class TargetOut(BaseModel):
    target_minutes: int = Field(description="The target, in business minutes.")
    due_at: When | None = Field(description="When it is due (null while the clock is paused).")
    warning_at: When | None = Field(description="When the warning fraction is reached.")
    elapsed_minutes: float = Field(description="Business minutes on the clock.")
    remaining_minutes: float = Field(description="Business minutes left (negative: overdue).")
    state: str = Field(description="ok, warning, breached or met.")
    paused: bool = Field(description="The clock stands (pending) and the target is not done.")
    completed_at: When | None = Field(description="When the target was done.")


class SlaOut(BaseModel):
    policy_id: uuid.UUID | None
    policy_name: str | None
    state: str | None = Field(description="The worst target's state (null: no SLA).")
    paused: bool
    due_at: When | None = Field(description="The earliest due time of a target not yet done.")
    first_response: TargetOut | None
    resolution: TargetOut | None


class TicketOut(BaseModel):
    id: uuid.UUID
    subject: str
    description: str
    person_id: uuid.UUID | None
    company_id: uuid.UUID | None
    status: str
    priority: str
    channel: str
    assignee_id: uuid.UUID | None
    tags: list[str]
    custom: dict[str, Any]
    created_by: str
    created_at: When
    updated_at: When
    first_responded_at: When | None
    solved_at: When | None
    closed_at: When | None
    first_response_minutes: float | None = Field(
        description="Business minutes from creation to the first public reply."
    )
    resolution_minutes: float | None = Field(
        description="Business minutes on the clock when solved (pending time left out)."
    )
    sla: SlaOut


class TicketPage(BaseModel):
    items: list[TicketOut]
    total: int
    total_exact: bool = Field(
        True, description="False when total is only a lower bound: lists count up to 1,000."
    )
    next_cursor: str | None


class CommentIn(Input):
    body: str
    public: StrictBool = Field(True, description="A reply the requester sees, or a note.")
    from_requester: StrictBool = Field(
        False, description="The requester's own words (an email, a call), logged by you."
    )


class CommentOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    ticket_id: uuid.UUID
    body: str
    public: bool
    from_requester: bool
    author_id: uuid.UUID | None
    author_label: str
    created_at: When


class CommentPage(BaseModel):
    items: list[CommentOut]
    total: int
    total_exact: bool = Field(
        True, description="False when total is only a lower bound: lists count up to 1,000."
    )
    next_cursor: str | None


class HoursIn(Input):
    start: str = Field(description="HH:MM, local time.", examples=["09:00"])
    end: str = Field(description="HH:MM, local time (24:00: midnight).", examples=["17:00"])


class TermsIn(Input):
    first_response: StrictInt | None = Field(None, description="Business minutes.")
    resolution: StrictInt | None = Field(None, description="Business minutes.")


class SlaPolicyIn(Input):
    name: str
    position: StrictInt | None = Field(None, description="Order of trying (default: last).")
    priorities: list[str] = Field(default_factory=list, description="Empty: every priority.")
    channels: list[str] = Field(default_factory=list, description="Empty: every channel.")
    targets: dict[str, TermsIn] = Field(
        description="Per priority: first_response and resolution targets in business minutes."
    )
    warning_fraction: float = Field(0.8, description="Warn when this part of a target passed.")
    timezone: str = Field(description="IANA name, e.g. Europe/Paris.")
    working_days: list[str] = Field(description="mon, tue, wed, thu, fri, sat, sun.")
    working_hours: list[HoursIn] = Field(description="Each working day's hours (split allowed).")
    day_hours: dict[str, list[HoursIn]] = Field(
        default_factory=dict, description="Days with hours of their own, e.g. a short Friday."
    )
    holidays: list[str] = Field(default_factory=list, description="Dates, YYYY-MM-DD.")


class SlaPolicyPatch(Input):
    name: str | None = None
    position: StrictInt | None = None
    priorities: list[str] | None = None
    channels: list[str] | None = None
    targets: dict[str, TermsIn] | None = None
    warning_fraction: float | None = None
    timezone: str | None = None
    working_days: list[str] | None = None
    working_hours: list[HoursIn] | None = None
    day_hours: dict[str, list[HoursIn]] | None = None
    holidays: list[str] | None = None


class HoursOut(BaseModel):
    start: str
    end: str


class SlaPolicyOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    name: str
    position: int
    priorities: list[str]
    channels: list[str]
    targets: dict[str, dict[str, int | None]]
    warning_fraction: float
    timezone: str
    working_days: list[str]
    working_hours: list[HoursOut]
    day_hours: dict[str, list[HoursOut]]
    holidays: list[str]
    created_at: When
    updated_at: When
