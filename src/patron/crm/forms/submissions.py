"""Accepting a form post: parse it, check the answers, and in one transaction keep the
submission and append its ``identify`` and ``Form Submitted`` track to the event log.

Two steps, like the tracking API: :func:`prepare` needs no database (concurrent requests
run it in parallel), :func:`store` runs in the write transaction and applies the rate
limits. :func:`submit` does both, for callers that are not HTTP requests (the demo).
Every post to an existing form is kept, whatever becomes of it; only accepted ones enter
the log.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import orjson
from sqlalchemy import insert
from sqlalchemy.orm import Session

from patron import __version__
from patron.collect import service as collect
from patron.collect.messages import RequestMeta, read_body
from patron.core.errors import InvalidInput, PatronError, PayloadTooLarge, UnsupportedMediaType
from patron.core.settings import Settings
from patron.crm.events import FORM_SUBMITTED
from patron.crm.forms import definitions as d
from patron.crm.forms import rates
from patron.crm.forms.models import Form, FormSubmission
from patron.crm.forms.service import ACCEPTED, REJECTED, form_source
from patron.identity.identifiers import EMAIL, PHONE, USER_ID, Normaliser

# A post is read up to this many bytes: more is refused (413) without reading the rest.
MAX_BODY_BYTES = 64 * 1024
# The checked answers must fit, with the rest of the message, in one log message (32 KB).
MAX_ANSWERS_BYTES = 24 * 1024
MAX_FIELDS_PARSED = 500
# What is kept of a refused post: enough to see what it was, bounded whatever was sent.
KEPT_KEYS, KEPT_CHARS = 100, 1000
MAX_URL = 2000
MAX_UTM = 200
TRUE = frozenset({"on", "true", "1", "yes"})
FALSE = frozenset({"", "off", "false", "0", "no"})
CONTROL = re.compile(r"[\x00-\x1f\x7f]")
FORM_CONTENT = "application/x-www-form-urlencoded"
JSON_CONTENT = "application/json"


@dataclass(frozen=True)
class FormView:
    """What the public side needs of a form, detached from any session."""

    id: uuid.UUID
    name: str
    slug: str
    description: str
    submit_label: str
    fields: list[dict[str, Any]]
    consents: list[dict[str, Any]]
    success_message: str
    redirect_url: str | None
    enabled: bool

    @classmethod
    def of(cls, form: Form) -> FormView:
        return cls(
            id=form.id,
            name=form.name,
            slug=form.slug,
            description=form.description,
            submit_label=form.submit_label,
            fields=list(form.fields),
            consents=list(form.consents),
            success_message=form.success_message,
            redirect_url=form.redirect_url,
            enabled=form.enabled,
        )


@dataclass(frozen=True)
class SubmissionMeta:
    """What the request adds: when it came, and from which client (``ip_hash``: the
    address's hash when the caller made it already, see :func:`rates.hash_ip`)."""

    received_at: datetime
    ip: str | None = None
    user_agent: str | None = None
    ip_hash: str | None = None


@dataclass(frozen=True)
class Draft:
    """A post, checked and ready to store: accepted (with its messages) or rejected."""

    id: uuid.UUID
    form_id: uuid.UUID
    meta: SubmissionMeta
    status: str
    reason: str | None = None
    # What to answer instead of success (None for accepted and honeypot posts).
    problem: PatronError | None = None
    # Every problem with the answers as {"field", "message"}, to show beside each input.
    errors: list[dict[str, str]] = field(default_factory=list)
    answers: dict[str, Any] = field(default_factory=dict)
    consent: dict[str, bool] = field(default_factory=dict)
    attribution: dict[str, str] = field(default_factory=dict)
    anonymous_id: str | None = None
    batch: collect.PreparedBatch | None = None


@dataclass(frozen=True)
class Outcome:
    submission_id: uuid.UUID
    status: str
    reason: str | None
    problem: PatronError | None
    retry_after: int | None = None


# --- reading the post ------------------------------------------------------------------


def parse_body(raw: bytes, content_type: str | None) -> dict[str, Any]:
    """A browser form post or a JSON object, as {name: value}."""
    kind = (content_type or "").partition(";")[0].strip().lower()
    if kind == JSON_CONTENT:
        body = read_body(raw, content_encoding=None, limit=MAX_BODY_BYTES)
        if not isinstance(body, dict):
            raise InvalidInput("the body must be a JSON object of answers", code="invalid_json")
        return body
    if kind != FORM_CONTENT:
        raise UnsupportedMediaType(
            f"send the answers as {FORM_CONTENT} (an HTML form) or {JSON_CONTENT}",
            code="unsupported_content_type",
        )
    try:
        text = raw.decode("utf-8")
        pairs = parse_qsl(text, keep_blank_values=True, max_num_fields=MAX_FIELDS_PARSED)
    except (UnicodeDecodeError, ValueError):
        raise InvalidInput(
            f"the form post is not valid UTF-8 {FORM_CONTENT} with at most "
            f"{MAX_FIELDS_PARSED} fields",
            code="invalid_form_post",
        ) from None
    parsed: dict[str, Any] = {}
    for name, value in pairs:
        parsed.setdefault(name, value)  # a name posted twice: the first value counts
    return parsed


# --- checking the answers --------------------------------------------------------------


def _text(value: Any) -> str | None:
    """An answer as text, or None when it is missing or is not a plain value."""
    if value is None or isinstance(value, dict | list):
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float | int):
        return orjson.dumps(value).decode()
    return str(value).strip()


