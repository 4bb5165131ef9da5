"""Every CRM change is also an event: a ``track`` on the person, written to the event log
through the same ingestion as collected messages (from the built-in source of kind ``crm``),
so processing, segments and destinations see sales work like any other behaviour.

The event names the person by one of its own identifiers, so it resolves to that person
and never links two.
"""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from patron.auth.service import Actor, actor_label
from patron.collect.messages import RequestMeta
from patron.collect.models import Source
from patron.collect.service import Envelope, create_source, ingest
from patron.core.clock import utcnow
from patron.core.ids import new_id
from patron.identity.identifiers import ANONYMOUS_ID, USER_ID
from patron.identity.models import Identity

SOURCE_NAME = "Patron CRM"
SOURCE_KIND = "crm"
# Our own clock stamps these events; nothing to correct.
NO_SKEW = timedelta(0)

OWNER_CHANGED = "Contact Owner Changed"
STAGE_CHANGED = "Lifecycle Stage Changed"
LEAD_STATUS_CHANGED = "Lead Status Changed"
CUSTOM_CHANGED = "Contact Custom Fields Changed"
DEAL_CREATED = "Deal Created"
DEAL_STAGE_CHANGED = "Deal Stage Changed"
DEAL_WON = "Deal Won"
DEAL_LOST = "Deal Lost"
TASK_COMPLETED = "Task Completed"
CALL_LOGGED = "Call Logged"
NOTE_ADDED = "Note Added"
EMAIL_LOGGED = "Email Logged"
TICKET_CREATED = "Ticket Created"
TICKET_STATUS_CHANGED = "Ticket Status Changed"
TICKET_SOLVED = "Ticket Solved"
TICKET_COMMENT_ADDED = "Ticket Comment Added"
TICKET_SLA_WARNING = "Ticket SLA Warning"
TICKET_SLA_BREACHED = "Ticket SLA Breached"
# A web form post: a track from the forms' own source (patron.crm.forms), not a CRM edit.
FORM_SUBMITTED = "Form Submitted"
SCORE_OVERRIDDEN = "Lead Score Overridden"
SCORE_OVERRIDE_REMOVED = "Lead Score Override Removed"


def crm_source(session: Session) -> Source:
    """The built-in source CRM events come from, made on first use."""
    found = session.scalar(
        select(Source).where(Source.kind == SOURCE_KIND).order_by(Source.created_at).limit(1)
    )
    if found is not None:
        return found
    source, _key = create_source(session, name=SOURCE_NAME, kind=SOURCE_KIND)
    return source


def person_reference(session: Session, person_id: uuid.UUID) -> dict[str, Any] | None:
    """The message fields that resolve to this person and nobody else, or None if the
    person has no identifier left (nothing could attach an event to it)."""
    rows = list(
        session.execute(
            select(Identity.kind, Identity.value)
            .where(Identity.person_id == person_id)
            .order_by(Identity.id)
        )
    )
    if not rows:
        return None
    kinds = {r.kind: r.value for r in reversed(rows)}
    if USER_ID in kinds:
        return {"userId": kinds[USER_ID]}
    if ANONYMOUS_ID in kinds:
        return {"anonymousId": kinds[ANONYMOUS_ID]}
    # Known by email, phone or an external id only. A message needs a userId or an
    # anonymousId, so it carries one made from the person's id: it joins the person's
    # identifiers through the email it travels with, and names no one else.
    kind, value = rows[0]
    return {
        "anonymousId": f"patron-person:{person_id}",
        "context": {"externalIds": [{"id": value, "type": kind, "collection": "users"}]},
    }


def track_crm_change(
    session: Session,
    *,
    person_id: uuid.UUID,
    event: str,
    properties: dict[str, Any],
    actor: Actor | None,
    context: dict[str, Any] | None = None,
) -> bool:
    """Append a ``track`` for a CRM change to the log in the caller's transaction.

    Returns False when the person has no identifier an event could name it by.
    """
    reference = person_reference(session, person_id)
    if reference is None:
        return False
    message: dict[str, Any] = {
        "type": "track",
        "messageId": f"crm-{new_id().hex}",
        "event": event,
        "properties": properties,
        "timestamp": utcnow().isoformat(),
        **{k: v for k, v in reference.items() if k != "context"},
    }
    message["context"] = {
        **reference.get("context", {}),
        **(context or {}),
        "patron": {"actor": actor_label(actor), "person_id": str(person_id)},
    }
    result = ingest(
        session,
        source=crm_source(session),
        envelope=Envelope(messages=[message]),
        meta=RequestMeta(received_at=utcnow()),
        max_future_skew=NO_SKEW,
    )
    if result.rejected:  # our own message: a bug, not bad input
        raise RuntimeError(f"the event log refused a CRM event: {result.rejected[0].reason}")
    return True
