"""Deals: create, change, move through stages, win or lose; stage history, rotting, and
the weighted forecast."""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from decimal import Decimal, InvalidOperation
from typing import Any

from sqlalchemy import ColumnElement, and_, false, func, or_, select
from sqlalchemy.orm import Session

from patron.auth.service import Actor, record_audit
from patron.core.clock import as_utc, utcnow
from patron.core.dialect import dialect_name, month_of
from patron.core.errors import InvalidInput, NotFound
from patron.core.pagination import Field, ListQuery, Page, keyset_page
from patron.crm import events
from patron.crm import fields as custom_fields
from patron.crm.access import (
    DEAL,
    can_see_for,
    deal_count_arms,
    readable_deals,
    require_deal_writer,
    visible_company,
    visible_deal,
    writable_deal,
)
from patron.crm.models import Deal, DealStageVisit, Pipeline, Stage
from patron.crm.pipelines import get_pipeline, stages_of
from patron.crm.records import changed, check_owner, snapshot
from patron.identity import service as identity
from patron.profiles.access import visible_person

STATUSES = ("open", "won", "lost")
EDITABLE = (
    "name",
    "amount",
    "currency",
    "expected_close_date",
    "owner_id",
    "person_id",
    "company_id",
    "pipeline_id",
    "stage_id",
    "status",
    "lost_reason",
    "custom",
)
MAX_AMOUNT = Decimal("1e15")
GROUPS = ("month", "owner", "pipeline")

BASE_FIELDS: dict[str, Field] = {
    "id": Field(Deal.id, "uuid", uuid.UUID),
    "name": Field(Deal.name),
    "amount": Field(Deal.amount, "number", Decimal),
    "currency": Field(Deal.currency),
    "expected_close_date": Field(Deal.expected_close_date, "date", date.fromisoformat),
    "owner_id": Field(Deal.owner_id, "uuid", uuid.UUID),
    "person_id": Field(Deal.person_id, "uuid", uuid.UUID),
    "company_id": Field(Deal.company_id, "uuid", uuid.UUID),
    "pipeline_id": Field(Deal.pipeline_id, "uuid", uuid.UUID),
    "stage_id": Field(Deal.stage_id, "uuid", uuid.UUID),
    "status": Field(Deal.status),
    "closed_at": Field(Deal.closed_at, "datetime", datetime.fromisoformat),
    "last_activity_at": Field(Deal.last_activity_at, "datetime", datetime.fromisoformat),
    "created_at": Field(Deal.created_at, "datetime", datetime.fromisoformat),
    "updated_at": Field(Deal.updated_at, "datetime", datetime.fromisoformat),
}


# --- checking input --------------------------------------------------------------------


def check_amount(value: Any) -> Decimal | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float | Decimal):
        raise InvalidInput("amount is a number", field="amount")
    try:
        amount = Decimal(str(value))
    except InvalidOperation as exc:
        raise InvalidInput("amount is a number", field="amount") from exc
    if not amount.is_finite() or amount < 0 or amount >= MAX_AMOUNT:
        raise InvalidInput("amount is 0 or more, below 10^15", field="amount")
    exponent = amount.as_tuple().exponent
    if isinstance(exponent, int) and exponent < -4:
        raise InvalidInput("amount has at most 4 decimals", field="amount")
    return amount


def _check_close_date(value: date | None) -> date | None:
    if value is not None:
        try:
            custom_fields.check_year(value.year)
        except ValueError as exc:
            raise InvalidInput(f"expected_close_date: {exc}", field="expected_close_date") from exc
    return value


def _stage_in(session: Session, pipeline_id: uuid.UUID, stage_id: uuid.UUID | None) -> Stage:
    """The stage, which must belong to the pipeline; None: the pipeline's first stage."""
    stages = stages_of(session, pipeline_id)
    if stage_id is None:
        return stages[0]
    for stage in stages:
        if stage.id == stage_id:
            return stage
    elsewhere = session.get(Stage, stage_id)
    where = "is in another pipeline" if elsewhere is not None else "does not exist"
    raise InvalidInput(f"stage {stage_id} {where}", field="stage_id")


def _links(session: Session, actor: Actor | None, values: Mapping[str, Any]) -> dict[str, Any]:
    """person_id and company_id must be records the actor may see (a 400 naming them)."""
    out: dict[str, Any] = {}
    for name, fetch in (("person_id", visible_person), ("company_id", visible_company)):
        if name not in values:
            continue
        value = values[name]
        if value is None:
            out[name] = None
            continue
        try:
            out[name] = fetch(session, actor, value).id
        except NotFound as exc:  # a record the deal points at: bad input here, not a 404
            raise InvalidInput(f"no {name[:-3]} {value} you can see", field=name) from exc
    return out