def _check_field(
    spec: Mapping[str, Any], raw: Any, normaliser: Normaliser
) -> tuple[Any, str | None]:
    """(the checked value or None when unanswered, the problem or None)."""
    kind, label = spec["type"], spec["label"]
    if kind == "checkbox":
        ticked = (_text(raw) or "").lower()
        if ticked not in TRUE | FALSE:
            return None, f"{label}: tick the box or leave it empty"
        checked = ticked in TRUE
        if spec["required"] and not checked:
            return None, f"{label} must be ticked"
        return checked, None
    text = _text(raw)
    if kind == "hidden" and not text:
        text = str(spec.get("default") or "")
    if not text:
        return None, (f"{label} is required" if spec["required"] else None)
    if "\x00" in text:
        return None, f"{label} contains a NUL character"
    if len(text) > spec["max_length"]:
        return None, f"{label} is longer than {spec['max_length']} characters"
    return _typed(kind, spec, text, normaliser)


def _typed(
    kind: str, spec: Mapping[str, Any], text: str, normaliser: Normaliser
) -> tuple[Any, str | None]:
    label = spec["label"]
    if kind == "email":
        if normaliser.email(text) is None:
            return None, f"{label} is not a valid email address"
        return text, None
    if kind == "phone":
        e164 = normaliser.phone(text)
        if e164 is None:
            return None, f"{label} is not a valid phone number"
        return e164, None
    if kind == "number":
        try:
            number = float(text)
        except ValueError:
            number = float("nan")
        if number != number or number in (float("inf"), float("-inf")):
            return None, f"{label} is not a number"
        return int(number) if number.is_integer() and abs(number) < 2**53 else number, None
    if kind == "select" and text not in spec["options"]:
        return None, f"{label} must be one of the choices offered"
    return text, None


