"""Segment-spec messages: body decoding, validation with field paths, and normalisation.

Pure functions with no database: the HTTP API, file imports and the CRM all feed messages
through here, so every source obeys the same rules. The checks are written out rather than
declared as a pydantic model because Segment's rules are semantic (userId *or* anonymousId,
``event`` only on track, numbers accepted as ids) and because this is the ingest hot path.
"""

from __future__ import annotations

import functools
import gzip
import zlib
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import orjson

from patron.core.clock import as_utc
from patron.core.errors import InvalidInput, PayloadTooLarge, UnsupportedMediaType

MESSAGE_TYPES = ("identify", "track", "page", "screen", "group", "alias")
MAX_MESSAGE_BYTES = 32 * 1024
MAX_BATCH_BYTES = 500 * 1024
MAX_BATCH_MESSAGES = 2500
MAX_DEPTH = 32
MAX_ID_LENGTH = 200
OBJECT_FIELDS = ("properties", "traits", "context", "integrations")
TIME_FIELDS = ("timestamp", "sentAt", "originalTimestamp")
ID_FIELDS = ("userId", "anonymousId", "groupId", "previousId")
TEXT_FIELDS = ("messageId", "event", "name", "category")
REQUIRED_BY_TYPE = {"track": ("event",), "group": ("groupId",), "alias": ("previousId", "userId")}
FLAG_CLAMPED = "timestamp_clamped"


@dataclass(frozen=True)
class RequestMeta:
    """What the HTTP request adds to every message it carries."""

    received_at: datetime
    ip: str | None = None
    user_agent: str | None = None


@dataclass
class Rejection:
    """Why one message was refused: a code, a sentence, and the field at fault."""

    code: str
    reason: str
    field: str | None = None
    index: int | None = None
    message_id: str | None = None

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"index": self.index, "code": self.code, "message": self.reason}
        if self.field is not None:
            out["field"] = self.field
        if self.message_id is not None:
            out["messageId"] = self.message_id
        return out


@dataclass
class Message:
    """A valid, normalised message ready for the event log."""

    type: str
    message_id: str
    user_id: str | None
    anonymous_id: str | None
    event: str | None
    timestamp: datetime
    payload: dict[str, Any]
    flags: list[str] = field(default_factory=list)
    # ``payload`` as JSON, once serialised for the log (outside the write transaction).
    encoded: str | None = None


class MessageError(Exception):
    def __init__(self, code: str, reason: str, field: str | None = None) -> None:
        super().__init__(reason)
        self.code, self.reason, self.field = code, reason, field


def read_body(raw: bytes, *, content_encoding: str | None, limit: int) -> Any:
    """Decompress and parse a request body as JSON, whatever its Content-Type says."""
    encoding = (content_encoding or "identity").strip().lower()
    if encoding == "gzip":
        raw = _gunzip(raw, limit)
    elif encoding == "deflate":
        raw = _inflate(zlib.decompressobj(), raw, limit, "deflate")
    elif encoding not in ("identity", ""):
        raise UnsupportedMediaType(
            f"Content-Encoding {encoding!r} is not supported; send gzip, deflate or none",
            code="unsupported_encoding",
        )
    if len(raw) > limit:
        raise PayloadTooLarge(f"the body is over the limit of {limit} bytes", code="body_too_large")
    if not raw.strip():
        raise InvalidInput("the request body is empty; send a JSON object", code="empty_body")
    try:
        raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InvalidInput(
            f"the body is not valid UTF-8 (byte {exc.start})", code="invalid_utf8"
        ) from None
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        if str(exc).startswith("depth limit exceeded"):
            raise _too_deep() from None
        raise InvalidInput(f"the body is not valid JSON: {exc}", code="invalid_json") from None
    problem = unstorable(raw, body)
    if problem is not None:
        code, reason, path = problem
        raise InvalidInput(reason, code=code, field=path)
    return body


MAX_STORABLE_NESTING = 254  # orjson writes no deeper, so nothing deeper can be stored


TOO_DEEP = (
    f"the JSON is nested more than {MAX_STORABLE_NESTING} levels deep, which cannot be stored"
)


def _too_deep() -> InvalidInput:
    return InvalidInput(TOO_DEEP, code="too_deep")


def unstorable(raw: bytes, value: Any) -> tuple[str, str, str | None] | None:
    """Why parsed JSON cannot be stored on every database: (code, reason, path), or None.

    Messages are written back as JSON with orjson, which stops at 254 levels; finding that
    out later, message by message, would fail where no error can be answered. PostgreSQL
    refuses ``\\u0000`` in JSONB and NUL in text, where SQLite would keep it. ``raw`` is
    the text ``value`` was parsed from: both checks look at it first, so they cost next to
    nothing on ordinary input. The HTTP API and file imports both ask this.
    """
    if raw.count(b"{") + raw.count(b"[") > MAX_STORABLE_NESTING:
        try:
            orjson.dumps(value)
        except orjson.JSONEncodeError:
            return "too_deep", TOO_DEEP, None
    if b"\\u0000" not in raw:
        return None
    stack: list[tuple[Any, str]] = [(value, "")]
    while stack:
        item, path = stack.pop()
        if isinstance(item, str) and "\0" in item:
            return _nul_at(path, "a string")
        if isinstance(item, dict):
            for key, child in item.items():
                if "\0" in key:
                    return _nul_at(path, "a key")
                stack.append((child, f"{path}.{key}" if path else key))
        elif isinstance(item, list):
            stack.extend((child, f"{path}[{i}]") for i, child in enumerate(item))
    return None