# --- changing deals --------------------------------------------------------------------


def create_deal(session: Session, *, actor: Actor | None, values: Mapping[str, Any]) -> Deal:
    """Create an open deal in a pipeline (its first stage unless ``stage_id`` says)."""
    require_deal_writer(actor)
    name = str(values.get("name") or "").strip()
    if not name:
        raise InvalidInput("a deal needs a name", field="name")
    if values.get("pipeline_id") is None:
        raise InvalidInput("a deal needs a pipeline_id", field="pipeline_id")
    pipeline = _pipeline(session, values["pipeline_id"])
    stage = _stage_in(session, pipeline.id, values.get("stage_id"))
    amount, currency = _money(values.get("amount"), values.get("currency"))
    owner = values.get("owner_id", actor.user_id if actor else None)
    deal = Deal(
        name=name[:300],
        amount=amount,
        currency=currency,
        expected_close_date=_check_close_date(values.get("expected_close_date")),
        owner_id=check_owner(session, owner),
        pipeline_id=pipeline.id,
        stage_id=stage.id,
        status="open",
        custom={},
        **_links(session, actor, values),
    )
    deal.custom = _custom(session, actor, {}, values.get("custom") or {})
    session.add(deal)
    session.flush()
    session.add(DealStageVisit(deal_id=deal.id, stage_id=stage.id, entered_at=deal.created_at))
    record_audit(
        session,
        actor=actor,
        action="create",
        record_type=DEAL,
        record_id=str(deal.id),
        after=snapshot(deal, EDITABLE),
    )
    _track(session, actor, deal, events.DEAL_CREATED, {"stage": stage.name})
    return deal


def _pipeline(session: Session, pipeline_id: uuid.UUID) -> Pipeline:
    try:
        return get_pipeline(session, pipeline_id)
    except NotFound as exc:
        raise InvalidInput(f"no pipeline {pipeline_id}", field="pipeline_id") from exc


def _money(amount: Any, currency: Any) -> tuple[Decimal | None, str | None]:
    checked = check_amount(amount)
    if currency is None:
        if checked is not None:
            raise InvalidInput("an amount needs its currency (ISO 4217)", field="currency")
        return None, None
    try:
        return checked, custom_fields.check_currency(currency)
    except ValueError as exc:
        raise InvalidInput(str(exc), field="currency") from exc


def _custom(
    session: Session, actor: Actor | None, current: Mapping[str, Any], changes: Mapping[str, Any]
) -> dict[str, Any]:
    return custom_fields.apply_values(
        current,
        changes,
        custom_fields.fields_of(session, DEAL),
        record_type=DEAL,
        can_see=can_see_for(session, actor),
    )


def update_deal(
    session: Session, *, actor: Actor | None, deal_id: uuid.UUID, changes: Mapping[str, Any]
) -> Deal:
    """Change the given fields; a new stage is recorded in the history, ``status`` won or
    lost closes the deal (lost needs a ``lost_reason``), open reopens it."""
    deal = writable_deal(session, actor, deal_id)
    before = snapshot(deal, EDITABLE)
    _apply_plain(session, actor, deal, changes)
    old_stage = deal.stage_id
    if "pipeline_id" in changes or "stage_id" in changes:
        pipeline = _pipeline(session, changes.get("pipeline_id") or deal.pipeline_id)
        stage_id = changes.get("stage_id")
        if stage_id is None and pipeline.id == deal.pipeline_id:
            stage_id = deal.stage_id
        deal.pipeline_id, deal.stage_id = pipeline.id, _stage_in(session, pipeline.id, stage_id).id
    if "status" in changes or "lost_reason" in changes:
        _apply_status(deal, changes.get("status", deal.status), changes.get("lost_reason"))
    now = utcnow()
    deal.updated_at = deal.last_activity_at = now
    session.flush()
    old, new = changed(before, snapshot(deal, EDITABLE))
    if new:
        record_audit(
            session,
            actor=actor,
            action="update",
            record_type=DEAL,
            record_id=str(deal.id),
            before=old,
            after=new,
        )
    if deal.stage_id != old_stage:
        _move_stage(session, actor, deal, old_stage, now)
    if deal.stage_id != old_stage or "status" in new:
        _settle_current_stay(session, deal)
    if "status" in new:
        _track_status(session, actor, deal)
    return deal


