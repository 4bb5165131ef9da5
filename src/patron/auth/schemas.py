"""Request and response shapes of the access API."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class UserCreate(BaseModel):
    email: str
    role: str
    name: str = ""
    password: str | None = Field(None, description="Omit for an API-only user.")


class UserOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    id: uuid.UUID
    email: str
    name: str
    role: str
    active: bool
    created_at: datetime


class TokenCreate(BaseModel):
    name: str = ""
    email: str | None = Field(None, description="Whose token; admins only. Default: yours.")


class TokenOut(BaseModel):
    id: uuid.UUID
    name: str
    prefix: str
    token: str = Field(description="The secret. Shown once; store it now.")


class LoginIn(BaseModel):
    email: str
    password: str


class TeamIn(BaseModel):
    name: str


class TeamOut(BaseModel):
    id: uuid.UUID
    name: str
    members: list[uuid.UUID]
    created_at: datetime


class MemberIn(BaseModel):
    user_id: uuid.UUID


class AuditEntryOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    id: int
    at: datetime
    actor_id: uuid.UUID | None
    actor_label: str
    action: str
    record_type: str
    record_id: str
    before: dict[str, Any] | None
    after: dict[str, Any] | None


class AuditPage(BaseModel):
    items: list[AuditEntryOut]
    total: int
    total_exact: bool = Field(
        True, description="False when total is only a lower bound: lists count up to 1,000."
    )
    next_cursor: str | None
