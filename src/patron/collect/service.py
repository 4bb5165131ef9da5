"""Sources and write keys, accepting messages into the event log, and reading it back."""

from __future__ import annotations

import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, cast

import orjson
from sqlalchemy import (
    ColumnElement,
    Select,
    String,
    Table,
    event,
    func,
    insert,
    select,
    type_coerce,
)
from sqlalchemy.orm import Session, object_session, sessionmaker

from patron.auth.service import Actor, record_audit
from patron.collect.messages import (
    MAX_MESSAGE_BYTES,
    MessageError,
    Rejection,
    RequestMeta,
    measure,
    normalise,
)
from patron.collect.messages import Message as NormalisedMessage
from patron.collect.models import Event, EventKey, LogEntry, LoggedEvent, RejectedMessage, Source
from patron.core.clock import as_utc, utcnow
from patron.core.db import json_dumps, json_loads
from patron.core.dialect import (
    dialect_name,
    driver_values,
    insert_ignoring_conflicts,
    insert_rows_ignoring_conflicts,
    lock_event_log,
)
from patron.core.errors import Conflict, Forbidden, InvalidInput, NotFound, Unauthenticated
from patron.core.ids import hash_secret, new_id, new_secret
from patron.core.pagination import Page, decode_int_cursor, encode_cursor

SOURCE_KINDS = ("server", "browser", "mobile", "import", "crm", "form")
MAX_RAW_KEPT = 64 * 1024


# --- sources ---------------------------------------------------------------------------


def create_source(
    session: Session,
    *,
    name: str,
    kind: str = "server",
    allowed_origins: Sequence[str] = (),
    actor: Actor | None = None,
) -> tuple[Source, str]:
    """Create a source; the write key is returned once and only its hash is stored."""
    name = name.strip()
    if not name or len(name) > 200:
        raise InvalidInput("a source needs a name of 1 to 200 characters", field="name")
    if kind not in SOURCE_KINDS:
        raise InvalidInput(f"kind must be one of {', '.join(SOURCE_KINDS)}", field="kind")
    if session.scalar(select(Source.id).where(Source.name == name)) is not None:
        raise Conflict(f"a source named {name!r} already exists", field="name")
    key = new_secret("pk")
    source = Source(
        name=name,
        kind=kind,
        write_key_hash=hash_secret(key),
        write_key_prefix=key[:8],
        allowed_origins=[_origin(o) for o in allowed_origins],
    )
    session.add(source)
    session.flush()
    record_audit(
        session,
        actor=actor,
        action="create",
        record_type="source",
        record_id=str(source.id),
        after={"name": name, "kind": kind},
    )
    return source, key


def _origin(value: str) -> str:
    value = value.strip().rstrip("/")
    if not value.startswith(("http://", "https://")):
        raise InvalidInput(
            f"an allowed origin must look like https://example.com, got {value!r}",
            field="allowed_origins",
        )
    return value


def get_source(session: Session, source_id: uuid.UUID) -> Source:
    source = session.get(Source, source_id)
    if source is None:
        raise NotFound(f"no source with id {source_id}")
    return source


def get_source_by_name(session: Session, name: str) -> Source:
    source = session.scalar(select(Source).where(Source.name == name))
    if source is None:
        raise NotFound(f"no source named {name!r}", field="source")
    return source


def list_sources(session: Session) -> list[Source]:
    return list(session.scalars(select(Source).order_by(Source.name)))


def update_source(
    session: Session,
    source: Source,
    *,
    actor: Actor | None,
    name: str | None = None,
    enabled: bool | None = None,
    allowed_origins: Sequence[str] | None = None,
) -> Source:
    """Rename, enable or disable a source, or change the browser origins it accepts."""
    before = {
        "name": source.name,
        "enabled": source.enabled,
        "allowed_origins": source.allowed_origins,
    }
    if name is not None and name.strip() != source.name:
        clash = session.scalar(select(Source.id).where(Source.name == name.strip()))
        if clash is not None:
            raise Conflict(f"a source named {name!r} already exists", field="name")
        source.name = name.strip()
    if enabled is not None:
        source.enabled = enabled
    if allowed_origins is not None:
        source.allowed_origins = [_origin(o) for o in allowed_origins]
    after = {
        "name": source.name,
        "enabled": source.enabled,
        "allowed_origins": source.allowed_origins,
    }
    record_audit(
        session,
        actor=actor,
        action="update",
        record_type="source",
        record_id=str(source.id),
        before=before,
        after=after,
    )
    return source