def _apply_plain(
    session: Session, actor: Actor | None, deal: Deal, changes: Mapping[str, Any]
) -> None:
    if "name" in changes:
        name = str(changes["name"] or "").strip()
        if not name:
            raise InvalidInput("a deal needs a name", field="name")
        deal.name = name[:300]
    if "amount" in changes or "currency" in changes:
        amount = changes.get("amount", deal.amount)
        currency = changes.get("currency", deal.currency)
        deal.amount, deal.currency = _money(amount, currency)
    if "expected_close_date" in changes:
        deal.expected_close_date = _check_close_date(changes["expected_close_date"])
    if "owner_id" in changes:
        deal.owner_id = check_owner(session, changes["owner_id"])
    for name, value in _links(session, actor, changes).items():
        setattr(deal, name, value)
    if "custom" in changes:
        deal.custom = _custom(session, actor, deal.custom, changes["custom"] or {})


def _apply_status(deal: Deal, status: Any, reason: Any) -> None:
    if status not in STATUSES:
        raise InvalidInput(f"status must be one of {', '.join(STATUSES)}", field="status")
    if status == "lost" and not (reason or deal.lost_reason):
        raise InvalidInput("a lost deal needs a lost_reason", field="lost_reason")
    if status != "lost" and reason:
        raise InvalidInput("only a lost deal has a lost_reason", field="lost_reason")
    if status != deal.status:
        deal.closed_at = None if status == "open" else utcnow()
    deal.status = status
    deal.lost_reason = (
        (str(reason)[:500] if reason else deal.lost_reason) if status == "lost" else None
    )


def _move_stage(
    session: Session, actor: Actor | None, deal: Deal, old_stage: uuid.UUID, now: datetime
) -> None:
    current = _current_stay(session, deal)
    previous, stage = session.get(Stage, old_stage), session.get_one(Stage, deal.stage_id)
    if current is not None:
        forward = (
            previous is not None
            and previous.pipeline_id == stage.pipeline_id
            and stage.position > previous.position
        )
        current.left_at = now
        _settle(current, "moved_on" if forward else "moved_back", now)
    session.add(DealStageVisit(deal_id=deal.id, stage_id=deal.stage_id, entered_at=now))
    session.flush()
    properties = {"previous_stage": previous.name if previous else None, "stage": stage.name}
    _track(session, actor, deal, events.DEAL_STAGE_CHANGED, properties)


def _current_stay(session: Session, deal: Deal) -> DealStageVisit | None:
    return session.scalar(
        select(DealStageVisit).where(
            DealStageVisit.deal_id == deal.id, DealStageVisit.left_at.is_(None)
        )
    )


def _settle(stay: DealStageVisit, outcome: str | None, ended_at: datetime | None) -> None:
    """Record how ``stay`` ended (None: it goes on), never before it began."""
    if outcome is None or ended_at is None:
        stay.outcome = stay.ended_at = stay.seconds = None
        return
    ended_at = max(as_utc(ended_at), as_utc(stay.entered_at))
    stay.outcome, stay.ended_at = outcome, ended_at
    stay.seconds = round((ended_at - as_utc(stay.entered_at)).total_seconds())


def _settle_current_stay(session: Session, deal: Deal) -> None:
    """The stay in the deal's stage ends with the deal when it is won or lost (at its close
    time), and goes on again when it is reopened."""
    current = _current_stay(session, deal)
    if current is None:
        return
    closed = deal.status in ("won", "lost")
    _settle(current, deal.status if closed else None, deal.closed_at if closed else None)


def _track_status(session: Session, actor: Actor | None, deal: Deal) -> None:
    if deal.status == "won":
        _track(session, actor, deal, events.DEAL_WON, {})
    elif deal.status == "lost":
        _track(session, actor, deal, events.DEAL_LOST, {"reason": deal.lost_reason})


def _track(
    session: Session, actor: Actor | None, deal: Deal, event: str, extra: dict[str, Any]
) -> None:
    """A deal's events go on its person (a deal with only a company has none to go on)."""
    if deal.person_id is None:
        return
    properties = {
        "deal_id": str(deal.id),
        "name": deal.name,
        "amount": float(deal.amount) if deal.amount is not None else None,
        "currency": deal.currency,
        "pipeline_id": str(deal.pipeline_id),
        **extra,
    }
    # The person may have been merged since: the event goes to whoever it is now.
    person = identity.live_person(session, deal.person_id)
    events.track_crm_change(
        session, person_id=person.id, event=event, properties=properties, actor=actor
    )


# --- reading deals ---------------------------------------------------------------------


def get_deal(session: Session, *, actor: Actor | None, deal_id: uuid.UUID) -> Deal:
    return visible_deal(session, actor, deal_id)


def list_fields(session: Session) -> dict[str, Field]:
    definitions = custom_fields.fields_of(session, DEAL)
    return {**BASE_FIELDS, **custom_fields.list_fields_for(Deal.custom, definitions)}