def _nul_at(path: str, where: str) -> tuple[str, str, str | None]:
    reason = (
        f"{where} at {path or 'the top level'} contains a NUL character (\\u0000), "
        "which cannot be stored"
    )
    return "invalid_character", reason, path or None


def _gunzip(raw: bytes, limit: int) -> bytes:
    try:
        return _inflate(zlib.decompressobj(16 + zlib.MAX_WBITS), raw, limit, "gzip")
    except (zlib.error, gzip.BadGzipFile, EOFError) as exc:
        raise InvalidInput(f"the body is not valid gzip: {exc}", code="invalid_gzip") from None


def _inflate(decompressor: Any, raw: bytes, limit: int, encoding: str = "deflate") -> bytes:
    # Stop one byte past the limit so a small gzip bomb cannot expand into memory.
    try:
        out = decompressor.decompress(raw, limit + 1)
    except zlib.error as exc:
        raise InvalidInput(
            f"the body is not valid {encoding}: {exc}", code="invalid_gzip"
        ) from None
    if len(out) > limit:
        raise PayloadTooLarge(
            f"the decompressed body is over the limit of {limit} bytes", code="body_too_large"
        )
    return bytes(out)


def parse_time(value: Any, path: str) -> datetime:
    if not isinstance(value, str):
        raise MessageError(
            "invalid_type", f"{path} must be an ISO-8601 string, got {_kind(value)}", path
        )
    try:
        parsed = datetime.fromisoformat(value.strip())
    except ValueError:
        raise MessageError(
            "invalid_timestamp", f"{path} is not an ISO-8601 date-time: {value[:60]!r}", path
        ) from None
    try:
        return as_utc(parsed)
    except OverflowError:  # e.g. 0001-01-01T00:00:00+05:00 is before year 1 in UTC
        raise MessageError(
            "invalid_timestamp", f"{path} is out of range in UTC: {value[:60]!r}", path
        ) from None


def _kind(value: Any) -> str:
    names = {dict: "an object", list: "an array", str: "a string", bool: "a boolean"}
    if value is None:
        return "null"
    if isinstance(value, int | float) and not isinstance(value, bool):
        return "a number"
    return names.get(type(value), type(value).__name__)


def check_depth(value: Any, path: str) -> None:
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if depth > MAX_DEPTH:
            raise MessageError(
                "too_deep", f"{path} is nested more than {MAX_DEPTH} levels deep", path
            )
        if isinstance(item, dict):
            stack.extend((v, depth + 1) for v in item.values())
        elif isinstance(item, list):
            stack.extend((v, depth + 1) for v in item)


def _id_value(message: dict[str, Any], name: str) -> str | None:
    """Ids may be strings or numbers (Segment coerces numbers); blank means absent."""
    value = message.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise MessageError(
            "invalid_type", f"{name} must be a string or a number, got {_kind(value)}", name
        )
    text = (value if isinstance(value, str) else orjson.dumps(value).decode()).strip()
    if len(text) > MAX_ID_LENGTH:
        raise MessageError("too_long", f"{name} is longer than {MAX_ID_LENGTH} characters", name)
    return text or None


def _text_value(message: dict[str, Any], name: str) -> str | None:
    value = message.get(name)
    if value is None:
        return None
    if not isinstance(value, str):
        raise MessageError("invalid_type", f"{name} must be a string, got {_kind(value)}", name)
    if len(value) > MAX_ID_LENGTH:
        raise MessageError("too_long", f"{name} is longer than {MAX_ID_LENGTH} characters", name)
    return value.strip() or None


