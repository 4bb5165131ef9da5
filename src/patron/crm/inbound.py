"""Inbound email logging: a raw RFC 822 message (what a BCC or forwarding address
delivers) becomes an email activity on each person its addresses resolve to; an unknown
sender becomes a person."""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from email import policy
from email.headerregistry import Address
from email.message import EmailMessage
from email.parser import BytesParser
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from patron.auth.models import User
from patron.auth.service import Actor, record_audit
from patron.collect.messages import RequestMeta
from patron.collect.models import LogEntry, Source
from patron.collect.service import Envelope, ingest
from patron.core.clock import utcnow
from patron.core.errors import InvalidInput, PayloadTooLarge
from patron.core.settings import Settings
from patron.crm import events
from patron.crm.access import ACTIVITY, require_activity_writer
from patron.crm.models import Activity
from patron.identity import service as identity
from patron.identity.identifiers import Normaliser
from patron.identity.models import Identity

MAX_MESSAGE_BYTES = 10 * 1024 * 1024
MAX_BODY = 100_000
ADDRESS_HEADERS = ("from", "to", "cc")


@dataclass
class InboundResult:
    activities: list[Activity] = field(default_factory=list)
    created_persons: list[str] = field(default_factory=list)
    duplicate: bool = False


def parse_message(raw: bytes) -> EmailMessage:
    """A parsed message, or a 400 naming ``message`` (or ``from``) when it is not one."""
    if len(raw) > MAX_MESSAGE_BYTES:
        raise PayloadTooLarge(f"a message is at most {MAX_MESSAGE_BYTES} bytes", field="message")
    if not raw.strip():
        raise InvalidInput("the message is empty", field="message")
    message = BytesParser(policy=policy.default).parsebytes(raw)
    if not isinstance(message, EmailMessage) or not message.keys():
        raise InvalidInput("this is not an RFC 822 message: it has no headers", field="message")
    try:
        senders = _addresses(message, "from")
    except (ValueError, IndexError, TypeError) as exc:
        raise InvalidInput(f"the From header cannot be read: {exc}", field="from") from exc
    if len(senders) != 1:
        raise InvalidInput("the message needs exactly one From address", field="from")
    return message


def _addresses(message: EmailMessage, name: str) -> list[Address]:
    header = message.get(name)
    if header is None:
        return []
    found = getattr(header, "addresses", ())
    return [a for a in found if isinstance(a, Address) and a.addr_spec and "@" in a.addr_spec]


def _text(message: EmailMessage) -> str:
    part = message.get_body(preferencelist=("plain", "html"))
    if part is None:
        return ""
    try:
        content = part.get_content()
    except (LookupError, ValueError):  # an unknown charset: keep what decodes
        payload = part.get_payload(decode=True)
        content = payload.decode("utf-8", "replace") if isinstance(payload, bytes) else ""
    return str(content)[:MAX_BODY]


def log_inbound_email(
    session: Session, *, actor: Actor | None, raw: bytes, settings: Settings
) -> InboundResult:
    """Log a raw message as an email activity on every person it was from, to or copied to
    (staff addresses left out); an unknown sender becomes a person. The same Message-ID
    is logged once."""
    require_activity_writer(actor)
    message = parse_message(raw)
    message_id = str(message.get("message-id") or "").strip()[:500]
    message_id = message_id or f"<sha256-{hashlib.sha256(raw).hexdigest()}@patron>"
    existing = list(
        session.scalars(select(Activity).where(Activity.email_message_id == message_id))
    )
    if existing:
        return InboundResult(activities=existing, duplicate=True)
    normaliser = Normaliser(settings.phone_region, settings.email_provider_rules)
    staff = {e.lower() for e in session.scalars(select(User.email))}
    sender = _addresses(message, "from")[0]
    people = _people(message, normaliser, staff)
    details = {
        name: [a.addr_spec.lower() for a in _addresses(message, name)] for name in ADDRESS_HEADERS
    }
    base: dict[str, Any] = {
        "kind": "email",
        "subject": str(message.get("subject") or "")[:300],
        "body": _text(message),
        "direction": "outbound" if sender.addr_spec.lower() in staff else "inbound",
        "owner_id": actor.user_id if actor else None,
        "created_by": actor.email if actor else "system",
        "details": details,
        "email_message_id": message_id,
    }
    sender_email = normaliser.normalise("email", sender.addr_spec)
    result = InboundResult()
    for email, display in people:
        person = _person_with(session, email)
        if person is None and email != sender_email:
            continue  # only the sender of a message is made a person
        activity = Activity(**base, person_id=person)
        session.add(activity)
        session.flush()
        result.activities.append(activity)
        if person is None:
            _create_person(session, email, display, activity.id)
            result.created_persons.append(email)
    for activity in result.activities:
        record_audit(
            session,
            actor=actor,
            action="create",
            record_type=ACTIVITY,
            record_id=str(activity.id),
            after={"kind": "email", "subject": activity.subject, "message_id": message_id},
        )
    return result


