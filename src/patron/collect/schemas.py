"""Request and response shapes of the collection and management APIs."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class SourceCreate(BaseModel):
    name: str
    kind: str = "server"
    allowed_origins: list[str] = Field(
        default_factory=list, description="Browser origins allowed to send; empty: any."
    )


class SourceUpdate(BaseModel):
    name: str | None = None
    enabled: bool | None = None
    allowed_origins: list[str] | None = None


class SourceOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    id: uuid.UUID
    name: str
    kind: str
    enabled: bool
    write_key_prefix: str
    allowed_origins: list[str]
    created_at: datetime
    key_rotated_at: datetime | None


class SourceWithKey(SourceOut):
    write_key: str = Field(description="The write key. Shown once; store it now.")


class EventOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    seq: int
    source_id: uuid.UUID
    message_id: str
    type: str
    event: str | None
    user_id: str | None
    anonymous_id: str | None
    timestamp: datetime
    received_at: datetime
    flags: list[str]
    payload: dict[str, Any]


class EventPage(BaseModel):
    items: list[EventOut]
    total: int
    total_exact: bool = Field(
        True, description="False when total is only a lower bound: lists count up to 1,000."
    )
    next_cursor: str | None


class RejectedOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    id: int
    source_id: uuid.UUID | None
    received_at: datetime
    code: str
    reason: str
    field: str | None
    message_id: str | None
    raw: str


class RejectedPage(BaseModel):
    items: list[RejectedOut]
    total: int
    total_exact: bool = Field(
        True, description="False when total is only a lower bound: lists count up to 1,000."
    )
    next_cursor: str | None


class CatalogEntryOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    type: str
    name: str
    count: int
    first_seen: datetime
    last_seen: datetime
