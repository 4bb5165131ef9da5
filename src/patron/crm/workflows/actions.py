"""What each action of a rule does, through the same services as the API (as the system,
labelled ``workflow:<rule name>``), and webhooks signed the Standard Webhooks way."""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
import uuid
from collections.abc import Mapping
from datetime import timedelta
from typing import Any

import httpx
import orjson
from sqlalchemy import inspect
from sqlalchemy.orm import Session

from patron import __version__
from patron.core.clock import utcnow
from patron.core.errors import InvalidInput, NotFound
from patron.crm import activities
from patron.crm.records import jsonable
from patron.crm.workflows.models import WorkflowRun
from patron.crm.workflows.records import NOTE, TASK, RecordKind, kind_of

WEBHOOK = "send_webhook"
SECRET_PREFIX = "whsec_"  # noqa: S105 - the prefix of every secret, not a secret


class WebhookFailed(Exception):
    """The receiver did not answer 2xx in time: the run is retried."""


def perform(session: Session, run: WorkflowRun, action: Mapping[str, Any]) -> dict[str, Any]:
    """Do one database action of a run on its record; returns what it did (ids made)."""
    kind = kind_of(run.record_type)
    if kind is None:  # refused when the rule is saved; a kind unregistered since
        raise InvalidInput(f"workflows cannot change a {run.record_type}", field="record_type")
    record = kind.load(session, run.record_id)
    handlers = {
        "assign_owner": _assign_owner,
        "set_field": _set_field,
        "create_task": _create_task,
        "add_note": _add_note,
    }
    return handlers[action["type"]](session, kind, record, action)


def _assign_owner(
    session: Session, kind: RecordKind, record: Any, action: Mapping[str, Any]
) -> dict[str, Any]:
    kind.update(session, record.id, {kind.owner_field: uuid.UUID(action["user_id"])})
    return {kind.owner_field: action["user_id"]}


def _set_field(
    session: Session, kind: RecordKind, record: Any, action: Mapping[str, Any]
) -> dict[str, Any]:
    name, value = action["field"], action.get("value")
    if name.startswith("custom."):
        changes = {"custom": {name.removeprefix("custom."): value}}
    else:
        try:
            changes = {name: kind.settable[name](value)}
        except (KeyError, ValueError, TypeError) as exc:
            raise InvalidInput(f"cannot set {name} to {value!r}: {exc}", field=name) from exc
    kind.update(session, record.id, changes)
    return {name: value}


def _links(kind: RecordKind, record: Any) -> dict[str, uuid.UUID]:
    return {name: value for name, value in kind.links(record).items() if value is not None}


def _create_task(
    session: Session, kind: RecordKind, record: Any, action: Mapping[str, Any]
) -> dict[str, Any]:
    assignee = action.get("assignee", "owner")
    owner = kind.owner_of(record) if assignee == "owner" else uuid.UUID(str(assignee))
    values: dict[str, Any] = {
        **_links(kind, record),
        "subject": action["subject"],
        "priority": action.get("priority", "normal"),
        "owner_id": owner,
    }
    if action.get("due_in_hours") is not None:
        values["due_at"] = utcnow() + timedelta(hours=action["due_in_hours"])
    elif action.get("due_in_days") is not None:
        values["due_at"] = utcnow() + timedelta(days=action["due_in_days"])
    task = activities.create_activity(session, actor=None, kind=TASK, values=values)
    return {"activity_id": str(task.id)}


def _add_note(
    session: Session, kind: RecordKind, record: Any, action: Mapping[str, Any]
) -> dict[str, Any]:
    values = {**_links(kind, record), "body": action["body"]}
    note = activities.create_activity(session, actor=None, kind=NOTE, values=values)
    return {"activity_id": str(note.id)}


# --- webhooks --------------------------------------------------------------------------


def webhook_message(session: Session, run: WorkflowRun) -> dict[str, str]:
    """The message a run's webhook sends (made once; retries send it again as it is): a
    Standard Webhooks ``msg_`` id and a JSON body with the rule, the change and the record
    as it is now."""
    kind = kind_of(run.record_type)
    record = None
    if kind is not None:
        try:
            record = _snapshot(kind.load(session, run.record_id))
        except NotFound:  # gone since: the change still tells what happened
            record = None
    payload = {
        "type": "workflow.triggered",
        "timestamp": utcnow().isoformat(),
        "data": {
            "rule": {"id": str(run.rule_id), "name": run.rule_name},
            "run_id": run.id,
            "record_type": run.record_type,
            "record_id": str(run.record_id),
            "change": run.change,
            "record": record,
        },
    }
    return {"id": f"msg_{uuid.uuid4().hex}", "body": orjson.dumps(payload).decode()}


def _snapshot(record: Any) -> dict[str, Any]:
    return {
        attr.key: jsonable(getattr(record, attr.key))
        for attr in inspect(record).mapper.column_attrs
    }


def sign(secret: str, message_id: str, timestamp: int, body: str) -> str:
    """The ``webhook-signature`` header: ``v1,`` and the base64 HMAC-SHA256, keyed by the
    secret's bytes, of ``id.timestamp.body``."""
    key = base64.b64decode(secret.removeprefix(SECRET_PREFIX))
    content = f"{message_id}.{timestamp}.{body}".encode()
    digest = hmac.new(key, content, hashlib.sha256).digest()
    return f"v1,{base64.b64encode(digest).decode()}"


def deliver(url: str, *, secret: str, message_id: str, body: str, timeout: float) -> int:
    """POST a signed message; returns the status code, or raises :class:`WebhookFailed` on
    anything but a 2xx in time. Redirects are not followed (the URL is the receiver)."""
    timestamp = int(time.time())
    headers = {
        "content-type": "application/json",
        "user-agent": f"Patron/{__version__}",
        "webhook-id": message_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": sign(secret, message_id, timestamp, body),
    }
    try:
        response = httpx.post(url, content=body.encode(), headers=headers, timeout=timeout)
    except httpx.HTTPError as exc:
        raise WebhookFailed(f"{type(exc).__name__}: {exc or 'no answer'}") from exc
    if not 200 <= response.status_code < 300:
        raise WebhookFailed(f"the receiver answered {response.status_code}")
    return response.status_code
