"""The workflow rules API: admins define rules; admins and managers read them and their
runs (managers the runs on records they may see); admins retry failed runs."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Query, Response, status

from patron.auth.deps import AdminActor, CurrentActor
from patron.auth.models import Role
from patron.core.pagination import Page
from patron.core.web import DB, ListParams
from patron.crm.workflows import service
from patron.crm.workflows.models import WorkflowRule, WorkflowRun
from patron.crm.workflows.schemas import (
    RuleIn,
    RuleOut,
    RulePage,
    RulePatch,
    RuleWithSecretOut,
    RunOut,
    RunPage,
)

router = APIRouter(prefix="/v1", tags=["workflows"])
RunStatus = Annotated[
    str | None,
    Query(description="pending, running, retrying, succeeded, failed, loop_stopped, cancelled."),
]
RecordId = Annotated[uuid.UUID | None, Query(description="Runs on this record.")]


def _rule_out(rule: WorkflowRule) -> RuleOut:
    return RuleOut(
        id=rule.id,
        created_by=rule.created_by,
        created_at=rule.created_at,
        updated_at=rule.updated_at,
        **service.describe_rule(rule),
    )


def _with_secret(rule: WorkflowRule, secret: str) -> RuleWithSecretOut:
    return RuleWithSecretOut(**_rule_out(rule).model_dump(), webhook_secret=secret)


def _run_page(page: Page[WorkflowRun]) -> RunPage:
    items = [RunOut.model_validate(r) for r in page.items]
    return RunPage(
        items=items, total=page.total, total_exact=page.total_exact, next_cursor=page.next_cursor
    )


@router.post(
    "/workflow-rules", response_model=RuleWithSecretOut, status_code=status.HTTP_201_CREATED
)
def create_rule(body: RuleIn, db: DB, actor: AdminActor) -> RuleWithSecretOut:
    """Define a rule. The answer carries its webhook signing secret, shown only this once."""
    rule, secret = service.create_rule(db, actor=actor, spec=body)
    db.commit()
    return _with_secret(rule, secret)


@router.get("/workflow-rules", response_model=RulePage)
def list_rules(db: DB, actor: CurrentActor, params: ListParams) -> RulePage:
    """The rules (admins and managers), by name; filters on name, enabled, trigger_type,
    record_type."""
    actor.require(Role.manager)
    page = service.list_rules(db, query=params)
    items = [_rule_out(r) for r in page.items]
    return RulePage(
        items=items, total=page.total, total_exact=page.total_exact, next_cursor=page.next_cursor
    )


@router.get("/workflow-rules/{rule_id}", response_model=RuleOut)
def get_rule(rule_id: uuid.UUID, db: DB, actor: CurrentActor) -> RuleOut:
    """One rule (admins and managers)."""
    actor.require(Role.manager)
    return _rule_out(service.get_rule(db, rule_id))


@router.patch("/workflow-rules/{rule_id}", response_model=RuleOut)
def update_rule(rule_id: uuid.UUID, body: RulePatch, db: DB, actor: AdminActor) -> RuleOut:
    """Change a rule: name, description, enabled, or a new trigger, conditions or actions."""
    rule = service.update_rule(db, actor=actor, rule_id=rule_id, changes=body)
    db.commit()
    return _rule_out(rule)


@router.delete("/workflow-rules/{rule_id}", status_code=status.HTTP_204_NO_CONTENT)
def delete_rule(rule_id: uuid.UUID, db: DB, actor: AdminActor) -> Response:
    """Delete a rule: it fires no more, its waiting runs are cancelled, its runs stay."""
    service.delete_rule(db, actor=actor, rule_id=rule_id)
    db.commit()
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.post("/workflow-rules/{rule_id}/rotate-secret", response_model=RuleWithSecretOut)
def rotate_secret(rule_id: uuid.UUID, db: DB, actor: AdminActor) -> RuleWithSecretOut:
    """A new webhook signing secret for the rule (shown only now); the old one stops."""
    rule, secret = service.rotate_secret(db, actor=actor, rule_id=rule_id)
    db.commit()
    return _with_secret(rule, secret)


@router.get("/workflow-rules/{rule_id}/runs", response_model=RunPage)
def rule_runs(
    rule_id: uuid.UUID, db: DB, actor: CurrentActor, params: ListParams, status: RunStatus = None
) -> RunPage:
    """A rule's runs, newest first."""
    actor.require(Role.manager)
    rule = service.get_rule(db, rule_id)
    page = service.list_runs(db, actor=actor, query=params, rule_id=rule.id, status=status)
    return _run_page(page)


@router.get("/workflow-runs", response_model=RunPage)
def list_runs(
    db: DB,
    actor: CurrentActor,
    params: ListParams,
    rule_id: Annotated[uuid.UUID | None, Query(description="Runs of this rule.")] = None,
    status: RunStatus = None,
    record_id: RecordId = None,
) -> RunPage:
    """Runs of every rule, newest first, by rule, status or record."""
    actor.require(Role.manager)
    page = service.list_runs(
        db, actor=actor, query=params, rule_id=rule_id, status=status, record_id=record_id
    )
    return _run_page(page)


@router.get("/workflow-runs/{run_id}", response_model=RunOut)
def get_run(run_id: int, db: DB, actor: CurrentActor) -> WorkflowRun:
    """One run with each action's outcome."""
    actor.require(Role.manager)
    return service.get_run(db, actor=actor, run_id=run_id)


@router.post("/workflow-runs/{run_id}/retry", response_model=RunOut)
def retry_run(run_id: int, db: DB, actor: AdminActor) -> WorkflowRun:
    """Run a failed run again (its completed actions are not done twice)."""
    run = service.retry_run(db, actor=actor, run_id=run_id)
    db.commit()
    return run