def list_deals(
    session: Session,
    *,
    actor: Actor | None,
    query: ListQuery,
    search: str | None = None,
    rotting: bool | None = None,
) -> Page[Deal]:
    """Deals ``actor`` may see, filtered, searched by name, sorted and paged; ``rotting``
    keeps only the rotting deals (True) or only the others (False)."""
    statement = select(Deal)
    if search:
        for word in search.lower().split()[:10]:
            statement = statement.where(func.lower(Deal.name).contains(word, autoescape=True))
    if rotting is not None:
        condition = rotting_condition(session)
        statement = statement.where(condition if rotting else ~condition)
    return keyset_page(
        session,
        statement,
        fields=list_fields(session),
        query=query,
        default_sort="-created_at",
        tiebreak=BASE_FIELDS["id"],
        visible=readable_deals(actor),
        count_arms=deal_count_arms(actor),
    )


def rotting_condition(session: Session, now: datetime | None = None) -> ColumnElement[bool]:
    """Open deals with no activity for longer than their pipeline allows. One branch per
    pipeline that rots (there are few), so no date arithmetic happens in SQL."""
    now = now or utcnow()
    branches = [
        and_(Deal.pipeline_id == p.id, Deal.last_activity_at < now - timedelta(days=days))
        for p in session.scalars(select(Pipeline).where(Pipeline.rotting_days.is_not(None)))
        if (days := p.rotting_days) is not None
    ]
    return and_(Deal.status == "open", or_(*branches)) if branches else false()


def is_rotting(deal: Deal, pipeline: Pipeline, now: datetime | None = None) -> bool:
    if deal.status != "open" or pipeline.rotting_days is None:
        return False
    idle = (now or utcnow()) - as_utc(deal.last_activity_at)
    return idle > timedelta(days=pipeline.rotting_days)


@dataclass
class StageTime:
    stage_id: uuid.UUID
    stage: str
    entered_at: datetime
    left_at: datetime | None
    outcome: str | None
    ended_at: datetime | None
    seconds: float


def stage_history(session: Session, *, actor: Actor | None, deal_id: uuid.UUID) -> list[StageTime]:
    """Each stage the deal has been in, oldest first, with how the stay ended and the time
    it spent there: up to now for the stage it is in, up to the close for a won or lost
    deal's (as the stage conversion report counts it)."""
    deal = visible_deal(session, actor, deal_id)
    rows = session.execute(
        select(DealStageVisit, Stage.name)
        .join(Stage, Stage.id == DealStageVisit.stage_id)
        .where(DealStageVisit.deal_id == deal.id)
        .order_by(DealStageVisit.id)
    )
    now = utcnow()
    return [
        StageTime(
            stage_id=visit.stage_id,
            stage=name,
            entered_at=visit.entered_at,
            left_at=visit.left_at,
            outcome=visit.outcome,
            ended_at=visit.ended_at,
            seconds=(
                float(visit.seconds)
                if visit.seconds is not None
                else (now - as_utc(visit.entered_at)).total_seconds()
            ),
        )
        for visit, name in rows
    ]


@dataclass
class ForecastRow:
    key: str | None
    currency: str | None
    deals: int
    amount: Decimal
    weighted: Decimal


def forecast(
    session: Session,
    *,
    actor: Actor | None,
    group_by: str,
    pipeline_id: uuid.UUID | None = None,
    where: Sequence[ColumnElement[bool]] = (),
) -> list[ForecastRow]:
    """Open deals' amounts and weighted amounts (amount times the stage's probability),
    by expected close month, owner or pipeline, and by currency (amounts in different
    currencies are never added up). ``where`` narrows the deals further (the reports'
    owner, currency and date filters)."""
    if group_by not in GROUPS:
        raise InvalidInput(f"group_by is one of {', '.join(GROUPS)}", field="group_by")
    keys: dict[str, Any] = {
        "month": month_of(Deal.expected_close_date, dialect_name(session)),
        "owner": Deal.owner_id,
        "pipeline": Deal.pipeline_id,
    }
    key = keys[group_by].label("key")
    weighted = func.sum(Deal.amount * Stage.probability / 100)
    statement = (
        select(key, Deal.currency, func.count(), func.sum(Deal.amount), weighted)
        .join(Stage, Stage.id == Deal.stage_id)
        .where(Deal.status == "open", readable_deals(actor), *where)
        .group_by(key, Deal.currency)
        .order_by(key, Deal.currency)
    )
    if pipeline_id is not None:
        statement = statement.where(Deal.pipeline_id == pipeline_id)
    return [
        ForecastRow(
            key=None if k is None else str(k),
            currency=currency,
            deals=count,
            amount=Decimal(total or 0),
            weighted=Decimal(w or 0).quantize(Decimal("0.01")),
        )
        for k, currency, count, total, w in session.execute(statement)
    ]
