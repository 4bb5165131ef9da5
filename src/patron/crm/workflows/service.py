"""Workflow rules: defining them (checked when saved, loops refused), listing them and
their runs, retrying a failed run.

Matching changes against rules and running them is :mod:`.engine`; what each action does
is :mod:`.actions`.
"""

from __future__ import annotations

import base64
import re
import secrets
import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit

from sqlalchemy import ColumnElement, and_, false, or_, select, true
from sqlalchemy.orm import Session

from patron.auth.models import Role
from patron.auth.service import Actor, actor_label, record_audit
from patron.core.clock import utcnow
from patron.core.errors import Conflict, InvalidInput, NotFound
from patron.core.pagination import Field, ListQuery, Page, keyset_page
from patron.crm import activities
from patron.crm import fields as custom_fields
from patron.crm.models import CustomField, Stage
from patron.crm.records import check_owner
from patron.crm.workflows import engine
from patron.crm.workflows.models import WorkflowRule, WorkflowRun
from patron.crm.workflows.records import KINDS, TASK, RecordKind, kind_of, readable_ids
from patron.crm.workflows.schemas import (
    ACTIONS,
    AssignOwnerIn,
    ConditionIn,
    CreateTaskIn,
    RuleIn,
    RulePatch,
    SendWebhookIn,
    SetFieldIn,
    TriggerIn,
)

RULE = "workflow_rule"
RUN = "workflow_run"
# The record type a trigger implies (None: the rule names one).
IMPLIED_RECORD_TYPE = {
    "record_created": None,
    "field_changed": None,
    "stage_changed": "deal",
    "deal_won": "deal",
    "deal_lost": "deal",
    "sla_warning": "ticket",
    "sla_breach": "ticket",
    "form_submitted": "person",
}
# The options each trigger takes (TriggerIn attribute names).
TRIGGER_OPTIONS = {
    "record_created": {"kind"},
    "field_changed": {"field", "from_", "to"},
    "stage_changed": {"from_", "to"},
    "deal_won": set(),
    "deal_lost": set(),
    "sla_warning": {"target"},
    "sla_breach": {"target"},
    "form_submitted": {"form_id"},
}
# What "set a field" writes, in the audit's terms (completing a task sets done_at).
WRITTEN_AS = {"done": "done_at"}
FIELD_NAME = re.compile(r"^[a-z_][a-z0-9_]{0,59}$")
TRAIT_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,99}$")

RULE_FIELDS: dict[str, Field] = {
    "id": Field(WorkflowRule.id, "uuid", uuid.UUID),
    "name": Field(WorkflowRule.name),
    "enabled": Field(WorkflowRule.enabled, "bool", lambda v: v.lower() == "true"),
    "trigger_type": Field(WorkflowRule.trigger_type),
    "record_type": Field(WorkflowRule.record_type),
    "created_at": Field(WorkflowRule.created_at, "datetime", datetime.fromisoformat),
    "updated_at": Field(WorkflowRule.updated_at, "datetime", datetime.fromisoformat),
}
RUN_FIELDS: dict[str, Field] = {
    "id": Field(WorkflowRun.id, "number", int),
    "rule_id": Field(WorkflowRun.rule_id, "uuid", uuid.UUID),
    "status": Field(WorkflowRun.status),
    "record_type": Field(WorkflowRun.record_type),
    "record_id": Field(WorkflowRun.record_id, "uuid", uuid.UUID),
    "depth": Field(WorkflowRun.depth, "number", int),
    "attempts": Field(WorkflowRun.attempts, "number", int),
    "next_attempt_at": Field(WorkflowRun.next_attempt_at, "datetime", datetime.fromisoformat),
    "created_at": Field(WorkflowRun.created_at, "datetime", datetime.fromisoformat),
    "finished_at": Field(WorkflowRun.finished_at, "datetime", datetime.fromisoformat),
}


# --- defining rules --------------------------------------------------------------------


