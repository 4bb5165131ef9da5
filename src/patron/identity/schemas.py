"""Request and response shapes of the identity API."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class IdentityOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    kind: str
    value: str
    first_seq: int
    created_at: datetime


class MergeOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    survivor_id: uuid.UUID
    merged_id: uuid.UUID
    reason: str
    seq: int | None
    evidence: dict[str, Any]
    survivor_identities: list[str]
    merged_identities: list[str]
    created_at: datetime
    undone_at: datetime | None
    undone_by: str | None


class UnmergeRequest(BaseModel):
    block: list[str] = Field(
        default_factory=list,
        description="Identifiers of the merge (`kind:value`) to block so they never link again.",
    )


class RuleIn(BaseModel):
    max_per_person: int | None = Field(description="Distinct values per person; null: no limit.")
    priority: int = Field(50, description="Lower wins: the highest number is dropped first.")
    trait: str | None = Field(None, description="Trait that carries identifiers of this kind.")


class RuleOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    kind: str
    max_per_person: int | None
    priority: int
    trait: str | None
    builtin: bool


class BlockedIn(BaseModel):
    pattern: str
    kind: str | None = Field(None, description="Only this identifier kind; null: every kind.")
    is_regex: bool = False
    reason: str = ""


class BlockedOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    kind: str | None
    pattern: str
    is_regex: bool
    origin: str
    status: str
    reason: str
    created_at: datetime
    created_by: str


class ConflictOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    seq: int
    person_id: uuid.UUID | None
    kind: str
    value: str
    reason: str
    detail: str
    created_at: datetime


class ConflictPage(BaseModel):
    items: list[ConflictOut]
    total: int
    next_cursor: str | None
