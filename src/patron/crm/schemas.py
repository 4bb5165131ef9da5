"""Request and response shapes of the CRM API."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field

StrictInt = Annotated[int, Field(strict=True)]


class Input(BaseModel):
    # An unknown field is a typo the caller wants to hear about, not something to drop.
    model_config = ConfigDict(extra="forbid")


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
    archived_at: datetime | None
    created_at: datetime
    updated_at: datetime


class CompanyPage(BaseModel):
    items: list[CompanyOut]
    total: int
    next_cursor: str | None


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
    archived_at: datetime | None
    first_seen: datetime | None
    last_seen: datetime | None
    created_at: datetime
    updated_at: datetime


class ContactPage(BaseModel):
    items: list[ContactOut]
    total: int
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
    created_at: datetime


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
    created_at: datetime