def create_rule(session: Session, *, actor: Actor | None, spec: RuleIn) -> tuple[WorkflowRule, str]:
    """Save a rule; returns it and its webhook signing secret (shown this once)."""
    engine.rules_changed(session)
    trigger_type, record_type, options = _check_trigger(session, spec.trigger)
    conditions = _check_conditions(session, record_type, spec.conditions)
    actions = _check_actions(session, record_type, spec.actions)
    _refuse_self_trigger(trigger_type, record_type, options, actions)
    secret = new_webhook_secret()
    rule = WorkflowRule(
        name=_check_name(spec.name),
        description=spec.description,
        enabled=spec.enabled,
        trigger_type=trigger_type,
        record_type=record_type,
        trigger=options,
        conditions=conditions,
        actions=actions,
        webhook_secret=secret,
        created_by=actor_label(actor),
    )
    session.add(rule)
    session.flush()
    record_audit(
        session,
        actor=actor,
        action="create",
        record_type=RULE,
        record_id=str(rule.id),
        after=describe_rule(rule),
    )
    return rule, secret


def update_rule(
    session: Session, *, actor: Actor | None, rule_id: uuid.UUID, changes: RulePatch
) -> WorkflowRule:
    """Change a rule; a new trigger, conditions or actions are checked as a whole again."""
    rule = get_rule(session, rule_id)
    engine.rules_changed(session)
    before = describe_rule(rule)
    given = changes.model_fields_set
    if "name" in given:
        rule.name = _check_name(changes.name)
    if "description" in given:
        rule.description = changes.description or ""
    if "enabled" in given:
        if changes.enabled is None:
            raise InvalidInput("enabled is true or false", field="enabled")
        rule.enabled = changes.enabled
    _redefine(session, rule, changes)
    after = describe_rule(rule)
    old = {k: v for k, v in before.items() if after[k] != v}
    if old:
        rule.updated_at = utcnow()
        record_audit(
            session,
            actor=actor,
            action="update",
            record_type=RULE,
            record_id=str(rule.id),
            before=old,
            after={k: after[k] for k in old},
        )
    session.flush()
    return rule


def _redefine(session: Session, rule: WorkflowRule, changes: RulePatch) -> None:
    """Apply a new trigger, conditions or actions; what is kept is checked again against
    what changed (a new trigger may be about another kind of record)."""
    trigger = changes.trigger if changes.trigger is not None else _trigger_of(rule)
    trigger_type, record_type, options = _check_trigger(session, trigger)
    conditions = changes.conditions
    if conditions is None:
        conditions = [ConditionIn.model_validate(c) for c in rule.conditions]
    actions = changes.actions if changes.actions is not None else rule.actions
    checked_conditions = _check_conditions(session, record_type, conditions)
    checked_actions = _check_actions(session, record_type, ACTIONS.validate_python(actions))
    _refuse_self_trigger(trigger_type, record_type, options, checked_actions)
    rule.trigger_type, rule.record_type, rule.trigger = trigger_type, record_type, options
    rule.conditions, rule.actions = checked_conditions, checked_actions


def delete_rule(session: Session, *, actor: Actor | None, rule_id: uuid.UUID) -> None:
    """Delete a rule: it fires no more and its pending runs are cancelled; its runs stay
    listable."""
    rule = get_rule(session, rule_id)
    engine.rules_changed(session)
    rule.deleted_at = utcnow()
    rule.enabled = False
    record_audit(
        session,
        actor=actor,
        action="delete",
        record_type=RULE,
        record_id=str(rule.id),
        before=describe_rule(rule),
    )
    session.flush()


def rotate_secret(
    session: Session, *, actor: Actor | None, rule_id: uuid.UUID
) -> tuple[WorkflowRule, str]:
    """Give a rule a new webhook signing secret (shown this once); the old one stops."""
    rule = get_rule(session, rule_id)
    engine.rules_changed(session)
    secret = new_webhook_secret()
    rule.webhook_secret = secret
    rule.updated_at = utcnow()
    record_audit(
        session, actor=actor, action="rotate_secret", record_type=RULE, record_id=str(rule.id)
    )
    session.flush()
    return rule, secret


def _check_name(name: str | None) -> str:
    if name is None or not name.strip():
        raise InvalidInput("a rule needs a name", field="name")
    return name.strip()


def new_webhook_secret() -> str:
    """A Standard Webhooks secret: ``whsec_`` and 32 random bytes in base64."""
    return "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode()