def normalise(
    raw: Any,
    *,
    meta: RequestMeta,
    message_type: str | None,
    batch_context: dict[str, Any] | None = None,
    batch_integrations: dict[str, Any] | None = None,
    batch_sent_at: datetime | None = None,
    max_future_skew: timedelta,
    make_message_id: Any = None,
    nesting_bound: int | None = None,
) -> Message:
    """Validate one message and return it normalised; raise :class:`MessageError` if bad.

    ``message_type`` is the type the endpoint implies (``/v1/track``); ``None`` in a batch,
    where each message must name its own ``type``. ``nesting_bound`` (from :func:`measure`)
    lets a shallow message skip the depth walk.
    """
    if not isinstance(raw, dict):
        raise MessageError("invalid_type", f"a message must be a JSON object, got {_kind(raw)}")
    msg: dict[str, Any] = dict(raw)
    msg.pop("writeKey", None)
    kind = _message_type(msg, message_type)
    for name in OBJECT_FIELDS:
        value = msg.get(name)
        if value is None:
            msg.pop(name, None)
        elif not isinstance(value, dict):
            raise MessageError(
                "invalid_type", f"{name} must be an object, got {_kind(value)}", name
            )
        elif nesting_bound is None or nesting_bound > MAX_DEPTH:
            check_depth(value, name)
    ids = {name: _id_value(msg, name) for name in ID_FIELDS}
    texts = {name: _text_value(msg, name) for name in TEXT_FIELDS}
    if kind != "alias" and ids["userId"] is None and ids["anonymousId"] is None:
        raise MessageError(
            "missing_identity", "a message needs a userId or an anonymousId", "userId"
        )
    for name in REQUIRED_BY_TYPE.get(kind, ()):
        if ids.get(name) is None and texts.get(name) is None:
            raise MessageError("missing_field", f"a {kind} message needs {name}", name)
    for values in (ids, texts):
        for name, value in values.items():
            if value is not None:
                msg[name] = value
    message_id = texts["messageId"] or (make_message_id() if make_message_id else None)
    if not message_id:
        raise MessageError("missing_field", "messageId is required here", "messageId")
    msg["messageId"] = message_id
    msg["type"] = kind
    _merge_context(msg, batch_context, batch_integrations, meta)
    timestamp, flags = _resolve_time(msg, meta, batch_sent_at, max_future_skew)
    return Message(
        type=kind,
        message_id=message_id,
        user_id=ids["userId"],
        anonymous_id=ids["anonymousId"],
        event=texts["event"] if kind == "track" else texts["name"],
        timestamp=timestamp,
        payload=msg,
        flags=flags,
    )


def _message_type(msg: dict[str, Any], implied: str | None) -> str:
    given = msg.get("type")
    if implied is not None:
        return implied
    if given is None:
        raise MessageError("missing_field", "a message in a batch needs a type", "type")
    if not isinstance(given, str) or given.strip().lower() not in MESSAGE_TYPES:
        allowed = ", ".join(MESSAGE_TYPES)
        raise MessageError(
            "invalid_type", f"type must be one of {allowed}, got {str(given)[:40]!r}", "type"
        )
    return given.strip().lower()


def _merge_context(
    msg: dict[str, Any],
    batch_context: dict[str, Any] | None,
    batch_integrations: dict[str, Any] | None,
    meta: RequestMeta,
) -> None:
    # The message's own keys win over the batch's; the request fills what both left out.
    context = {**(batch_context or {}), **msg.get("context", {})}
    if meta.ip and "ip" not in context:
        context["ip"] = meta.ip
    if meta.user_agent and "userAgent" not in context:
        context["userAgent"] = meta.user_agent
    msg["context"] = context
    if batch_integrations or "integrations" in msg:
        msg["integrations"] = {**(batch_integrations or {}), **msg.get("integrations", {})}


def _resolve_time(
    msg: dict[str, Any],
    meta: RequestMeta,
    batch_sent_at: datetime | None,
    max_future_skew: timedelta,
) -> tuple[datetime, list[str]]:
    """Correct the client's clock with sentAt, and clamp what is still far in the future."""
    received = meta.received_at
    original = parse_time(msg["timestamp"], "timestamp") if "timestamp" in msg else None
    sent_at = parse_time(msg["sentAt"], "sentAt") if "sentAt" in msg else batch_sent_at
    if "originalTimestamp" in msg:
        parse_time(msg["originalTimestamp"], "originalTimestamp")
    if original is None:
        timestamp = received
    elif sent_at is not None:
        try:
            timestamp = received - (sent_at - original)
        except OverflowError:
            raise MessageError(
                "invalid_timestamp",
                "timestamp and sentAt are too far apart to correct the client's clock",
                "timestamp",
            ) from None
    else:
        timestamp = original
    flags: list[str] = []
    if timestamp > received + max_future_skew:
        timestamp = received
        flags.append(FLAG_CLAMPED)
    if original is not None:
        msg["originalTimestamp"] = original.isoformat()
    if sent_at is not None:
        msg["sentAt"] = _shared_isoformat(sent_at)
    msg["receivedAt"] = _shared_isoformat(received)
    msg["timestamp"] = timestamp.isoformat()
    return timestamp, flags


@functools.lru_cache(maxsize=64)
def _shared_isoformat(value: datetime) -> str:
    # The receive time, and often sentAt, are the same for every message of a request.
    return value.isoformat()


def measure(value: Any) -> tuple[int, int]:
    """Bytes of ``value`` as JSON, and an upper bound on its nesting depth.

    Every level of nesting opens a bracket, so the count of ``{`` and ``[`` bounds the
    depth; for ordinary messages it is far below :data:`MAX_DEPTH`, which spares
    :func:`normalise` walking every value. A value JSON cannot hold is a
    :class:`MessageError`.
    """
    try:
        encoded = orjson.dumps(value)
    except orjson.JSONEncodeError as exc:
        raise MessageError(
            "too_deep" if "recursion" in str(exc).lower() else "invalid_type",
            f"the message cannot be stored as JSON: {exc}",
        ) from None
    return len(encoded), encoded.count(b"{") + encoded.count(b"[")
