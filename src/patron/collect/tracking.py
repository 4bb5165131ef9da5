"""The Segment-compatible tracking endpoints (``/v1/track``, ``/v1/batch``, ``/v1/t``, ...).

Handlers here only decode the request: the body whatever its Content-Type, the write key
from wherever the client put it. Everything else is :func:`service.ingest`.
"""

from __future__ import annotations

import base64
import binascii
from datetime import timedelta
from typing import Any

import orjson
from fastapi import APIRouter, Request, Response
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from patron.collect import service
from patron.collect.messages import (
    MAX_BATCH_BYTES,
    MAX_BATCH_MESSAGES,
    MAX_MESSAGE_BYTES,
    MessageError,
    RequestMeta,
    check_depth,
    parse_time,
    read_body,
)
from patron.core.clock import utcnow
from patron.core.errors import InvalidInput, PatronError, PayloadTooLarge
from patron.core.runtime import Runtime
from patron.core.web import client_ip

router = APIRouter(tags=["tracking"])

SINGLE = {
    "identify": "identify",
    "track": "track",
    "page": "page",
    "screen": "screen",
    "group": "group",
    "alias": "alias",
    "i": "identify",
    "t": "track",
    "p": "page",
    "s": "screen",
    "g": "group",
    "a": "alias",
}
BATCH = ("batch", "import", "b")
TRACKING_PATHS = frozenset(f"/v1/{name}" for name in (*SINGLE, *BATCH))
CORS_HEADERS = {
    "Access-Control-Allow-Origin": "*",
    "Access-Control-Allow-Methods": "POST, OPTIONS",
    "Access-Control-Allow-Headers": "Content-Type, Authorization, Content-Encoding, X-Retry-Count",
    "Access-Control-Max-Age": "86400",
}


async def read_capped(request: Request, limit: int) -> bytes:
    """The raw body, refusing with 413 as soon as it passes ``limit`` bytes."""
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit:
        raise PayloadTooLarge(f"the body is over the limit of {limit} bytes", code="body_too_large")
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise PayloadTooLarge(
                f"the body is over the limit of {limit} bytes", code="body_too_large"
            )
        chunks.append(chunk)
    return b"".join(chunks)


def write_key_of(request: Request, body: Any) -> str | None:
    """HTTP Basic user name, then ``writeKey`` in the body, then ``?writeKey=``."""
    scheme, _, credential = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() == "basic" and credential:
        try:
            user = base64.b64decode(credential.strip(), validate=True).decode().partition(":")[0]
        except (binascii.Error, UnicodeDecodeError):
            raise InvalidInput(
                "the Authorization header is not valid HTTP Basic", code="invalid_write_key"
            ) from None
        if user:
            return user
    if isinstance(body, dict) and isinstance(body.get("writeKey"), str) and body["writeKey"]:
        return str(body["writeKey"])
    return request.query_params.get("writeKey") or None


def envelope_of(body: Any, message_type: str | None) -> service.Envelope:
    if message_type is not None:
        return service.Envelope(messages=[body], message_type=message_type)
    if not isinstance(body, dict):
        raise InvalidInput("a batch body must be a JSON object with a batch array", field="batch")
    batch = body.get("batch")
    if not isinstance(batch, list):
        raise InvalidInput("batch must be an array of messages", field="batch")
    if len(batch) > MAX_BATCH_MESSAGES:
        raise PayloadTooLarge(
            f"a batch may hold at most {MAX_BATCH_MESSAGES} messages, this one has {len(batch)}",
            code="too_many_messages",
            field="batch",
        )
    envelope = service.Envelope(messages=batch)
    for name in ("context", "integrations"):
        value = body.get(name)
        if value is not None and not isinstance(value, dict):
            raise InvalidInput(f"{name} must be an object", field=name)
        try:
            # Merged into every message, so held to the same nesting limit as theirs.
            check_depth(value, name)
        except MessageError as exc:
            raise InvalidInput(exc.reason, code=exc.code, field=name) from None
    envelope.context = body.get("context")
    envelope.integrations = body.get("integrations")
    if body.get("sentAt") is not None:
        try:
            envelope.sent_at = parse_time(body["sentAt"], "sentAt")
        except MessageError as exc:
            raise InvalidInput(exc.reason, field="sentAt") from None
    return envelope