def _people(
    message: EmailMessage, normaliser: Normaliser, staff: set[str]
) -> list[tuple[str, str]]:
    """(email, display name) of every customer address, the sender first; an address that
    does not normalise is left out, and only the sender may be unknown."""
    seen: dict[str, str] = {}
    for name in ADDRESS_HEADERS:
        for address in _addresses(message, name):
            email = normaliser.normalise("email", address.addr_spec)
            if email is None or email in staff or address.addr_spec.lower() in staff:
                continue
            seen.setdefault(email, address.display_name)
    return list(seen.items())


def _person_with(session: Session, email: str) -> uuid.UUID | None:
    found = session.scalar(
        select(Identity.person_id).where(Identity.kind == "email", Identity.value == email)
    )
    return None if found is None else identity.live_person(session, found).id


def _create_person(session: Session, email: str, display: str, activity_id: uuid.UUID) -> None:
    """An identify for an unknown address, through the log like any message; processing
    makes the person and attaches the waiting activity (``context.crm.activities``)."""
    traits: dict[str, Any] = {"email": email}
    if display:
        traits["name"] = display[:200]
    message = {
        "type": "identify",
        "messageId": f"crm-{uuid.uuid4().hex}",
        # Stable per address, so two emails from a stranger make one person.
        "anonymousId": f"email:{email}",
        "traits": traits,
        "context": {"crm": {"activities": [str(activity_id)]}},
        "timestamp": utcnow().isoformat(),
    }
    result = ingest(
        session,
        source=events.crm_source(session),
        envelope=Envelope(messages=[message]),
        meta=RequestMeta(received_at=utcnow()),
        max_future_skew=events.NO_SKEW,
    )
    if result.rejected:
        raise InvalidInput(
            f"{email} cannot become a person: {result.rejected[0].reason}", field="from"
        )


def attach_waiting_activities(
    session: Session, batch: Sequence[LogEntry], owners: Mapping[int, uuid.UUID]
) -> None:
    """Processing step: activities logged for an address nobody had yet go on the person
    the identify made for it (only messages of the CRM's own source may do this)."""
    carrying = [(e, _waiting(e)) for e in batch if _waiting(e)]
    if not carrying:
        return
    crm = set(session.scalars(select(Source.id).where(Source.kind == events.SOURCE_KIND)))
    for event, ids in carrying:
        if event.source_id in crm and event.seq in owners:
            session.execute(
                update(Activity)
                .where(Activity.id.in_(ids), Activity.person_id.is_(None))
                .values(person_id=owners[event.seq])
            )


def _waiting(event: LogEntry) -> list[uuid.UUID]:
    context = event.payload.get("context")
    crm = context.get("crm") if isinstance(context, dict) else None
    ids = crm.get("activities") if isinstance(crm, dict) else None
    out: list[uuid.UUID] = []
    for value in ids if isinstance(ids, list) else []:
        try:
            out.append(uuid.UUID(str(value)))
        except ValueError:
            continue
    return out