def get_rule(session: Session, rule_id: uuid.UUID) -> WorkflowRule:
    """A rule that is not deleted, or 404 naming ``rule_id``."""
    rule = session.get(WorkflowRule, rule_id)
    if rule is None or rule.deleted_at is not None:
        raise NotFound(f"no workflow rule with id {rule_id}", field="rule_id")
    return rule


def list_rules(session: Session, *, query: ListQuery) -> Page[WorkflowRule]:
    """The rules (not deleted), filtered, sorted (by name by default) and paged."""
    statement = select(WorkflowRule).where(WorkflowRule.deleted_at.is_(None))
    return keyset_page(
        session,
        statement,
        fields=RULE_FIELDS,
        query=query,
        default_sort="name",
        tiebreak=RULE_FIELDS["id"],
    )


def describe_rule(rule: WorkflowRule) -> dict[str, Any]:
    """A rule's definition, as the API shows it and the audit log keeps it (never its
    secret)."""
    return {
        "name": rule.name,
        "description": rule.description,
        "enabled": rule.enabled,
        "trigger": {"type": rule.trigger_type, "record_type": rule.record_type, **rule.trigger},
        "conditions": rule.conditions,
        "actions": rule.actions,
    }


def _trigger_of(rule: WorkflowRule) -> TriggerIn:
    return TriggerIn.model_validate(
        {"type": rule.trigger_type, "record_type": rule.record_type, **rule.trigger}
    )


# --- checking a rule -------------------------------------------------------------------


def _check_trigger(session: Session, trigger: TriggerIn) -> tuple[str, str, dict[str, Any]]:
    """The trigger's type, record type and options, or a 400 naming ``trigger.<option>``."""
    kind = trigger.type
    given = trigger.model_fields_set - {"type", "record_type"}
    for name in sorted(given - TRIGGER_OPTIONS[kind]):
        label = "from" if name == "from_" else name
        raise InvalidInput(f"a {kind} trigger takes no {label!r}", field=f"trigger.{label}")
    record_type = _trigger_record_type(trigger)
    options: dict[str, Any] = {}
    if kind == "record_created" and trigger.kind is not None:
        options["kind"] = _activity_kind(record_type, trigger.kind)
    if kind == "field_changed":
        options["field"] = _changed_field(session, record_type, trigger.field)
    if kind in ("field_changed", "stage_changed"):
        for name, label in (("from_", "from"), ("to", "to")):
            if name in given:
                value = getattr(trigger, name)
                options[label] = _trigger_value(
                    session, kind, kind_of(record_type), options.get("field"), value, label
                )
    if trigger.target is not None:
        options["target"] = trigger.target
    if trigger.form_id is not None:
        options["form_id"] = str(trigger.form_id)
    return kind, record_type, options


def _trigger_record_type(trigger: TriggerIn) -> str:
    implied = IMPLIED_RECORD_TYPE[trigger.type]
    if implied is not None:
        if trigger.record_type not in (None, implied):
            raise InvalidInput(
                f"a {trigger.type} trigger is about a {implied}", field="trigger.record_type"
            )
        return implied
    if trigger.record_type is None:
        raise InvalidInput(
            f"a {trigger.type} trigger needs a record_type", field="trigger.record_type"
        )
    if trigger.type == "record_created" and trigger.record_type == "person":
        raise InvalidInput(
            "persons are not created by hand but by identity resolution, so no change "
            "records their creation: use a form_submitted trigger, or field_changed on "
            "lifecycle_stage",
            field="trigger.record_type",
        )
    return trigger.record_type


def _activity_kind(record_type: str, kind: str) -> str:
    if record_type not in ("activity", TASK):
        raise InvalidInput("only activities have a kind", field="trigger.kind")
    if kind not in activities.KINDS or (record_type == TASK and kind != TASK):
        raise InvalidInput(
            f"kind must be one of {', '.join(activities.KINDS)}", field="trigger.kind"
        )
    return kind


