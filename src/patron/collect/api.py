"""Management API of collection: sources, the event debugger, rejected messages."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request, status

from patron.auth.deps import AdminActor, require
from patron.auth.models import Role
from patron.auth.service import Actor
from patron.collect import service
from patron.collect.catalog import catalog_for
from patron.collect.models import EventCatalogEntry, Source
from patron.collect.schemas import (
    CatalogEntryOut,
    EventOut,
    EventPage,
    RejectedOut,
    RejectedPage,
    SourceCreate,
    SourceOut,
    SourceUpdate,
    SourceWithKey,
)
from patron.core.web import DB, Cursor, Limit, RuntimeDep

router = APIRouter(prefix="/v1", tags=["collection"])
Reader = Annotated[Actor, Depends(require(Role.manager, Role.marketing, Role.analyst))]


@router.post("/sources", response_model=SourceWithKey, status_code=status.HTTP_201_CREATED)
def create_source(body: SourceCreate, db: DB, actor: AdminActor) -> SourceWithKey:
    """Create a source and return its write key (shown once)."""
    source, key = service.create_source(
        db, name=body.name, kind=body.kind, allowed_origins=body.allowed_origins, actor=actor
    )
    db.commit()
    return SourceWithKey(**SourceOut.model_validate(source).model_dump(), write_key=key)


@router.get("/sources", response_model=list[SourceOut])
def list_sources(db: DB, _actor: Reader) -> list[Source]:
    """Every source."""
    return service.list_sources(db)


@router.get("/sources/{source_id}", response_model=SourceOut)
def get_source(source_id: uuid.UUID, db: DB, _actor: Reader) -> Source:
    """One source."""
    return service.get_source(db, source_id)


@router.patch("/sources/{source_id}", response_model=SourceOut)
def update_source(source_id: uuid.UUID, body: SourceUpdate, db: DB, actor: AdminActor) -> Source:
    """Rename, enable or disable a source, or set its allowed origins."""
    source = service.update_source(
        db,
        service.get_source(db, source_id),
        actor=actor,
        name=body.name,
        enabled=body.enabled,
        allowed_origins=body.allowed_origins,
    )
    db.commit()
    return source


@router.post("/sources/{source_id}/rotate-key", response_model=SourceWithKey)
def rotate_key(source_id: uuid.UUID, db: DB, actor: AdminActor) -> SourceWithKey:
    """Replace the write key; the old key stops working at once."""
    source = service.get_source(db, source_id)
    key = service.rotate_write_key(db, source, actor=actor)
    db.commit()
    return SourceWithKey(**SourceOut.model_validate(source).model_dump(), write_key=key)


@router.get("/sources/{source_id}/catalog", response_model=list[CatalogEntryOut])
def source_catalog(source_id: uuid.UUID, db: DB, _actor: Reader) -> list[EventCatalogEntry]:
    """What a source sends: each type and event name with counts, first and last seen."""
    return catalog_for(db, service.get_source(db, source_id).id)


@router.get("/events", response_model=EventPage)
def list_events(
    db: DB,
    _actor: Reader,
    limit: Limit = 50,
    cursor: Cursor = None,
    source: Annotated[str | None, Query(description="Source id or name.")] = None,
    type: Annotated[str | None, Query(description="identify, track, page, ...")] = None,
    event: Annotated[str | None, Query(description="Event name (track) or page name.")] = None,
    user_id: Annotated[str | None, Query(alias="userId")] = None,
    anonymous_id: Annotated[str | None, Query(alias="anonymousId")] = None,
    since: Annotated[datetime | None, Query(description="Received at or after.")] = None,
    until: Annotated[datetime | None, Query(description="Received before.")] = None,
) -> EventPage:
    """The live event debugger: stored messages, newest first."""
    filters = service.EventFilter(
        source_id=_source_id(db, source),
        type=type,
        event=event,
        user_id=user_id,
        anonymous_id=anonymous_id,
        since=since,
        until=until,
    )
    page = service.list_events(db, filters=filters, limit=limit, cursor=cursor)
    return EventPage(
        items=[EventOut.model_validate(e) for e in page.items],
        total=page.total,
        total_exact=page.total_exact,
        next_cursor=page.next_cursor,
    )


@router.get("/rejected-messages", response_model=RejectedPage)
def list_rejected(
    db: DB,
    _actor: Reader,
    limit: Limit = 50,
    cursor: Cursor = None,
    source: Annotated[str | None, Query(description="Source id or name.")] = None,
) -> RejectedPage:
    """Messages refused by validation, newest first, each with its reason."""
    page = service.list_rejected(db, source_id=_source_id(db, source), limit=limit, cursor=cursor)
    return RejectedPage(
        items=[RejectedOut.model_validate(r) for r in page.items],
        total=page.total,
        total_exact=page.total_exact,
        next_cursor=page.next_cursor,
    )


def _source_id(db: DB, source: str | None) -> uuid.UUID | None:
    if source is None:
        return None
    try:
        return uuid.UUID(source)
    except ValueError:
        return service.get_source_by_name(db, source).id


@router.get("/projects/{write_key}/settings", tags=["tracking"])
def cdn_settings(write_key: str, request: Request, db: DB, runtime: RuntimeDep) -> dict[str, Any]:
    """Settings in the shape of Segment's CDN, so analytics.js can be pointed at Patron."""
    service.source_for_write_key(db, write_key)
    base = runtime.settings.public_url or str(request.base_url)
    return service.cdn_settings(write_key=write_key, base_url=base)
