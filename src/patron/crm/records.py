"""What companies and persons share as CRM records: owners, tags, and audit snapshots."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import date, datetime
from decimal import Decimal
from typing import Any

from sqlalchemy.orm import Session

from patron.auth.models import User
from patron.auth.service import Actor, record_audit
from patron.core.clock import utcnow
from patron.core.errors import Conflict, InvalidInput

MAX_TAGS = 100
MAX_TAG = 100


def check_owner(session: Session, owner_id: uuid.UUID | None) -> uuid.UUID | None:
    """An owner must be an active user."""
    if owner_id is None:
        return None
    user = session.get(User, owner_id)
    if user is None or not user.active:
        raise InvalidInput(f"no active user with id {owner_id}", field="owner_id")
    return owner_id


def check_tags(tags: Sequence[str]) -> list[str]:
    """Trimmed, distinct, in the order given."""
    cleaned = [t.strip() for t in tags]
    if len(cleaned) > MAX_TAGS:
        raise InvalidInput(f"at most {MAX_TAGS} tags", field="tags")
    if any(not t or len(t) > MAX_TAG for t in cleaned):
        raise InvalidInput(f"a tag has 1 to {MAX_TAG} characters", field="tags")
    return list(dict.fromkeys(cleaned))


def snapshot(record: Any, names: Sequence[str]) -> dict[str, Any]:
    """The named attributes as JSON-ready values, for the audit log."""
    return {name: jsonable(getattr(record, name)) for name in names}


def jsonable(value: Any) -> Any:
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, Decimal):  # exact, and 1000 and 1000.0000 read the same
        return format(value.normalize(), "f")
    if isinstance(value, list):
        return [jsonable(v) for v in value]
    if isinstance(value, dict):
        return {k: jsonable(v) for k, v in value.items()}
    return value


def changed(before: dict[str, Any], after: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """Only the keys whose values differ, before and after."""
    keys = [k for k in after if before.get(k) != after[k]]
    return {k: before.get(k) for k in keys}, {k: after[k] for k in keys}


def toggle_archived(
    session: Session, *, actor: Actor | None, record: Any, record_type: str, archived: bool
) -> None:
    """Archive or restore a company or person, audited; doing it twice is a 409."""
    if archived == (record.archived_at is not None):
        state = "archived" if archived else "not archived"
        raise Conflict(f"{record_type} {record.id} is already {state}", field=f"{record_type}_id")
    before = jsonable(record.archived_at)
    record.archived_at = utcnow() if archived else None
    record.updated_at = utcnow()
    record_audit(
        session,
        actor=actor,
        action="archive" if archived else "restore",
        record_type=record_type,
        record_id=str(record.id),
        before={"archived_at": before},
        after={"archived_at": jsonable(record.archived_at)},
    )
    session.flush()