def check_answers(
    form: FormView, payload: Mapping[str, Any], normaliser: Normaliser
) -> tuple[dict[str, Any], dict[str, bool], list[dict[str, str]]]:
    """The checked answers, the consents given, and every problem (field, message)."""
    answers: dict[str, Any] = {}
    errors: list[dict[str, str]] = []
    for spec in form.fields:
        value, problem = _check_field(spec, payload.get(spec["key"]), normaliser)
        if problem is not None:
            errors.append({"field": spec["key"], "message": problem})
        elif value is not None:
            answers[spec["key"]] = value
    consent: dict[str, bool] = {}
    for spec in form.consents:
        name = f"consent.{spec['purpose']}"
        given = (_text(payload.get(name)) or "").lower() in TRUE
        consent[spec["purpose"]] = given
        if spec["required"] and not given:
            errors.append({"field": name, "message": "This consent is needed to send the form"})
    identifying = [f for f in form.fields if f["identifier"]]
    if not errors and not any(f["key"] in answers for f in identifying):
        names = ", ".join(f["label"] for f in identifying)
        errors.append({"field": identifying[0]["key"], "message": f"Give at least: {names}"})
    return answers, consent, errors


def page_context(payload: Mapping[str, Any]) -> tuple[dict[str, str], str | None]:
    """Attribution (utm_*, referrer, landing page) and the snippet's anonymous id, from the
    inputs the page filled in. Malformed values are dropped, never refused: they are
    the page's, not the visitor's."""
    attribution: dict[str, str] = {}
    for name in d.UTM:
        value = _text(payload.get(name))
        if value and len(value) <= MAX_UTM and not CONTROL.search(value):
            attribution[name] = value
    for name, key in ((d.REFERRER, "referrer"), (d.PAGE_URL, "landing_page")):
        url = _web_url(_text(payload.get(name)))
        if url:
            attribution[key] = url
    anonymous = _text(payload.get(d.ANONYMOUS))
    if not anonymous or len(anonymous) > 200 or CONTROL.search(anonymous):
        anonymous = None
    return attribution, anonymous


def _web_url(value: str | None) -> str | None:
    """Only http(s) URLs are kept: anything else could become a script link somewhere."""
    if not value or len(value) > MAX_URL or CONTROL.search(value):
        return None
    try:
        parts = urlsplit(value)
    except ValueError:
        return None
    return value if parts.scheme in ("http", "https") and parts.netloc else None


def kept(payload: Mapping[str, Any]) -> dict[str, str]:
    """What is kept of a refused post: the first names, their values as capped text, with
    characters no database can store replaced."""
    out: dict[str, str] = {}
    for name, value in list(payload.items())[:KEPT_KEYS]:
        text = value if isinstance(value, str) else orjson.dumps(value).decode()
        out[_storable(str(name)[:200])] = _storable(text[:KEPT_CHARS])
    return out


def _storable(text: str) -> str:
    return text.replace("\x00", "\ufffd")


# --- building the messages -------------------------------------------------------------


def _set_trait(traits: dict[str, Any], path: str, value: Any) -> None:
    *parents, last = path.split(".")
    for part in parents:
        child = traits.get(part)
        traits[part] = child = child if isinstance(child, dict) else {}
        traits = child
    traits[last] = value


def _identity(form: FormView, answers: Mapping[str, Any]) -> dict[str, Any]:
    """The identify's traits, userId and external ids, from the fields' mapping."""
    traits: dict[str, Any] = {}
    external: list[dict[str, Any]] = []
    user_id: str | None = None
    for spec in form.fields:
        if spec["key"] not in answers:
            continue
        value, kind = answers[spec["key"]], spec["identifier"]
        if spec["trait"]:
            _set_trait(traits, spec["trait"], value)
        elif kind in (EMAIL, PHONE):
            traits[kind] = value
        elif kind == USER_ID:
            user_id = str(value)
        elif kind:
            external.append({"id": str(value), "type": kind, "collection": "users"})
    return {"traits": traits, "external": external, "user_id": user_id}


def anonymous_id_for(submission_id: uuid.UUID) -> str:
    """A message needs a userId or an anonymousId: this one, when the visitor brought
    neither, names the submission's person and no one else."""
    return f"form-submission:{submission_id}"


def track_message_id(submission_id: uuid.UUID) -> str:
    return f"form-{submission_id.hex}-track"


