"""Request and response shapes of the forms management API."""

from __future__ import annotations

import uuid
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, StrictInt

from patron.crm.schemas import Input, When


class FieldIn(Input):
    key: str = Field(description="The input's name; lower-case letters, digits, underscores.")
    label: str = Field("", description="What the visitor reads (default: the key).")
    type: str = Field(
        description="text, email, phone, textarea, number, select, checkbox or hidden."
    )
    required: bool = False
    max_length: StrictInt | None = Field(None, description="Longest answer, in characters.")
    options: list[str] = Field(default_factory=list, description="The choices of a select.")
    placeholder: str = ""
    default: str | None = Field(None, description="A hidden field's value.")
    trait: str | None = Field(None, description="The trait the answer sets (`address.city`).")
    identifier: str | None = Field(
        None, description="email, phone, user_id, or an external id kind the answer is."
    )


class ConsentIn(Input):
    purpose: str = Field(description="The consent category, as the snippet's consent() takes.")
    label: str = Field(description="The text the visitor agrees to.")
    required: bool = False


class FormIn(Input):
    name: str
    slug: str = Field(description="The public URL key: /f/<slug>.")
    description: str = ""
    submit_label: str = "Submit"
    fields: list[FieldIn]
    consents: list[ConsentIn] = Field(default_factory=list)
    success_message: str | None = Field(None, description="Shown after a successful post.")
    redirect_url: str | None = Field(
        None, description="Where the browser goes after a successful post (http or https)."
    )
    owner_id: uuid.UUID | None = Field(None, description="Leads without an owner get this one.")
    team_id: uuid.UUID | None = Field(
        None, description="Leads go to the assignment engine for this team."
    )
    enabled: bool = True


class FormPatch(Input):
    name: str | None = None
    slug: str | None = None
    description: str | None = None
    submit_label: str | None = None
    fields: list[FieldIn] | None = None
    consents: list[ConsentIn] | None = None
    success_message: str | None = None
    redirect_url: str | None = None
    owner_id: uuid.UUID | None = None
    team_id: uuid.UUID | None = None
    enabled: bool | None = None


class FieldOut(BaseModel):
    key: str
    label: str
    type: str
    required: bool
    max_length: int
    options: list[str]
    placeholder: str
    default: str | None
    trait: str | None
    identifier: str | None


class ConsentOut(BaseModel):
    purpose: str
    label: str
    required: bool


class FormOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    name: str
    slug: str
    url: str = Field("", description="The hosted page; also where embedded forms post.")
    description: str
    submit_label: str
    fields: list[FieldOut]
    consents: list[ConsentOut]
    success_message: str
    redirect_url: str | None
    owner_id: uuid.UUID | None
    team_id: uuid.UUID | None
    enabled: bool
    created_by: str
    created_at: When
    updated_at: When


class FormPage(BaseModel):
    items: list[FormOut]
    total: int
    total_exact: bool = Field(
        True, description="False when total is only a lower bound: lists count up to 1,000."
    )
    next_cursor: str | None


class SubmissionOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    form_id: uuid.UUID
    status: str = Field(description="accepted, rejected or failed.")
    reason: str | None = Field(
        description="Why it was rejected: honeypot, rate_limited, invalid, too_large, "
        "form_disabled."
    )
    error: str | None
    error_field: str | None
    answers: dict[str, Any]
    consent: dict[str, Any]
    attribution: dict[str, Any]
    anonymous_id: str | None
    ip_hash: str | None = Field(description="The client IP's hash under the day's salt.")
    user_agent: str | None
    person_id: uuid.UUID | None
    assign_team_id: uuid.UUID | None
    attempts: int
    next_attempt_at: When | None
    processed_at: When | None
    created_at: When


class SubmissionPage(BaseModel):
    items: list[SubmissionOut]
    total: int
    total_exact: bool = Field(
        True, description="False when total is only a lower bound: lists count up to 1,000."
    )
    next_cursor: str | None


class PublicSubmissionOut(BaseModel):
    id: uuid.UUID
    status: str
    message: str
    redirect_url: str | None
