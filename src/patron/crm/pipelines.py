"""Pipelines and their ordered stages (admins shape them; everyone reads them)."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from patron.auth.service import Actor, record_audit
from patron.core.errors import Conflict, InvalidInput, NotFound
from patron.crm.models import Deal, DealStageVisit, Pipeline, Stage

MAX_ROTTING_DAYS = 3650


@dataclass(frozen=True)
class StageSpec:
    """A stage as given: ``id`` keeps an existing stage (renamed, moved), None adds one."""

    name: str
    probability: int
    id: uuid.UUID | None = None


def _check_name(name: str, field: str) -> str:
    name = name.strip()
    if not 1 <= len(name) <= 200:
        raise InvalidInput(f"{field} has 1 to 200 characters", field=field)
    return name


def _check_rotting(days: int | None) -> int | None:
    if days is not None and not 1 <= days <= MAX_ROTTING_DAYS:
        raise InvalidInput(
            f"rotting_days is 1 to {MAX_ROTTING_DAYS}, or null", field="rotting_days"
        )
    return days


def _check_stages(stages: Sequence[StageSpec]) -> None:
    if not stages:
        raise InvalidInput("a pipeline needs at least one stage", field="stages")
    names = [_check_name(s.name, "stages.name").lower() for s in stages]
    if len(set(names)) != len(names):
        raise InvalidInput("stage names must be distinct", field="stages.name")
    for stage in stages:
        if not 0 <= stage.probability <= 100:
            raise InvalidInput("probability is a percentage, 0 to 100", field="stages.probability")


def create_pipeline(
    session: Session,
    *,
    name: str,
    rotting_days: int | None,
    stages: Sequence[StageSpec],
    actor: Actor | None,
) -> Pipeline:
    """Create a pipeline with its stages in order."""
    name = _check_name(name, "name")
    _check_stages(stages)
    if session.scalar(select(Pipeline.id).where(Pipeline.name == name)) is not None:
        raise Conflict(f"a pipeline named {name!r} exists", field="name")
    pipeline = Pipeline(name=name, rotting_days=_check_rotting(rotting_days))
    session.add(pipeline)
    session.flush()
    for position, spec in enumerate(stages):
        session.add(
            Stage(
                pipeline_id=pipeline.id,
                name=spec.name.strip(),
                position=position,
                probability=spec.probability,
            )
        )
    session.flush()
    record_audit(
        session,
        actor=actor,
        action="create",
        record_type="pipeline",
        record_id=str(pipeline.id),
        after={"name": name, "rotting_days": rotting_days, "stages": [s.name for s in stages]},
    )
    return pipeline


def get_pipeline(session: Session, pipeline_id: uuid.UUID) -> Pipeline:
    pipeline = session.get(Pipeline, pipeline_id)
    if pipeline is None:
        raise NotFound(f"no pipeline with id {pipeline_id}", field="pipeline_id")
    return pipeline


def stages_of(session: Session, pipeline_id: uuid.UUID) -> list[Stage]:
    return list(
        session.scalars(
            select(Stage).where(Stage.pipeline_id == pipeline_id).order_by(Stage.position)
        )
    )


def list_pipelines(session: Session) -> list[tuple[Pipeline, list[Stage]]]:
    pipelines = list(session.scalars(select(Pipeline).order_by(Pipeline.name)))
    return [(p, stages_of(session, p.id)) for p in pipelines]


def update_pipeline(
    session: Session,
    *,
    pipeline_id: uuid.UUID,
    name: str | None,
    rotting_days: int | None,
    set_rotting: bool,
    stages: Sequence[StageSpec] | None,
    actor: Actor | None,
) -> Pipeline:
    """Rename, change rotting, or give the full ordered list of stages (existing ones by
    id; a stage left out is removed, which is refused while deals sit in it)."""
    pipeline = get_pipeline(session, pipeline_id)
    before = {"name": pipeline.name, "rotting_days": pipeline.rotting_days}
    if name is not None:
        name = _check_name(name, "name")
        taken = session.scalar(select(Pipeline.id).where(Pipeline.name == name))
        if taken is not None and taken != pipeline.id:
            raise Conflict(f"a pipeline named {name!r} exists", field="name")
        pipeline.name = name
    if set_rotting:
        pipeline.rotting_days = _check_rotting(rotting_days)
    if stages is not None:
        _replace_stages(session, pipeline, stages)
    session.flush()
    record_audit(
        session,
        actor=actor,
        action="update",
        record_type="pipeline",
        record_id=str(pipeline.id),
        before=before,
        after={"name": pipeline.name, "rotting_days": pipeline.rotting_days},
    )
    return pipeline


def _replace_stages(session: Session, pipeline: Pipeline, stages: Sequence[StageSpec]) -> None:
    _check_stages(stages)
    current = {s.id: s for s in stages_of(session, pipeline.id)}
    unknown = [s.id for s in stages if s.id is not None and s.id not in current]
    if unknown:
        raise InvalidInput(f"stage {unknown[0]} is not in this pipeline", field="stages.id")
    kept = {s.id for s in stages if s.id is not None}
    for stage_id in set(current) - kept:
        used = session.scalar(select(func.count()).where(Deal.stage_id == stage_id))
        visited = session.scalar(select(func.count()).where(DealStageVisit.stage_id == stage_id))
        if used or visited:
            raise Conflict(
                f"stage {current[stage_id].name!r} has deals; move them first", field="stages"
            )
        session.delete(current[stage_id])
    session.flush()
    # Positions and names move in two steps so the unique names never clash half-way.
    for stage in current.values():
        if stage.id in kept:
            stage.name = f"~moving~{stage.id}"
    session.flush()
    for position, spec in enumerate(stages):
        stage = current[spec.id] if spec.id is not None else Stage(pipeline_id=pipeline.id)
        stage.name, stage.position, stage.probability = (
            spec.name.strip(),
            position,
            spec.probability,
        )
        session.add(stage)
    session.flush()
