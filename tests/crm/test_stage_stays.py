"""A deal's stays in its stages are settled when they end: how, when, and for how long."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from alembic import command
from sqlalchemy import Engine, select, update
from sqlalchemy.orm import Session

from patron.core.clock import as_utc, utcnow
from patron.core.db import create_db_engine
from patron.core.migrations import alembic_config, upgrade
from patron.core.settings import Settings
from patron.crm import deals, pipelines
from patron.crm.models import DealStageVisit, Stage

Stay = tuple[str, str | None, datetime | None, int | None]


def _pipeline(session: Session, name: str) -> dict[str, uuid.UUID]:
    specs = [pipelines.StageSpec(n, p) for n, p in (("Lead", 10), ("Offer", 50), ("Close", 90))]
    made = pipelines.create_pipeline(
        session, name=name, rotting_days=None, stages=specs, actor=None
    )
    session.flush()
    stages = session.scalars(select(Stage).where(Stage.pipeline_id == made.id))
    return {"id": made.id, **{s.name: s.id for s in stages}}


def _change(session: Session, deal_id: uuid.UUID, **changes: Any) -> None:
    if changes.get("status") == "lost":
        changes["lost_reason"] = "price"
    deals.update_deal(session, actor=None, deal_id=deal_id, changes=changes)
    session.flush()


def _age_current_stay(session: Session, deal_id: uuid.UUID, days: int) -> None:
    """Pretend the deal entered its current stage ``days`` ago."""
    session.execute(
        update(DealStageVisit)
        .where(DealStageVisit.deal_id == deal_id, DealStageVisit.left_at.is_(None))
        .values(entered_at=utcnow() - timedelta(days=days))
    )


def _stays(session: Session, deal_id: uuid.UUID, names: dict[uuid.UUID, str]) -> list[Stay]:
    found = session.scalars(
        select(DealStageVisit).where(DealStageVisit.deal_id == deal_id).order_by(DealStageVisit.id)
    )
    return [
        (names[s.stage_id], s.outcome, as_utc(s.ended_at) if s.ended_at else None, s.seconds)
        for s in found
    ]


def _story(session: Session) -> tuple[uuid.UUID, dict[uuid.UUID, str], uuid.UUID]:
    """A deal that goes forward, back, is won, reopened, lost, moved while lost, and moved
    to another pipeline; returns it, the names of the stages and the first pipeline."""
    sales, other = _pipeline(session, "Sales"), _pipeline(session, "Other")
    names = {v: f"{p}.{k}" for p, ids in (("S", sales), ("O", other)) for k, v in ids.items()}
    deal = deals.create_deal(
        session, actor=None, values={"name": "Deal", "pipeline_id": sales["id"]}
    )
    session.flush()
    _age_current_stay(session, deal.id, 3)
    _change(session, deal.id, stage_id=sales["Close"])  # forward, after 3 days
    _change(session, deal.id, stage_id=sales["Offer"])  # back
    _age_current_stay(session, deal.id, 2)
    _change(session, deal.id, status="won")  # won after 2 days
    assert _stays(session, deal.id, names)[-1][1] == "won"
    _change(session, deal.id, status="open")  # reopened: the stay goes on
    assert _stays(session, deal.id, names)[-1] == ("S.Offer", None, None, None)
    _age_current_stay(session, deal.id, 5)
    _change(session, deal.id, status="lost")  # lost after 5 days
    _change(session, deal.id, stage_id=sales["Close"])  # moved while lost
    _change(session, deal.id, pipeline_id=other["id"], stage_id=other["Close"])
    return deal.id, names, sales["id"]


def _near(seconds: int | None, days: int) -> bool:
    return seconds is not None and abs(seconds - days * 86_400) <= 5


def test_stays_are_settled_as_deals_move_close_and_reopen(
    database_url: str, tmp_path: Path
) -> None:
    engine = create_db_engine(Settings(database_url=database_url, data_dir=tmp_path))
    try:
        with Session(engine) as session:
            deal_id, names, _ = _story(session)
            stays = _stays(session, deal_id, names)
            closed_at = deals.get_deal(session, actor=None, deal_id=deal_id).closed_at
    finally:
        engine.dispose()
    assert [s[:2] for s in stays] == [
        ("S.Lead", "moved_on"),
        ("S.Close", "moved_back"),
        ("S.Offer", "moved_on"),  # lost there, then moved on to Close while lost
        ("S.Close", "moved_back"),  # to another pipeline: not forward
        ("O.Close", "lost"),  # the deal is still lost: its stay ended when it closed
    ]
    assert _near(stays[0][3], 3)
    assert _near(stays[2][3], 5)
    assert closed_at is not None
    # The lost deal's stays in Close began after it closed: they end as they begin.
    assert stays[4][3] == 0
    assert stays[4][2] is not None
    assert stays[4][2] >= as_utc(closed_at)
    assert all(ended is not None for _, _, ended, _ in stays)


def _snapshot(engine: Engine) -> list[tuple[Any, ...]]:
    with Session(engine) as session:
        rows = session.execute(
            select(
                DealStageVisit.id,
                DealStageVisit.outcome,
                DealStageVisit.ended_at,
                DealStageVisit.seconds,
            ).order_by(DealStageVisit.id)
        )
        return [(i, o, as_utc(e) if e else None, s) for i, o, e, s in rows]


def test_the_migration_settles_the_stays_it_finds(empty_database_url: str, tmp_path: Path) -> None:
    """Stays written before the columns existed get what the deal service would have
    written: downgrading drops them (keeping moved_forward), upgrading derives them."""
    engine = create_db_engine(Settings(database_url=empty_database_url, data_dir=tmp_path))
    try:
        upgrade(engine)
        with Session(engine) as session:
            _, _, pipeline_id = _story(session)
            won = deals.create_deal(
                session, actor=None, values={"name": "Won", "pipeline_id": pipeline_id}
            )
            session.flush()
            _age_current_stay(session, won.id, 4)
            _change(session, won.id, status="won")
            deals.create_deal(
                session, actor=None, values={"name": "Still open", "pipeline_id": pipeline_id}
            )
            session.commit()
        settled = _snapshot(engine)
        assert len(settled) == 7
        assert settled[-1][1:] == (None, None, None)
        assert settled[-2][1] == "won"
        assert _near(settled[-2][3], 4)
        config = alembic_config(engine)
        command.downgrade(config, "0016")
        command.upgrade(config, "head")
        assert _snapshot(engine) == settled
    finally:
        engine.dispose()