def rotate_write_key(session: Session, source: Source, *, actor: Actor | None) -> str:
    """Give the source a new write key; the old one stops working at once."""
    key = new_secret("pk")
    source.write_key_hash = hash_secret(key)
    source.write_key_prefix = key[:8]
    source.key_rotated_at = utcnow()
    record_audit(
        session, actor=actor, action="rotate_key", record_type="source", record_id=str(source.id)
    )
    return key


def source_for_write_key(session: Session, write_key: str | None) -> Source:
    """The enabled source a write key belongs to: 401 when unknown, 403 when disabled."""
    if not write_key:
        raise Unauthenticated(
            "no write key: send it as the HTTP Basic user name, as writeKey in the body, "
            "or as ?writeKey=",
            code="missing_write_key",
        )
    source = session.scalar(select(Source).where(Source.write_key_hash == hash_secret(write_key)))
    if source is None:
        raise Unauthenticated("unknown write key", code="invalid_write_key")
    if not source.enabled:
        raise Forbidden(f"source {source.name!r} is disabled", code="source_disabled")
    return source


# How long a server process trusts what it last read about a write key. Every batch names
# its key, and reading the source took a read transaction of its own per request (about a
# millisecond, a sixth of storing 100 events); disabling a source or rotating its key
# reaches the other server processes within this time (at once in the one that did it).
WRITE_KEY_SECONDS = 2.0


@dataclass(frozen=True)
class WriteGrant:
    """What ingest needs of the enabled source a write key opens."""

    source_id: uuid.UUID
    allowed_origins: tuple[str, ...]


# The hash of a write key -> when its source was read (monotonic seconds), and the grant.
_GRANTS: dict[str, tuple[float, WriteGrant]] = {}


def grant_for_write_key(readers: sessionmaker[Session], write_key: str | None) -> WriteGrant:
    """:func:`source_for_write_key`, remembered for :data:`WRITE_KEY_SECONDS`.

    Only keys of enabled sources are remembered, so the cache holds one entry per source
    at most, whatever keys clients make up; an unknown or disabled key is read every time.
    """
    hashed = hash_secret(write_key) if write_key else ""
    now = time.monotonic()
    known = _GRANTS.get(hashed)
    if known is not None and now - known[0] < WRITE_KEY_SECONDS:
        return known[1]
    with readers() as session:
        source = source_for_write_key(session, write_key)
        grant = WriteGrant(source.id, tuple(source.allowed_origins or ()))
    _GRANTS[hashed] = (now, grant)
    return grant


@event.listens_for(Source, "after_update")
@event.listens_for(Source, "after_delete")
def _forget_grants(_mapper: Any, _connection: Any, source: Source) -> None:
    # A source changed in this process (disabled, key rotated, origins edited): forget
    # every grant, not only its own, since the old key's hash is no longer on the row.
    # Only once the change is committed: until then a request reads the row as it was,
    # and would remember that again.
    session = object_session(source)
    if session is None:
        _GRANTS.clear()
    else:
        session.info[_FORGET_ON_COMMIT] = True


_FORGET_ON_COMMIT = "patron_forget_write_keys"


@event.listens_for(Session, "after_commit")
def _forget_grants_committed(session: Session) -> None:
    if session.info.pop(_FORGET_ON_COMMIT, False):
        _GRANTS.clear()


def check_origin(allowed_origins: Sequence[str], origin: str | None) -> None:
    if origin and allowed_origins and origin.rstrip("/") not in allowed_origins:
        raise Forbidden(
            f"origin {origin} may not send with this write key", code="origin_not_allowed"
        )


# --- accepting messages ----------------------------------------------------------------


@dataclass
class IngestResult:
    accepted: int = 0
    duplicates: int = 0
    rejected: list[Rejection] = field(default_factory=list)
    flagged: int = 0

    def as_dict(self) -> dict[str, Any]:
        return {
            "success": True,
            "accepted": self.accepted,
            "duplicates": self.duplicates,
            "rejected": [r.as_dict() for r in self.rejected],
        }


@dataclass
class Envelope:
    """A decoded request: its messages and the batch-level fields that apply to each."""

    messages: list[Any]
    message_type: str | None = None
    context: dict[str, Any] | None = None
    integrations: dict[str, Any] | None = None
    sent_at: datetime | None = None