def _changed_field(session: Session, record_type: str, name: str | None) -> str:
    if not name:
        raise InvalidInput("a field_changed trigger needs a field", field="trigger.field")
    kind = kind_of(record_type)
    if name.startswith("custom."):
        _custom_definition(session, kind, name, "trigger.field")
        return name
    audited = kind.audited if kind else None
    if audited is None:  # a kind whose service we do not know: any plain field name
        if not FIELD_NAME.match(name):
            raise InvalidInput(f"{name!r} is not a field name", field="trigger.field")
        return name
    if name not in audited:
        raise InvalidInput(
            f"changes of {name!r} are not recorded for a {record_type}; the fields are "
            f"{', '.join(sorted(audited))} and custom.KEY",
            field="trigger.field",
        )
    return name


def _trigger_value(
    session: Session,
    trigger_type: str,
    kind: RecordKind | None,
    field_name: str | None,
    value: Any,
    label: str,
) -> Any:
    """A from/to value: a stage of a pipeline for stage_changed, else any JSON scalar or
    list (ids as text)."""
    where = f"trigger.{label}"
    if trigger_type == "stage_changed" or (field_name or "").endswith("_id"):
        if value is None:
            return None
        try:
            parsed = uuid.UUID(str(value))
        except ValueError as exc:
            raise InvalidInput(f"{label} is an id", field=where) from exc
        if trigger_type == "stage_changed" and session.get(Stage, parsed) is None:
            raise InvalidInput(f"no stage {parsed}", field=where)
        return str(parsed)
    if isinstance(value, dict):
        raise InvalidInput(f"{label} is a value, not an object", field=where)
    allowed = kind.choices.get(field_name or "") if kind else None
    if allowed is not None and value is not None and value not in allowed:
        raise InvalidInput(f"{field_name} is one of {', '.join(allowed)}", field=where)
    return value


def _custom_definition(
    session: Session, kind: RecordKind | None, name: str, where: str
) -> CustomField:
    key = name.removeprefix("custom.")
    record_type = kind.custom_type if kind else None
    definition = custom_fields.fields_of(session, record_type).get(key) if record_type else None
    if definition is None:
        raise InvalidInput(f"there is no custom field {name!r} here", field=where)
    return definition


def _check_conditions(
    session: Session, record_type: str, conditions: Sequence[ConditionIn]
) -> list[dict[str, Any]]:
    kind = kind_of(record_type)
    if conditions and kind is None:
        raise InvalidInput(
            f"rules on a {record_type} cannot have conditions yet (its kind of record is "
            "not registered with workflows)",
            field="conditions",
        )
    out = []
    for index, condition in enumerate(conditions):
        where = f"conditions[{index}]"
        assert kind is not None
        _condition_field(session, kind, condition.field, f"{where}.field")
        _condition_value(condition, f"{where}.value")
        out.append(condition.model_dump(mode="json"))
    return out


def _condition_field(session: Session, kind: RecordKind, name: str, where: str) -> None:
    if name.startswith("custom."):
        _custom_definition(session, kind, name, where)
    elif name.startswith("traits."):
        if not kind.has_traits or not TRAIT_NAME.match(name.removeprefix("traits.")):
            raise InvalidInput(f"a {kind.name} has no {name!r}", field=where)
    elif name not in kind.columns():
        known = ", ".join(sorted(kind.columns()))
        raise InvalidInput(f"a {kind.name} has no field {name!r}; fields are {known}", field=where)


def _condition_value(condition: ConditionIn, where: str) -> None:
    value, op = condition.value, condition.op
    if op in ("empty", "not_empty"):
        if value is not None:
            raise InvalidInput(f"{op} takes no value", field=where)
    elif op == "in":
        if not isinstance(value, list) or not value:
            raise InvalidInput("in takes a list of values", field=where)
    elif op in ("gt", "lt"):
        if isinstance(value, bool) or not isinstance(value, int | float | str):
            raise InvalidInput(f"{op} compares with a number, a date or text", field=where)
    elif op == "contains":
        if not isinstance(value, str | int | float) or isinstance(value, bool):
            raise InvalidInput("contains takes text (or a list item)", field=where)
    elif isinstance(value, dict):
        raise InvalidInput(f"{op} compares with a value, not an object", field=where)