def accept(
    runtime: Runtime,
    write_key: str | None,
    envelope: service.Envelope,
    meta: RequestMeta,
    origin: str | None,
) -> service.IngestResult:
    """Resolve the source, validate, and store: the caller may answer 2xx only after this.

    Only the store runs in the write transaction, which concurrent requests share
    (``runtime.writer``); this returns once that transaction has committed.
    """
    grant = service.grant_for_write_key(runtime.readers, write_key)
    service.check_origin(grant.allowed_origins, origin)
    batch = service.prepare(
        source_id=grant.source_id,
        envelope=envelope,
        meta=meta,
        max_future_skew=timedelta(seconds=runtime.settings.max_future_skew_seconds),
    )

    def work(db: Session) -> service.IngestResult:
        return service.store(db, batch)

    return runtime.writer.run(work, size=batch.size)


async def handle(request: Request, message_type: str | None) -> Response:
    limit = MAX_MESSAGE_BYTES if message_type else MAX_BATCH_BYTES
    raw = await read_capped(request, limit)
    body = read_body(raw, content_encoding=request.headers.get("content-encoding"), limit=limit)
    write_key = write_key_of(request, body)
    envelope = envelope_of(body, message_type)
    meta = RequestMeta(
        received_at=utcnow(),
        ip=client_ip(request),
        user_agent=request.headers.get("user-agent"),
    )
    runtime: Runtime = request.app.state.runtime
    result = await run_in_threadpool(
        accept, runtime, write_key, envelope, meta, request.headers.get("origin")
    )
    if result.rejected and result.accepted == 0:
        first = result.rejected[0]
        raise PatronError(
            first.reason
            if len(result.rejected) == 1
            else f"all {len(result.rejected)} messages were rejected; see details",
            code=first.code if len(result.rejected) == 1 else "invalid_messages",
            field=first.field if len(result.rejected) == 1 else None,
            details=[r.as_dict() for r in result.rejected],
        )
    return Response(orjson.dumps(result.as_dict()), media_type="application/json")


def _single(message_type: str) -> Any:
    async def endpoint(request: Request) -> Response:
        return await handle(request, message_type)

    endpoint.__name__ = f"collect_{message_type}"
    return endpoint


async def collect_batch(request: Request) -> Response:
    return await handle(request, None)


for _path, _type in SINGLE.items():
    router.add_api_route(
        f"/v1/{_path}",
        _single(_type),
        methods=["POST"],
        include_in_schema=len(_path) > 1,
        summary=f"Send one {_type} message",
    )
for _path in BATCH:
    router.add_api_route(
        f"/v1/{_path}",
        collect_batch,
        methods=["POST"],
        include_in_schema=len(_path) > 1,
        summary="Send up to 2,500 messages",
    )


class TrackingCors:
    """Adds :data:`CORS_HEADERS` to every answer of the tracking and snippet endpoints,
    errors included, unless the endpoint set its own.

    Browsers post from any site that embeds the snippet; the write key, not a cookie, is the
    credential, so a wildcard origin is safe here and only here. A plain ASGI middleware:
    Starlette's ``BaseHTTPMiddleware`` runs each request and its answer through a task and
    memory streams of its own, on the path every tracked event takes.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "") if scope["type"] == "http" else ""
        if path not in TRACKING_PATHS and not path.startswith("/v1/projects/"):
            await self.app(scope, receive, send)
            return

        async def send_with_cors(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                for name, value in CORS_HEADERS.items():
                    headers.setdefault(name, value)
            await send(message)

        await self.app(scope, receive, send_with_cors)


def preflight() -> Response:
    """CORS preflight for browsers that send the write key in an Authorization header."""
    return Response(status_code=204, headers=CORS_HEADERS)


for _path in sorted(TRACKING_PATHS):
    router.add_api_route(_path, preflight, methods=["OPTIONS"], include_in_schema=False)