@dataclass
class PreparedBatch:
    """A request's messages after validation: what the writer needs, and nothing to do."""

    source_id: uuid.UUID
    received_at: datetime
    messages: list[NormalisedMessage]
    rejected: list[tuple[Rejection, Any]] = field(default_factory=list)

    @property
    def size(self) -> int:
        return len(self.messages) + len(self.rejected)


def prepare(
    *,
    source_id: uuid.UUID,
    envelope: Envelope,
    meta: RequestMeta,
    max_future_skew: timedelta,
    make_message_id: Any = None,
) -> PreparedBatch:
    """Validate and normalise each message, and serialise the good ones for the log.

    Needs no database, so concurrent requests do this in parallel, before they queue for
    the write transaction (:func:`store`).
    """
    batch = PreparedBatch(source_id=source_id, received_at=meta.received_at, messages=[])
    for index, raw in enumerate(envelope.messages):
        try:
            size, nesting_bound = measure(raw)
            if size > MAX_MESSAGE_BYTES:
                raise MessageError(
                    "message_too_large", f"the message is over {MAX_MESSAGE_BYTES} bytes"
                )
            message = normalise(
                raw,
                meta=meta,
                message_type=envelope.message_type,
                batch_context=envelope.context,
                batch_integrations=envelope.integrations,
                batch_sent_at=envelope.sent_at,
                max_future_skew=max_future_skew,
                make_message_id=make_message_id or _server_message_id,
                nesting_bound=nesting_bound,
            )
        except MessageError as exc:
            rejection = Rejection(exc.code, exc.reason, exc.field, index, _message_id_of(raw))
            batch.rejected.append((rejection, raw))
            continue
        message.encoded = json_dumps(message.payload)
        batch.messages.append(message)
    return batch


def store(session: Session, batch: PreparedBatch) -> IngestResult:
    """Append a prepared batch to the log and keep its rejected messages. Flushes only."""
    result = IngestResult()
    for rejection, raw in batch.rejected:
        result.rejected.append(rejection)
        keep_rejected(session, source_id=batch.source_id, rejection=rejection, raw=raw)
    if batch.messages:
        inserted = append_to_log(
            session,
            source_id=batch.source_id,
            messages=batch.messages,
            received_at=batch.received_at,
        )
        result.accepted = len(batch.messages)
        result.duplicates = len(batch.messages) - inserted
        result.flagged = sum(1 for m in batch.messages if m.flags)
    return result


def ingest(
    session: Session,
    *,
    source: Source,
    envelope: Envelope,
    meta: RequestMeta,
    max_future_skew: timedelta,
    make_message_id: Any = None,
) -> IngestResult:
    """Validate each message, append the good ones to the log and keep the bad ones.

    A bad message never takes the good ones beside it down. Flushes; the caller commits,
    and only after that commit may it answer 2xx.
    """
    batch = prepare(
        source_id=source.id,
        envelope=envelope,
        meta=meta,
        max_future_skew=max_future_skew,
        make_message_id=make_message_id,
    )
    return store(session, batch)


def _server_message_id() -> str:
    return f"patron-{new_id().hex}"


def _message_id_of(raw: Any) -> str | None:
    if isinstance(raw, dict) and isinstance(raw.get("messageId"), str):
        return str(raw["messageId"])[:200]
    return None


EVENTS: Table = Event.__table__  # type: ignore[assignment]
EVENT_COLUMNS = (
    "source_id",
    "message_id",
    "type",
    "event",
    "user_id",
    "anonymous_id",
    "timestamp",
    "received_at",
    "flags",
    "payload",
)


def append_to_log(
    session: Session,
    *,
    source_id: uuid.UUID,
    messages: Sequence[NormalisedMessage],
    received_at: datetime,
) -> int:
    """Append messages; a messageId the source already sent is skipped. Returns rows added.

    Goes through the driver's executemany with the payloads serialised beforehand (by
    :func:`prepare`, outside the write transaction): this is the hottest insert there is.
    """
    lock_event_log(session)
    to_driver = driver_values(session)
    source = to_driver.uuid(source_id)
    received = to_driver.datetime(received_at)
    rows = [
        (
            source,
            m.message_id,
            m.type,
            m.event[:200] if m.event else None,
            m.user_id,
            m.anonymous_id,
            to_driver.datetime(m.timestamp),
            received,
            json_dumps(m.flags) if m.flags else "[]",
            m.encoded or json_dumps(m.payload),
        )
        for m in messages
    ]
    return insert_rows_ignoring_conflicts(
        session, EVENTS, EVENT_COLUMNS, rows, ("source_id", "message_id")
    )