def _messages(draft: Draft, form: FormView) -> list[dict[str, Any]]:
    mapped = _identity(form, draft.answers)
    attribution = draft.attribution
    campaign = {
        target: attribution[f"utm_{source}"]
        for target, source in (
            ("name", "campaign"),
            ("source", "source"),
            ("medium", "medium"),
            ("term", "term"),
            ("content", "content"),
        )
        if f"utm_{source}" in attribution
    }
    page = {
        key: attribution[name]
        for key, name in (("url", "landing_page"), ("referrer", "referrer"))
        if name in attribution
    }
    context: dict[str, Any] = {
        "library": {"name": "patron-forms", "version": __version__},
        "patron": {"form_id": str(form.id), "submission_id": str(draft.id)},
    }
    parts = {"page": page, "campaign": campaign, "externalIds": mapped["external"]}
    for name, value in parts.items():
        if value:
            context[name] = value
    if draft.consent:
        context["consent"] = {"categoryPreferences": draft.consent}
    who: dict[str, Any] = {"anonymousId": draft.anonymous_id or anonymous_id_for(draft.id)}
    if mapped["user_id"]:
        who["userId"] = mapped["user_id"]
    stamp = draft.meta.received_at.isoformat()
    properties = {
        "form_id": str(form.id),
        "form_name": form.name,
        "submission_id": str(draft.id),
        "answers": draft.answers,
        "page_url": attribution.get("landing_page"),
        "referrer": attribution.get("referrer"),
        **{name: attribution[name] for name in d.UTM if name in attribution},
    }
    common = {**who, "context": context, "timestamp": stamp}
    identify = {"type": "identify", "messageId": f"form-{draft.id.hex}-identify"}
    track = {"type": "track", "messageId": track_message_id(draft.id), "event": FORM_SUBMITTED}
    return [
        {**identify, **common, "traits": mapped["traits"]},
        {**track, **common, "properties": properties},
    ]


# --- prepare, store, submit ------------------------------------------------------------


def refused(
    form: FormView,
    meta: SubmissionMeta,
    problem: PatronError,
    reason: str,
    payload: Mapping[str, Any] | None = None,
) -> Draft:
    """A post refused before its answers could be checked (too large, unreadable, or for
    a disabled form), kept as rejected."""
    attribution, anonymous = page_context(payload or {})
    return Draft(
        id=uuid.uuid4(),
        form_id=form.id,
        meta=meta,
        status=REJECTED,
        reason=reason,
        problem=problem,
        errors=[{"field": problem.field or "", "message": problem.message}],
        answers=kept(payload or {}),
        attribution=attribution,
        anonymous_id=anonymous,
    )


def prepare(
    form: FormView,
    payload: Mapping[str, Any],
    meta: SubmissionMeta,
    *,
    source_id: uuid.UUID,
    settings: Settings,
) -> Draft:
    """Check a post's answers and, when it is good, make its messages. Needs no database."""
    if not form.enabled:
        closed = PatronError("this form is closed", code="form_disabled", status=410)
        return refused(form, meta, closed, "form_disabled", payload)
    normaliser = Normaliser(settings.phone_region, settings.email_provider_rules)
    answers, consent, errors = check_answers(form, payload, normaliser)
    attribution, anonymous = page_context(payload)
    draft = Draft(
        id=uuid.uuid4(),
        form_id=form.id,
        meta=meta,
        status=ACCEPTED,
        answers=answers,
        consent=consent,
        attribution=attribution,
        anonymous_id=anonymous,
    )
    if _text(payload.get(d.HONEYPOT)):
        # Answered like a success, so the bot learns nothing; kept, never logged.
        return replace(draft, status=REJECTED, reason="honeypot", answers=kept(payload))
    if errors:
        first = errors[0]
        problem = InvalidInput(first["message"], field=first["field"], details=errors)
        return replace(
            draft,
            status=REJECTED,
            reason="invalid",
            problem=problem,
            errors=errors,
            answers=kept(payload),
        )
    if len(orjson.dumps(answers)) > MAX_ANSWERS_BYTES:
        large = PayloadTooLarge(
            f"the answers take more than {MAX_ANSWERS_BYTES} bytes", code="answers_too_large"
        )
        return refused(form, meta, large, "too_large", payload)
    return _with_messages(draft, form, source_id, payload)


