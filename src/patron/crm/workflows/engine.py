"""Matching CRM changes against the rules, and running the runs.

**Matching.** Every CRM change writes an audit entry in its own transaction;
:func:`on_audit` (an ``auth.AUDIT_LISTENERS`` entry, wired in ``pipeline.py``) sees each one,
and for every enabled rule whose trigger and conditions match, adds a pending
:class:`WorkflowRun` in that same transaction: a committed change always has its runs, a
rolled-back one none. The run's trigger key is the audit entry's id, unique per rule, so a
change runs a rule once. Rules are cached per process, re-read every few seconds (so other
processes' edits arrive) and at once after a commit that changed one here; a rule that fires
is checked against its row before a run is written, so a stale cache never acts on a
deleted, disabled or edited rule.

**Running.** :func:`run_due` (a pipeline JOB, and ``patron workflows run``) claims due runs
(PostgreSQL: ``FOR UPDATE SKIP LOCKED``; SQLite: its single writer) with a lease, then does
their actions one by one, each in its own transaction together with the record that it
completed: a retry skips what completed, so no task or note is made twice. Webhooks cannot
share a transaction with the database; they keep one message id and body across attempts,
so a receiver can drop a repeat (at least once, as Standard Webhooks intends). While an
action runs, :data:`CURRENT_RUN` says which run it belongs to: runs its changes fire are
one level deeper, and past ``workflow_max_depth`` they are recorded as ``loop_stopped``
instead of run; so are a rule's runs on one record past :data:`RECORD_RATE_LIMIT` an hour
(loops through the event log, which the depth cannot follow).
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import Any

from sqlalchemy import ColumnElement, and_, event, func, or_, select
from sqlalchemy.orm import Session, sessionmaker

from patron.auth.models import AuditEntry
from patron.auth.service import acting_as_system
from patron.core.clock import as_utc, utcnow
from patron.core.db import SQLITE_BEGIN
from patron.core.dialect import lock_row_for_update
from patron.core.errors import NotFound, PatronError
from patron.core.ids import new_id
from patron.core.settings import Settings
from patron.crm.records import jsonable
from patron.crm.workflows import actions
from patron.crm.workflows.models import WorkflowRule, WorkflowRun
from patron.crm.workflows.records import TASK, RecordKind, field_value, kind_of

log = logging.getLogger("patron.workflows")

RUN_STATUSES = (
    "pending",
    "running",
    "retrying",
    "succeeded",
    "failed",
    "loop_stopped",
    "cancelled",
)
# How old this process's copy of the rules may get before it is read again.
REFRESH_SECONDS = 5.0
# How long a worker holds a claimed run before another may take it over (it died).
LEASE = timedelta(minutes=5)
# Runs claimed at once, and the longest wait between two attempts.
CLAIM_BATCH = 100
MAX_BACKOFF = timedelta(hours=1)
# Runs of one rule on one record within an hour past which more are recorded as
# loop_stopped: a loop that passes through the event log (an action's CRM event that a
# processing step turns into another change) is not seen by the chain depth.
RECORD_RATE_LIMIT = 50
RATE_WINDOW = timedelta(hours=1)
# session.info key: this transaction changed rules (read them fresh, cache after commit).
RULES_CHANGED = "patron_workflow_rules_changed"


@dataclass(frozen=True)
class RunContext:
    """The run whose action is being done: changes it makes fire runs one level deeper."""

    run_id: int
    depth: int
    max_depth: int


CURRENT_RUN: ContextVar[RunContext | None] = ContextVar("patron_workflow_run", default=None)


# --- comparing values ------------------------------------------------------------------


def _plain(value: Any) -> Any:
    if isinstance(value, datetime):
        return as_utc(value).isoformat()
    if isinstance(value, Decimal):
        return float(value)
    if isinstance(value, uuid.UUID | date):
        return jsonable(value)
    return value


def _number(value: Any) -> float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float | Decimal):
        return float(value)
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return None
    return None


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float | Decimal) and not isinstance(value, bool)


def same_value(a: Any, b: Any) -> bool:
    """Equal as a rule means it: ids and text by their text, numbers by value (an amount
    the audit log keeps as ``"1000"`` equals 1000), lists item by item."""
    a, b = _plain(a), _plain(b)
    if a is None or b is None:
        return a is None and b is None
    if _is_number(a) or _is_number(b):
        x, y = _number(a), _number(b)
        return x is not None and x == y
    if isinstance(a, list) or isinstance(b, list):
        return (
            isinstance(a, list)
            and isinstance(b, list)
            and len(a) == len(b)
            and all(same_value(x, y) for x, y in zip(a, b, strict=True))
        )
    return str(a) == str(b)


def _ordered(actual: Any, value: Any, op: str) -> bool:
    if actual is None:
        return False
    left: Any
    right: Any
    if _is_number(value):
        left, right = _number(actual), float(value)
    elif isinstance(actual, datetime):
        left, right = as_utc(actual), _parsed(datetime.fromisoformat, value)
        right = as_utc(right) if right is not None else None
    elif isinstance(actual, date):
        left, right = actual, _parsed(date.fromisoformat, value)
    else:
        left, right = str(_plain(actual)), str(value)
    if left is None or right is None:
        return False
    return bool(left > right) if op == "gt" else bool(left < right)


def _parsed(parse: Any, value: Any) -> Any:
    try:
        return parse(str(value))
    except ValueError:
        return None


def condition_holds(actual: Any, op: str, value: Any) -> bool:
    """One condition on one value (see the README's list of operators)."""
    if op == "empty":
        return actual is None or actual in ("", [], {})
    if op == "not_empty":
        return not condition_holds(actual, "empty", None)
    if op == "eq":
        return same_value(actual, value)
    if op == "ne":
        return not same_value(actual, value)
    if op == "in":
        items = actual if isinstance(actual, list) else [actual]
        return any(same_value(item, v) for item in items for v in value)
    if op == "contains":
        if isinstance(actual, list):
            return any(same_value(item, value) for item in actual)
        return isinstance(actual, str) and str(value).lower() in actual.lower()
    if op in ("gt", "lt"):
        return _ordered(actual, value, op)
    return False


def conditions_hold(kind: RecordKind, record: Any, conditions: Sequence[Mapping[str, Any]]) -> bool:
    """Whether every condition holds on the record as it is now."""
    return all(
        condition_holds(field_value(kind, record, c["field"]), c["op"], c.get("value"))
        for c in conditions
    )


# --- compiled rules and the per-process cache ------------------------------------------


@dataclass(frozen=True)
class CompiledRule:
    """A rule as the listener needs it: what audit entries can fire it, and how to tell."""

    id: uuid.UUID
    updated_at: datetime
    name: str
    trigger_type: str
    record_type: str
    options: Mapping[str, Any]
    conditions: tuple[Mapping[str, Any], ...]
    actions: tuple[Mapping[str, Any], ...]
    # The activity kind the trigger is about (task rules, record_created with a kind).
    activity_kind: str | None = None

    @classmethod
    def of(cls, rule: WorkflowRule) -> CompiledRule:
        activity_kind = TASK if rule.record_type == TASK else rule.trigger.get("kind")
        return cls(
            id=rule.id,
            updated_at=as_utc(rule.updated_at),
            name=rule.name,
            trigger_type=rule.trigger_type,
            record_type=rule.record_type,
            options=dict(rule.trigger),
            conditions=tuple(rule.conditions),
            actions=tuple(rule.actions),
            activity_kind=activity_kind,
        )

    @property
    def audited_type(self) -> str:
        """The record type its audit entries have (a task is an activity)."""
        return "activity" if self.record_type == TASK else self.record_type

    def audit_keys(self) -> list[tuple[str, str]]:
        """The (audit action, record type) pairs that can fire it."""
        kind = self.trigger_type
        if kind == "record_created":
            return [("create", self.audited_type)]
        if kind == "field_changed":
            field_name = self.options.get("field")
            extra = ["archive", "restore"] if field_name == "archived_at" else []
            return [(action, self.audited_type) for action in ("update", *extra)]
        if kind in ("stage_changed", "deal_won", "deal_lost"):
            return [("update", "deal")]
        if kind in ("sla_warning", "sla_breach"):
            return [(kind, "ticket")]
        return [("form_submitted", "person")]

    def fires_on(self, entry: AuditEntry) -> bool:
        """Whether the change in ``entry`` is this rule's trigger (conditions aside)."""
        after, before = entry.after or {}, entry.before or {}
        kind = self.trigger_type
        if kind == "record_created":
            return self.activity_kind is None or after.get("kind") == self.activity_kind
        if kind in ("field_changed", "stage_changed"):
            name = self.options.get("field") if kind == "field_changed" else "stage_id"
            change = _changed(str(name), before, after)
            return change is not None and self._wanted(*change)
        if kind in ("deal_won", "deal_lost"):
            return "status" in after and after["status"] == kind.removeprefix("deal_")
        if kind in ("sla_warning", "sla_breach"):
            target = self.options.get("target")
            return target is None or after.get("target") == target
        form = self.options.get("form_id")
        return form is None or str(after.get("form_id")) == form

    def _wanted(self, old: Any, new: Any) -> bool:
        if "from" in self.options and not same_value(self.options["from"], old):
            return False
        return "to" not in self.options or same_value(self.options["to"], new)

    def record_conditions(self) -> list[Mapping[str, Any]]:
        """Its conditions, and for rules about tasks on updates, that the record is one."""
        implied = []
        if self.activity_kind is not None and self.trigger_type != "record_created":
            implied = [{"field": "kind", "op": "eq", "value": self.activity_kind}]
        return [*implied, *self.conditions]


def _changed(
    name: str, before: Mapping[str, Any], after: Mapping[str, Any]
) -> tuple[Any, Any] | None:
    """(old, new) of a field an update changed, or None; ``custom.KEY`` looks inside the
    custom values the audit entry keeps."""
    if name.startswith("custom."):
        key = name.removeprefix("custom.")
        if "custom" not in after:
            return None
        old, new = (before.get("custom") or {}).get(key), (after.get("custom") or {}).get(key)
        return None if old == new else (old, new)
    if name not in after:
        return None
    return before.get(name), after[name]


Index = dict[tuple[str, str], list[CompiledRule]]


def _index_rules(session: Session) -> Index:
    index: Index = {}
    with session.no_autoflush:  # the caller's half-made change is not ours to flush
        rules = session.scalars(
            select(WorkflowRule).where(
                WorkflowRule.enabled.is_(True), WorkflowRule.deleted_at.is_(None)
            )
        )
        for rule in rules:
            compiled = CompiledRule.of(rule)
            for key in compiled.audit_keys():
                index.setdefault(key, []).append(compiled)
    return index


@dataclass
class _RuleCache:
    """This process's copy of the enabled rules, by what fires them, per database."""

    index: Index | None = None
    bind: Any = None
    loaded_at: float = 0.0
    generation: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def rules_for(self, session: Session, action: str, record_type: str) -> list[CompiledRule]:
        if session.info.get(RULES_CHANGED):  # its own uncommitted edits: read, never share
            return _index_rules(session).get((action, record_type), [])
        bind = session.get_bind()
        index = self.index
        fresh = time.monotonic() - self.loaded_at < REFRESH_SECONDS
        if index is None or self.bind is not bind or not fresh:
            generation = self.generation
            index = _index_rules(session)
            with self.lock:
                if generation == self.generation:
                    self.index, self.bind, self.loaded_at = index, bind, time.monotonic()
        return index.get((action, record_type), [])

    def invalidate(self) -> None:
        with self.lock:
            self.index = None
            self.generation += 1


_cache = _RuleCache()


def rules_changed(session: Session) -> None:
    """Rule definitions changed in this session's transaction: it reads rules fresh until
    it ends, and this process's cache is dropped when it commits."""
    session.info[RULES_CHANGED] = True
    if not session.info.get(_LISTENING):
        session.info[_LISTENING] = True
        event.listen(session, "after_commit", _after_commit)
        event.listen(session, "after_rollback", _forget_change)


_LISTENING = "patron_workflow_rules_listening"


def _after_commit(session: Session) -> None:
    if session.info.pop(RULES_CHANGED, None):
        _cache.invalidate()


def _forget_change(session: Session) -> None:
    session.info.pop(RULES_CHANGED, None)


# --- the audit listener ----------------------------------------------------------------


def on_audit(session: Session, entry: AuditEntry) -> None:
    """For each rule this change fires (trigger and conditions), add a run in the same
    transaction; deeper than the limit in a chain of runs, a ``loop_stopped`` one."""
    firing = [
        rule
        for rule in _cache.rules_for(session, entry.action, entry.record_type)
        if rule.fires_on(entry)
    ]
    if not firing:
        return
    try:
        record_id = uuid.UUID(entry.record_id)
    except ValueError:
        return
    session.flush()  # the entry's id is the trigger key
    record = _Record(session, entry.record_type, record_id)
    parent = CURRENT_RUN.get()
    for cached in firing:
        rule = _current(session, cached, entry)
        if rule is None:
            continue
        conditions = rule.record_conditions()
        if conditions and not record.satisfies(conditions):
            continue
        stop = _stop_reason(session, rule, entry.record_type, record_id, parent)
        session.add(_new_run(rule, entry, record_id, parent, stop))
    session.flush()


def _stop_reason(
    session: Session,
    rule: CompiledRule,
    record_type: str,
    record_id: uuid.UUID,
    parent: RunContext | None,
) -> str | None:
    """Why a run must not run (a loop, seen by its depth or by its rate), or None."""
    depth = parent.depth + 1 if parent else 0
    if parent is not None and depth >= parent.max_depth:
        return (
            f"not run: {depth} runs led to it, and a chain of runs stops at "
            f"{parent.max_depth} (PATRON_WORKFLOW_MAX_DEPTH); a loop of rules?"
        )
    recent = session.scalar(
        select(func.count())
        .select_from(WorkflowRun)
        .where(
            WorkflowRun.record_type == record_type,
            WorkflowRun.record_id == record_id,
            WorkflowRun.rule_id == rule.id,
            WorkflowRun.created_at >= utcnow() - RATE_WINDOW,
        )
    )
    if (recent or 0) >= RECORD_RATE_LIMIT:
        return (
            f"not run: the rule ran {recent} times on this record in the last hour; "
            "a loop through other changes?"
        )
    return None


def _current(session: Session, cached: CompiledRule, entry: AuditEntry) -> CompiledRule | None:
    """The rule as its row says now (None: gone, disabled, or no longer fired by this):
    another process may have changed it since this one's copy was read."""
    row = session.get(WorkflowRule, cached.id)
    if row is not None and as_utc(row.updated_at) == cached.updated_at and row.enabled:
        return cached
    _cache.invalidate()
    if row is None or not row.enabled or row.deleted_at is not None:
        return None
    rule = CompiledRule.of(row)
    fired = (entry.action, entry.record_type) in rule.audit_keys() and rule.fires_on(entry)
    return rule if fired else None


class _Record:
    """The record a change is about, loaded once and only if a condition needs it."""

    def __init__(self, session: Session, record_type: str, record_id: uuid.UUID) -> None:
        self.session, self.kind, self.record_id = session, kind_of(record_type), record_id
        self._loaded: Any = None

    def satisfies(self, conditions: Sequence[Mapping[str, Any]]) -> bool:
        if self.kind is None:
            return False
        if self._loaded is None:
            try:
                self._loaded = self.kind.load(self.session, self.record_id)
            except NotFound:
                return False
        return conditions_hold(self.kind, self._loaded, conditions)


def _new_run(
    rule: CompiledRule,
    entry: AuditEntry,
    record_id: uuid.UUID,
    parent: RunContext | None,
    stop: str | None,
) -> WorkflowRun:
    now = utcnow()
    return WorkflowRun(
        rule_id=rule.id,
        trigger_key=f"audit:{entry.id}",
        record_type=entry.record_type,
        record_id=record_id,
        change={
            "action": entry.action,
            "before": entry.before,
            "after": entry.after,
            "actor": entry.actor_label,
            "at": as_utc(entry.at or now).isoformat(),
        },
        rule_name=rule.name,
        actions=list(rule.actions),
        depth=parent.depth + 1 if parent else 0,
        parent_run_id=parent.run_id if parent else None,
        status="pending" if stop is None else "loop_stopped",
        attempts=0,
        next_attempt_at=now,
        steps=[{"type": a["type"], "status": "pending", "attempts": 0} for a in rule.actions],
        last_error=stop,
        created_at=now,
        updated_at=now,
        finished_at=None if stop is None else now,
    )


# --- running ---------------------------------------------------------------------------


class _LostClaim(Exception):
    """Another worker took the run over (our lease ran out)."""


def run_due(
    sessions: sessionmaker[Session], settings: Settings, *, now: datetime | None = None
) -> Counter[str]:
    """Claim the runs that are due and run them; returns how many ended in each status."""
    now = now or utcnow()
    outcomes: Counter[str] = Counter()
    if not anything_due(sessions, now):
        return outcomes
    claim, claimed = _claim(sessions, settings, now)
    for run_id in claimed:
        outcomes[_execute(sessions, settings, run_id, claim, now)] += 1
    return outcomes


def _due(now: datetime) -> ColumnElement[bool]:
    """Runs waiting for their (next) attempt, and runs whose worker's lease ran out."""
    return or_(
        and_(WorkflowRun.status.in_(("pending", "retrying")), WorkflowRun.next_attempt_at <= now),
        and_(WorkflowRun.status == "running", WorkflowRun.locked_until < now),
    )


def anything_due(sessions: sessionmaker[Session], now: datetime | None = None) -> bool:
    """Whether a run is due, asked without taking SQLite's write lock (the job asks every
    few seconds, and mostly nothing is)."""
    with sessions() as session:
        session.connection(execution_options={SQLITE_BEGIN: "DEFERRED"})
        due = _due(now or utcnow())
        return session.scalar(select(WorkflowRun.id).where(due).limit(1)) is not None


def _claim(
    sessions: sessionmaker[Session], settings: Settings, now: datetime
) -> tuple[uuid.UUID, list[int]]:
    claim = new_id()
    with sessions() as session, session.begin():
        statement = (
            select(WorkflowRun)
            .where(_due(now))
            .order_by(WorkflowRun.next_attempt_at, WorkflowRun.id)
            .limit(CLAIM_BATCH)
        )
        if lock_row_for_update(session):
            statement = statement.with_for_update(skip_locked=True)
        claimed = []
        for run in session.scalars(statement):
            if run.status == "running" and run.attempts >= settings.workflow_max_attempts:
                _end(run, "failed", now, "its worker stopped during the last attempt")
                continue
            run.status, run.claim, run.locked_until = "running", claim, now + LEASE
            run.attempts += 1
            run.updated_at = now
            claimed.append(run.id)
        return claim, claimed


def _end(run: WorkflowRun, status: str, now: datetime, error: str | None = None) -> None:
    run.status, run.claim, run.locked_until = status, None, None
    run.finished_at = run.updated_at = now
    if error is not None:
        run.last_error = error


@contextmanager
def _holding(
    sessions: sessionmaker[Session], run_id: int, claim: uuid.UUID
) -> Iterator[tuple[Session, WorkflowRun]]:
    """A transaction with the run locked, as long as it is still ours."""
    with sessions() as session, session.begin():
        statement = select(WorkflowRun).where(WorkflowRun.id == run_id)
        if lock_row_for_update(session):
            statement = statement.with_for_update()
        run = session.scalar(statement)
        if run is None or run.claim != claim or run.status != "running":
            raise _LostClaim
        yield session, run


def _execute(
    sessions: sessionmaker[Session],
    settings: Settings,
    run_id: int,
    claim: uuid.UUID,
    now: datetime,
) -> str:
    """Do a claimed run's actions that have not completed; returns its status after."""
    try:
        with _holding(sessions, run_id, claim) as (session, run):
            rule = session.get_one(WorkflowRule, run.rule_id)
            if not rule.enabled or rule.deleted_at is not None:
                _end(run, "cancelled", now, "the rule was disabled or deleted before it ran")
                return "cancelled"
            # The lease counts from now: the runs before it in the batch took their time.
            run.locked_until = max(as_utc(run.locked_until or now), utcnow() + LEASE)
            planned = list(enumerate(run.actions))
            done = {i for i, step in enumerate(run.steps) if step.get("status") == "ok"}
        for index, action in planned:
            if index in done:
                continue
            try:
                _perform(sessions, settings, run_id, claim, index, action)
            except _LostClaim:
                raise
            except Exception as exc:  # the action failed: recorded on the run, and retried
                return _record_failure(sessions, settings, run_id, claim, index, exc, now)
        with _holding(sessions, run_id, claim) as (_session, run):
            _end(run, "succeeded", utcnow())
            return "succeeded"
    except _LostClaim:
        log.warning("workflow run %s was taken over by another worker", run_id)
        return "lost"


def _perform(
    sessions: sessionmaker[Session],
    settings: Settings,
    run_id: int,
    claim: uuid.UUID,
    index: int,
    action: Mapping[str, Any],
) -> None:
    """Do one action and record that it completed, in one transaction (a webhook: send
    first, record after)."""
    if action["type"] == actions.WEBHOOK:
        _send_webhook(sessions, settings, run_id, claim, index, action)
        return
    with _holding(sessions, run_id, claim) as (session, run):
        context = RunContext(run.id, run.depth, settings.workflow_max_depth)
        token = CURRENT_RUN.set(context)
        try:
            with acting_as_system(f"workflow:{run.rule_name}"):
                result = actions.perform(session, run, action)
        finally:
            CURRENT_RUN.reset(token)
        _step_done(run, index, result)


def _send_webhook(
    sessions: sessionmaker[Session],
    settings: Settings,
    run_id: int,
    claim: uuid.UUID,
    index: int,
    action: Mapping[str, Any],
) -> None:
    # The message (id and body) is made once and kept: every attempt sends the same.
    with _holding(sessions, run_id, claim) as (session, run):
        message = run.steps[index].get("message")
        if message is None:
            message = actions.webhook_message(session, run)
            _update_step(run, index, message=message)
        secret = session.get_one(WorkflowRule, run.rule_id).webhook_secret
    status = actions.deliver(
        str(action["url"]),
        secret=secret,
        message_id=message["id"],
        body=message["body"],
        timeout=settings.workflow_webhook_timeout_seconds,
    )
    with _holding(sessions, run_id, claim) as (_session, run):
        _step_done(run, index, {"status_code": status})


def _update_step(run: WorkflowRun, index: int, **changes: Any) -> None:
    steps = [dict(step) for step in run.steps]  # a new list: JSON columns track assignment
    steps[index].update(changes)
    run.steps = steps
    run.updated_at = utcnow()


def _step_done(run: WorkflowRun, index: int, result: dict[str, Any]) -> None:
    attempts = int(run.steps[index].get("attempts", 0)) + 1
    _update_step(
        run,
        index,
        status="ok",
        attempts=attempts,
        result=result,
        error=None,
        finished_at=utcnow().isoformat(),
    )


def _record_failure(
    sessions: sessionmaker[Session],
    settings: Settings,
    run_id: int,
    claim: uuid.UUID,
    index: int,
    exc: Exception,
    now: datetime,
) -> str:
    """Keep the error on the run; retry later with backoff, unless retrying cannot help
    (bad input, a record that is gone) or no attempts are left."""
    permanent = isinstance(exc, PatronError)
    error = exc.message if isinstance(exc, PatronError) else f"{type(exc).__name__}: {exc}"
    if not permanent and not isinstance(exc, actions.WebhookFailed):
        log.exception("workflow run %s: action %s failed", run_id, index + 1)
    with _holding(sessions, run_id, claim) as (_session, run):
        attempts = int(run.steps[index].get("attempts", 0)) + 1
        _update_step(run, index, status="failed", attempts=attempts, error=error)
        summary = f"action {index + 1} ({run.actions[index]['type']}): {error}"
        if permanent or run.attempts >= settings.workflow_max_attempts:
            why = "" if permanent else f" (after {run.attempts} attempts)"
            _end(run, "failed", now, summary + why)
            return "failed"
        run.status, run.claim, run.locked_until = "retrying", None, None
        run.last_error = summary
        run.next_attempt_at = now + backoff(settings, run.attempts)
        return "retrying"


def backoff(settings: Settings, attempts: int) -> timedelta:
    """The wait after the ``attempts``-th failed attempt: doubling, at most an hour."""
    seconds = settings.workflow_retry_seconds * 2 ** max(attempts - 1, 0)
    return min(timedelta(seconds=seconds), MAX_BACKOFF)