def keep_rejected(
    session: Session, *, source_id: uuid.UUID | None, rejection: Rejection, raw: Any
) -> None:
    """Store a refused message with its reason, so a user can see why data went missing."""
    text = raw if isinstance(raw, str) else _dump(raw)
    session.execute(
        insert(RejectedMessage),
        [
            {
                "source_id": source_id,
                "received_at": utcnow(),
                "code": rejection.code,
                "reason": rejection.reason,
                "field": rejection.field,
                "message_id": rejection.message_id,
                "raw": text[:MAX_RAW_KEPT],
            }
        ],
    )


def _dump(raw: Any) -> str:
    try:
        return orjson.dumps(raw).decode()
    except (TypeError, orjson.JSONEncodeError):
        return repr(raw)


# --- reading the log -------------------------------------------------------------------


@dataclass
class EventFilter:
    source_id: uuid.UUID | None = None
    type: str | None = None
    event: str | None = None
    user_id: str | None = None
    anonymous_id: str | None = None
    since: datetime | None = None
    until: datetime | None = None

    def conditions(self) -> list[ColumnElement[bool]]:
        out: list[ColumnElement[bool]] = []
        if self.source_id is not None:
            out.append(Event.source_id == self.source_id)
        if self.type is not None:
            out.append(Event.type == self.type)
        if self.event is not None:
            out.append(Event.event == self.event)
        if self.user_id is not None:
            out.append(Event.user_id == self.user_id)
        if self.anonymous_id is not None:
            out.append(Event.anonymous_id == self.anonymous_id)
        if self.since is not None:
            out.append(Event.received_at >= self.since)
        if self.until is not None:
            out.append(Event.received_at < self.until)
        return out


def list_events(
    session: Session, *, filters: EventFilter, limit: int = 50, cursor: str | None = None
) -> Page[Event]:
    """The log newest first, filtered, with keyset pagination on the sequence."""
    after = decode_int_cursor(cursor)
    if filters.user_id is None and filters.anonymous_id is None:
        conditions = filters.conditions()
        statement: Select[Event] = select(Event).where(*conditions)
        if after is not None:
            statement = statement.where(Event.seq < after)
        rows = list(session.scalars(statement.order_by(Event.seq.desc()).limit(limit + 1)))
        total = session.scalar(select(func.count()).select_from(Event).where(*conditions)) or 0
    else:
        rows, total = _events_by_id(session, filters, limit + 1, after)
    next_cursor = encode_cursor([rows[limit - 1].seq]) if len(rows) > limit else None
    return Page[Event](items=rows[:limit], total=total, next_cursor=next_cursor)


def _events_by_id(
    session: Session, filters: EventFilter, limit: int, after: int | None
) -> tuple[list[Event], int]:
    """Events filtered by userId or anonymousId: through event_keys, then the unindexed tail."""
    indexed_to = session.scalar(select(func.max(EventKey.seq))) or 0
    conditions = filters.conditions()
    tail = select(Event).where(Event.seq > indexed_to, *conditions)
    keys = [EventKey.seq <= indexed_to]
    if filters.user_id is not None:
        keys.append(EventKey.user_id == filters.user_id)
    if filters.anonymous_id is not None:
        keys.append(EventKey.anonymous_id == filters.anonymous_id)
    indexed = select(Event).join(EventKey, EventKey.seq == Event.seq).where(*keys, *conditions)
    total = sum(
        session.scalar(select(func.count()).select_from(part.subquery())) or 0
        for part in (tail, indexed)
    )
    if after is not None:
        tail = tail.where(Event.seq < after)
        indexed = indexed.where(EventKey.seq < after)
    rows = list(session.scalars(tail.order_by(Event.seq.desc()).limit(limit)))
    if len(rows) < limit:
        more = indexed.order_by(EventKey.seq.desc()).limit(limit - len(rows))
        rows.extend(session.scalars(more))
    return rows, total