def _check_actions(
    session: Session, record_type: str, actions: Sequence[Any]
) -> list[dict[str, Any]]:
    kind = kind_of(record_type)
    out = []
    for index, action in enumerate(actions):
        where = f"actions[{index}]"
        if not isinstance(action, SendWebhookIn) and kind is None:
            raise InvalidInput(
                f"rules on a {record_type} can only send webhooks yet (its kind of record is "
                "not registered with workflows)",
                field=f"{where}.type",
            )
        if isinstance(action, AssignOwnerIn):
            _check_user(session, action.user_id, f"{where}.user_id")
        elif isinstance(action, SetFieldIn):
            assert kind is not None
            _check_set_field(session, kind, action, where)
        elif isinstance(action, CreateTaskIn):
            if action.due_in_hours is not None and action.due_in_days is not None:
                raise InvalidInput("give due_in_hours or due_in_days, not both", field=where)
            if isinstance(action.assignee, uuid.UUID):
                _check_user(session, action.assignee, f"{where}.assignee")
        elif isinstance(action, SendWebhookIn):
            _check_url(action.url, f"{where}.url")
        out.append(action.model_dump(mode="json"))
    return out


def _check_user(session: Session, user_id: uuid.UUID, where: str) -> None:
    try:
        check_owner(session, user_id)
    except InvalidInput as exc:
        raise InvalidInput(exc.message, field=where) from exc


def _check_set_field(session: Session, kind: RecordKind, action: SetFieldIn, where: str) -> None:
    name, value = action.field, action.value
    if name.startswith("custom."):
        definition = _custom_definition(session, kind, name, f"{where}.field")
        if value is not None:
            try:
                custom_fields.check_value(definition, value, can_see=lambda _t, _i: True)
            except InvalidInput as exc:
                raise InvalidInput(exc.message, field=f"{where}.value") from exc
        return
    parse = kind.settable.get(name)
    if parse is None:
        settable = ", ".join(sorted(kind.settable))
        raise InvalidInput(
            f"a rule cannot set {name!r} on a {kind.name}; it can set {settable} and custom.KEY",
            field=f"{where}.field",
        )
    try:
        parsed = parse(value)
    except (ValueError, TypeError) as exc:
        raise InvalidInput(f"{name}: {exc}", field=f"{where}.value") from exc
    allowed = kind.choices.get(name)
    if allowed is not None and value is not None and value not in allowed:
        raise InvalidInput(f"{name} must be one of {', '.join(allowed)}", field=f"{where}.value")
    if name == kind.owner_field and parsed is not None:
        _check_user(session, parsed, f"{where}.value")
    if (
        kind.name == "deal"
        and name == "stage_id"
        and (parsed is None or session.get(Stage, parsed) is None)
    ):
        raise InvalidInput(f"no stage {value}", field=f"{where}.value")
    if kind.name == "deal" and name == "status" and value == "lost":
        # A lost deal needs the reason it was lost, which only a person can give.
        raise InvalidInput(
            "a rule cannot lose a deal: a person gives the reason", field=f"{where}.value"
        )


def _check_url(url: str, where: str) -> None:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise InvalidInput("a webhook URL is http:// or https:// with a host", field=where)


def _refuse_self_trigger(
    trigger_type: str, record_type: str, options: dict[str, Any], actions: Sequence[dict[str, Any]]
) -> None:
    """Refuse an action that would fire this very rule again: each run would start the
    next one. (Loops through several rules are stopped at run time, at a depth.)"""
    for index, action in enumerate(actions):
        reason = _fires_itself(trigger_type, record_type, options, action)
        if reason:
            raise InvalidInput(
                f"this action would trigger the rule itself again, in a loop: {reason}",
                field=f"actions[{index}]",
            )