def _with_messages(
    draft: Draft, form: FormView, source_id: uuid.UUID, payload: Mapping[str, Any]
) -> Draft:
    batch = collect.prepare(
        source_id=source_id,
        envelope=collect.Envelope(messages=_messages(draft, form)),
        # No context.ip: a form keeps the client's address only as a salted hash.
        meta=RequestMeta(received_at=draft.meta.received_at, user_agent=draft.meta.user_agent),
        max_future_skew=timedelta(0),
    )
    if batch.rejected:  # nothing a visitor sends should get here; refuse it plainly if so
        rejection = batch.rejected[0][0]
        problem = InvalidInput(rejection.reason, code=rejection.code)
        return refused(form, draft.meta, problem, "invalid", payload)
    return replace(draft, batch=batch)


def store(session: Session, draft: Draft, *, settings: Settings) -> Outcome:
    """Apply the rate limits, keep the submission, and append an accepted one's messages
    to the log, all in the caller's transaction (flushes only; commit before answering)."""
    now, ip = draft.meta.received_at, draft.meta.ip
    ip_hash = draft.meta.ip_hash or (rates.hash_ip(session, ip, now.date()) if ip else None)
    limits = []
    if ip_hash and settings.form_rate_per_ip_minute:
        limits.append(rates.Limit(f"ip:{ip_hash}", settings.form_rate_per_ip_minute, True))
    if draft.status == ACCEPTED and settings.form_rate_per_form_minute:
        limits.append(
            rates.Limit(f"form:{draft.form_id}", settings.form_rate_per_form_minute, False)
        )
    wait = rates.check_rates(session, limits, now)
    if wait is not None:
        limited = PatronError(
            f"too many submissions; try again in {wait} seconds", code="rate_limited", status=429
        )
        draft = replace(draft, status=REJECTED, reason="rate_limited", problem=limited)
    session.execute(insert(FormSubmission), [_row(draft, ip_hash)])
    if draft.status == ACCEPTED and draft.batch is not None:
        collect.store(session, draft.batch)
    return Outcome(draft.id, draft.status, draft.reason, draft.problem, wait)


def _row(draft: Draft, ip_hash: str | None) -> dict[str, Any]:
    problem = draft.problem
    agent = draft.meta.user_agent
    return {
        "id": draft.id,
        "form_id": draft.form_id,
        "status": draft.status,
        "reason": draft.reason,
        "error": _storable(problem.message) if problem is not None else None,
        "error_field": problem.field if problem is not None else None,
        "answers": draft.answers,
        "consent": draft.consent,
        "attribution": draft.attribution,
        "anonymous_id": draft.anonymous_id,
        "ip_hash": ip_hash,
        "user_agent": _storable(agent[:500]) if agent else None,
        "attempts": 0,
        "created_at": draft.meta.received_at,
    }


def submit(
    session: Session,
    *,
    form: Form,
    payload: Mapping[str, Any],
    meta: SubmissionMeta,
    settings: Settings,
) -> Outcome:
    """Prepare and store one post in the caller's transaction (the public endpoint does the
    same in two steps)."""
    source = form_source(session)
    draft = prepare(FormView.of(form), payload, meta, source_id=source.id, settings=settings)
    return store(session, draft, settings=settings)


def field_errors(errors: Sequence[Mapping[str, str]]) -> dict[str, str]:
    """Problems by input name, the first for each, for showing beside the inputs."""
    out: dict[str, str] = {}
    for error in errors:
        out.setdefault(error["field"], error["message"])
    return out