_EVENTS = cast(Table, Event.__table__)
_LOGGED_COLUMNS = [_EVENTS.c[name] for name in LoggedEvent._fields]
# On SQLite the same columns as the driver stores them: hex ids, "YYYY-MM-DD HH:MM:SS.ffffff"
# times and JSON text, converted below by C functions. SQLAlchemy's conversions (a regular
# expression per time, a UUID per row) were a third of reading the log.
_RAW_COLUMNS = [
    type_coerce(c, String())
    if c.name in ("source_id", "timestamp", "received_at", "payload")
    else c
    for c in _LOGGED_COLUMNS
]


def read_log(
    session: Session, *conditions: ColumnElement[bool], limit: int | None
) -> list[LoggedEvent]:
    """Events of the log in order (``seq``), without the ORM, for processing and replays.
    Times are in UTC (converted once here, not again by every handler)."""
    raw = dialect_name(session) == "sqlite"
    columns = _RAW_COLUMNS if raw else _LOGGED_COLUMNS
    rows = session.execute(select(*columns).where(*conditions).order_by(_EVENTS.c.seq).limit(limit))
    if not raw:
        return [
            LoggedEvent(seq, source, message, kind, name, user, anon, as_utc(at), as_utc(got), body)
            for seq, source, message, kind, name, user, anon, at, got, body in rows
        ]
    sources: dict[str, uuid.UUID] = {}
    parse = datetime.fromisoformat
    return [
        LoggedEvent(
            seq,
            sources.get(source) or sources.setdefault(source, uuid.UUID(source)),
            message,
            kind,
            name,
            user,
            anon,
            parse(at).replace(tzinfo=UTC),
            parse(got).replace(tzinfo=UTC),
            json_loads(body),
        )
        for seq, source, message, kind, name, user, anon, at, got, body in rows
    ]


def record_event_keys(session: Session, events: Sequence[LogEntry]) -> None:
    """Index the ids of a batch the processing loop read (see :class:`EventKey`)."""
    if not events:
        return
    first, last = events[0].seq, events[-1].seq
    statement = insert_ignoring_conflicts(session, EventKey.__table__, ["seq"]).from_select(
        ["seq", "user_id", "anonymous_id"],
        select(Event.seq, Event.user_id, Event.anonymous_id).where(
            Event.seq >= first, Event.seq <= last
        ),
    )
    session.execute(statement)


def list_rejected(
    session: Session,
    *,
    source_id: uuid.UUID | None = None,
    limit: int = 50,
    cursor: str | None = None,
) -> Page[RejectedMessage]:
    """Refused messages newest first, with the reason each was refused."""
    conditions = [RejectedMessage.source_id == source_id] if source_id else []
    statement = select(RejectedMessage).where(*conditions)
    after = decode_int_cursor(cursor)
    if after is not None:
        statement = statement.where(RejectedMessage.id < after)
    rows = list(session.scalars(statement.order_by(RejectedMessage.id.desc()).limit(limit + 1)))
    total = (
        session.scalar(select(func.count()).select_from(RejectedMessage).where(*conditions)) or 0
    )
    next_cursor = encode_cursor([rows[limit - 1].id]) if len(rows) > limit else None
    return Page[RejectedMessage](items=rows[:limit], total=total, next_cursor=next_cursor)


def cdn_settings(*, write_key: str, base_url: str) -> dict[str, Any]:
    """What analytics.js fetches from ``{cdnURL}/v1/projects/{key}/settings``."""
    scheme, _, host = base_url.rstrip("/").partition("://")
    return {
        "integrations": {
            "Segment.io": {
                "apiKey": write_key,
                "apiHost": f"{host}/v1",
                "protocol": scheme or "https",
                "unbundledIntegrations": [],
                "addBundledMetadata": True,
                "maybeBundledConfigIds": {},
                "versionSettings": {"version": "4.4.7", "componentTypes": ["browser"]},
            }
        },
        "plan": {
            "track": {"__default": {"enabled": True, "integrations": {}}},
            "identify": {"__default": {"enabled": True}},
            "group": {"__default": {"enabled": True}},
        },
        "edgeFunction": {},
        "analyticsNextEnabled": True,
        "middlewareSettings": {},
        "enabledMiddleware": {},
        "metrics": {"sampleRate": 0},
        "legacyVideoPluginsEnabled": False,
        "remotePlugins": [],
    }
