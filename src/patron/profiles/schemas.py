"""Request and response shapes of the profile API."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from patron.identity.schemas import IdentityOut, MergeOut


class CompanyLinkOut(BaseModel):
    id: uuid.UUID
    group_id: str | None
    name: str | None
    role: str | None
    traits: dict[str, Any]


class PersonSummary(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    traits: dict[str, Any]
    first_seen: datetime | None
    last_seen: datetime | None


class PersonPage(BaseModel):
    items: list[PersonSummary]
    total: int
    total_exact: bool = Field(
        True, description="False when total is only a lower bound: lists count up to 1,000."
    )
    next_cursor: str | None


class TimelineEntry(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    seq: int
    type: str
    event: str | None
    message_id: str
    source_id: uuid.UUID
    timestamp: datetime
    received_at: datetime
    payload: dict[str, Any]


class TimelinePage(BaseModel):
    items: list[TimelineEntry]
    total: int
    total_exact: bool = Field(
        True, description="False when total is only a lower bound: lists count up to 1,000."
    )
    next_cursor: str | None


class ProfileOut(BaseModel):
    id: uuid.UUID
    traits: dict[str, Any]
    computed_traits: dict[str, Any]
    first_seen: datetime | None
    last_seen: datetime | None
    created_at: datetime
    updated_at: datetime
    owner_id: uuid.UUID | None
    lifecycle_stage: str | None
    lead_status: str | None
    tags: list[str]
    custom: dict[str, Any]
    archived_at: datetime | None
    identities: list[IdentityOut]
    companies: list[CompanyLinkOut]
    merges: list[MergeOut]
    merged_ids: list[uuid.UUID] = Field(description="Ids of persons merged into this one.")
    trait_lineage: dict[str, dict[str, Any]] | None = None
    scores: dict[str, dict[str, Any]] = Field(
        default_factory=dict,
        description="lead_score and predictive_lead_score: `value` (shown), `automatic`, "
        "`overridden` (details at `GET /v1/persons/{id}/scores`).",
    )
    timeline: TimelinePage = Field(description="The first page of the timeline.")


class MergeRequest(BaseModel):
    other_id: uuid.UUID = Field(description="The person to merge with this one.")


class TraitRuleIn(BaseModel):
    rule: str = Field(
        description="most_recent, first_seen, source_priority, most_frequent or non_empty."
    )
    source_priority: list[str] = Field(
        default_factory=list, description="Source ids or names, most trusted first."
    )


class TraitRuleOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    name: str
    rule: str
    source_priority: list[str]


class ComputedTraitIn(BaseModel):
    name: str
    function: str = Field(
        description="count, sum, min, max, first, last, unique_count or most_frequent."
    )
    event: str | None = Field(None, description="Event name it counts; null: every event.")
    property: str | None = Field(
        None, description="Property it aggregates (dots reach nested values)."
    )
    window_days: int | None = Field(None, description="Sliding window in days; null: all time.")


class ComputedTraitOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    name: str
    function: str
    event: str | None
    property: str | None
    window_days: int | None
    builtin: bool
    created_at: datetime
