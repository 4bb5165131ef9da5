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
    total_exact: bool = Field(
        True, description="False when total is only a lower bound: lists count up to 1,000."
    )
    next_cursor: str | None


class MatchRunIn(BaseModel):
    full: bool = Field(
        False,
        description="Compare every person with every other; by default only the persons "
        "created or changed since the last run are compared (with everyone).",
    )


class MatchRunOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    mode: str
    started_at: datetime
    finished_at: datetime | None
    high_water: int
    compared: int
    pairs: int
    merged: int
    queued: int


class MatchRunResult(MatchRunOut):
    merge_ids: list[int]


class FieldEvidenceOut(BaseModel):
    field: str
    level: str
    match_weight: float
    left: str | None
    right: str | None


class MatchCandidateOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    run_id: int
    left_id: uuid.UUID
    right_id: uuid.UUID
    match_probability: float
    match_weight: float
    evidence: list[FieldEvidenceOut]
    status: str
    merge_id: int | None
    created_at: datetime
    decided_at: datetime | None


class MatchCandidatePage(BaseModel):
    items: list[MatchCandidateOut]
    total: int
    total_exact: bool = Field(
        True, description="False when total is only a lower bound: lists count up to 1,000."
    )
    next_cursor: str | None


class MatchDecisionOut(BaseModel):
    candidate: MatchCandidateOut
    merge: MergeOut | None
