"""Campaign attribution on persons: the first touch (never overwritten) and the latest
touch, from the forms they sent. CRM-kept like the owner: rebuilds and replays leave them
alone, and a merge gives the survivor the earliest first touch and the latest latest one.
"""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy.orm import Session

from patron.core.clock import as_utc
from patron.crm.forms.models import FormSubmission
from patron.identity.models import Person


def touch_of(submission: FormSubmission) -> dict[str, Any]:
    """A submission's attribution as a touch: utm_*, referrer and landing page (those the
    page had), when, and which form and submission."""
    return {
        **submission.attribution,
        "at": as_utc(submission.created_at).isoformat(timespec="microseconds"),
        "form_id": str(submission.form_id),
        "submission_id": str(submission.id),
    }


def record_touch(person: Person, touch: dict[str, Any]) -> bool:
    """Keep ``touch`` as the person's first touch if they have none, and as their latest if
    it is newer than the one they have; True when anything changed."""
    first = person.first_touch or None
    latest = person.latest_touch or None
    if first is None:
        person.first_touch = touch
    if latest is None or str(latest.get("at", "")) <= touch["at"]:
        person.latest_touch = touch
    return first is None or person.latest_touch is touch


def merge_touches(session: Session, survivor_id: uuid.UUID, merged_id: uuid.UUID) -> None:
    """Merge hook: the survivor keeps the earlier first touch and the later latest touch of
    the two. The merged person keeps its own, so an unmerge gives them back."""
    survivor, merged = session.get(Person, survivor_id), session.get(Person, merged_id)
    if survivor is None or merged is None:
        return
    firsts = [t for t in (survivor.first_touch, merged.first_touch) if t]
    latests = [t for t in (survivor.latest_touch, merged.latest_touch) if t]
    if firsts:
        survivor.first_touch = min(firsts, key=lambda t: str(t.get("at", "")))
    if latests:
        survivor.latest_touch = max(latests, key=lambda t: str(t.get("at", "")))