def _fires_itself(
    trigger_type: str, record_type: str, options: dict[str, Any], action: dict[str, Any]
) -> str | None:
    created = {"create_task": TASK, "add_note": "note"}.get(action["type"])
    if trigger_type == "record_created" and created and record_type in ("activity", TASK):
        wanted = TASK if record_type == TASK else options.get("kind")
        if wanted in (None, created):
            made = "an activity" if wanted is None else f"a {wanted}"
            return f"the rule fires when {made} is created, and creates a {created}"
        return None
    written = _written(record_type, action)
    if written is None:
        return None
    field_name, value = written
    watched = {
        "field_changed": options.get("field"),
        "stage_changed": "stage_id",
        "deal_won": "status",
        "deal_lost": "status",
    }.get(trigger_type)
    if watched != field_name:
        return None
    if trigger_type in ("deal_won", "deal_lost"):
        outcome = trigger_type.removeprefix("deal_")
        return (
            f"the rule fires when a deal is {outcome}, and sets it {outcome}"
            if value == outcome
            else None
        )
    if "to" in options and not engine.same_value(options["to"], value):
        return None  # it sets another value than the one the trigger waits for
    return f"the rule fires when {field_name} changes, and changes {field_name}"


def _written(record_type: str, action: dict[str, Any]) -> tuple[str, Any] | None:
    """The field (as the audit names it) and value an action writes on the record."""
    kind = kind_of(record_type)
    if action["type"] == "assign_owner":
        return (kind.owner_field if kind else "owner_id"), action["user_id"]
    if action["type"] == "set_field":
        return WRITTEN_AS.get(action["field"], action["field"]), action["value"]
    return None


# --- runs ------------------------------------------------------------------------------


def readable_runs(actor: Actor | None) -> ColumnElement[bool]:
    """A condition on :class:`WorkflowRun`: admins see every run; managers the runs on the
    records they may see; everyone else none."""
    if actor is None or actor.role is Role.admin:
        return true()
    if actor.role is not Role.manager:
        return false()
    return or_(
        *(
            and_(
                WorkflowRun.record_type == name,
                WorkflowRun.record_id.in_(readable_ids(actor, kind)),
            )
            for name, kind in KINDS.items()
        )
    )


def list_runs(
    session: Session,
    *,
    actor: Actor | None,
    query: ListQuery,
    rule_id: uuid.UUID | None = None,
    status: str | None = None,
    record_id: uuid.UUID | None = None,
) -> Page[WorkflowRun]:
    """Runs ``actor`` may see, newest first, by rule, status or record."""
    statement = select(WorkflowRun).where(readable_runs(actor))
    if rule_id is not None:
        statement = statement.where(WorkflowRun.rule_id == rule_id)
    if status is not None:
        if status not in engine.RUN_STATUSES:
            raise InvalidInput(f"status is one of {', '.join(engine.RUN_STATUSES)}", field="status")
        statement = statement.where(WorkflowRun.status == status)
    if record_id is not None:
        statement = statement.where(WorkflowRun.record_id == record_id)
    return keyset_page(
        session,
        statement,
        fields=RUN_FIELDS,
        query=query,
        default_sort="-id",
        tiebreak=RUN_FIELDS["id"],
    )


def get_run(session: Session, *, actor: Actor | None, run_id: int) -> WorkflowRun:
    """A run ``actor`` may see, or 404 naming ``run_id``."""
    run = session.scalar(select(WorkflowRun).where(WorkflowRun.id == run_id, readable_runs(actor)))
    if run is None:
        raise NotFound(f"no workflow run {run_id}", field="run_id")
    return run


def retry_run(session: Session, *, actor: Actor | None, run_id: int) -> WorkflowRun:
    """Run a failed run again soon, from its first action that did not complete (the
    completed ones are not done twice); it gets a fresh set of attempts."""
    run = get_run(session, actor=actor, run_id=run_id)
    if run.status != "failed":
        raise Conflict(
            f"only a failed run can be retried; this one is {run.status}", field="run_id"
        )
    rule = session.get_one(WorkflowRule, run.rule_id)
    if rule.deleted_at is not None or not rule.enabled:
        raise Conflict("the rule is deleted or disabled; enable it first", field="run_id")
    run.status = "pending"
    run.attempts = 0
    run.next_attempt_at = run.updated_at = utcnow()
    run.finished_at = None
    run.steps = [
        {**step, "status": "pending"} if step["status"] == "failed" else step for step in run.steps
    ]
    record_audit(
        session,
        actor=actor,
        action="retry",
        record_type=RUN,
        record_id=str(run.id),
        before={"status": "failed", "last_error": run.last_error},
        after={"status": "pending"},
    )
    session.flush()
    return run
