"""Workflow rules and their runs."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import BigInteger, ForeignKey, Index, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from patron.core.clock import utcnow
from patron.core.ids import new_id
from patron.core.models import Base, BigIntPK


class WorkflowRule(Base):
    """What an admin asked for: when a trigger fires on a record and the conditions hold,
    run the actions.

    ``trigger`` holds the trigger's options (a field and its from/to values, a stage, an SLA
    target, a form); ``conditions`` and ``actions`` are lists of JSON objects, checked when
    the rule is saved. A deleted rule stays (its runs point at it) with ``deleted_at`` set.
    """

    __tablename__ = "workflow_rules"

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=new_id)
    name: Mapped[str] = mapped_column(String(200))
    description: Mapped[str] = mapped_column(Text, default="")
    enabled: Mapped[bool] = mapped_column(default=True)
    # record_created, field_changed, stage_changed, deal_won, deal_lost, sla_warning,
    # sla_breach, form_submitted
    trigger_type: Mapped[str] = mapped_column(String(30))
    # person, company, deal, activity, task, ticket
    record_type: Mapped[str] = mapped_column(String(20))
    trigger: Mapped[dict[str, Any]] = mapped_column(default=dict)
    conditions: Mapped[list[Any]] = mapped_column(default=list)
    actions: Mapped[list[Any]] = mapped_column(default=list)
    # The key webhooks are signed with (Standard Webhooks, ``whsec_...``): shown once.
    webhook_secret: Mapped[str] = mapped_column(String(100))
    created_by: Mapped[str] = mapped_column(String(320))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)
    deleted_at: Mapped[datetime | None]


class WorkflowRun(Base):
    """One firing of a rule on one change, and how running its actions went.

    Inserted in the transaction of the change that fired it, so a committed change always
    has its runs and a rolled-back one has none; ``(rule_id, trigger_key)`` is unique, so a
    trigger runs a rule once. ``steps`` keeps, per action (by position), its status, error,
    result and attempts: a retry skips the actions that completed.
    """

    __tablename__ = "workflow_runs"
    __table_args__ = (
        UniqueConstraint("rule_id", "trigger_key", name="uq_workflow_runs_rule_trigger"),
        Index("ix_workflow_runs_due", "status", "next_attempt_at"),
        Index("ix_workflow_runs_rule", "rule_id", "id"),
        Index("ix_workflow_runs_record", "record_type", "record_id"),
    )

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True, autoincrement=True)
    rule_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("workflow_rules.id"))
    # What fired it: ``audit:<audit entry id>``.
    trigger_key: Mapped[str] = mapped_column(String(64))
    record_type: Mapped[str] = mapped_column(String(20))
    record_id: Mapped[uuid.UUID]
    # The change: the audit entry's action, before, after, actor and time.
    change: Mapped[dict[str, Any]] = mapped_column(default=dict)
    # The rule's name and actions when it fired: a retry does what the first attempt did.
    rule_name: Mapped[str] = mapped_column(String(200))
    actions: Mapped[list[Any]] = mapped_column(default=list)
    # How many runs led to this one (0: a person's change); the run whose action fired it.
    depth: Mapped[int] = mapped_column(default=0)
    parent_run_id: Mapped[int | None] = mapped_column(BigInteger)
    # pending, running, retrying, succeeded, failed, loop_stopped, cancelled
    status: Mapped[str] = mapped_column(String(20), default="pending")
    attempts: Mapped[int] = mapped_column(default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(default=utcnow)
    # A running run belongs to the worker holding ``claim`` until ``locked_until``; after
    # that (the worker died) another may take it over.
    claim: Mapped[uuid.UUID | None]
    locked_until: Mapped[datetime | None]
    steps: Mapped[list[Any]] = mapped_column(default=list)
    last_error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)
    finished_at: Mapped[datetime | None]
