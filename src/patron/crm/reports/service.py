"""The sales reports: one function per report, each a GROUP BY over what the actor may see
(deals through ``readable_deals``, activities through ``readable_activities``).

Numbers are the same on SQLite and PostgreSQL by construction: SQL returns counts and sums
(amounts keep the column's 4 decimals; durations are whole seconds), and rates, averages and
medians are divided out here. Amounts are summed per currency and never mixed; derived
amounts (weighted, averages) are rounded to cents, like the deal forecast. Rows are few (one
per stage, month, owner or pipeline, and currency), so they are ordered here, by code point,
which no database collation changes.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from typing import Any

from sqlalchemy import (
    BigInteger,
    ColumnElement,
    CompoundSelect,
    DateTime,
    Select,
    SQLColumnExpression,
    Subquery,
    and_,
    case,
    cast,
    func,
    literal,
    null,
    or_,
    select,
    true,
    union_all,
)
from sqlalchemy.orm import Session

from patron.auth.models import User
from patron.auth.service import Actor
from patron.core.clock import as_utc, utcnow
from patron.core.dialect import dialect_name, seconds_between
from patron.core.errors import InvalidInput
from patron.crm import deals
from patron.crm import fields as custom_fields
from patron.crm.access import (
    activity_count_arms,
    readable_activities,
    readable_deal_ids,
    readable_deals,
)
from patron.crm.models import (
    NO_OWNER,
    Activity,
    ActivityTally,
    Deal,
    DealStageVisit,
    Pipeline,
    Stage,
)

CENTS = Decimal("0.01")
UNITS = Decimal("0.0001")
DAY = 86_400
GROUPS = ("none", "owner", "pipeline")
# What became of a deal's stay in a stage (see :func:`stage_conversion`).
OUTCOMES = ("moved_on", "moved_back", "won", "lost", "open")
# The activity kinds the activity report counts, in its column order.
KINDS = ("call", "meeting", "note", "email", "task")

# A statement of any columns (SQLAlchemy's Select is generic in each column's type).
AnySelect = Select[*tuple[Any, ...]]


# --- filters -----------------------------------------------------------------------------


@dataclass(frozen=True)
class ReportFilters:
    """What every report can be narrowed to.

    ``since`` (inclusive) and ``until`` (exclusive) apply to the date each report is about:
    created (pipeline), expected close (forecast), closed (win rate, deal size, sales
    cycle), entered (stage conversion), occurred (activities; completed for completed
    tasks). ``currency`` applies to the deal reports.
    """

    since: datetime | None = None
    until: datetime | None = None
    pipeline_id: uuid.UUID | None = None
    owner_id: uuid.UUID | None = None
    currency: str | None = None


def check_filters(session: Session, filters: ReportFilters) -> ReportFilters:
    """The filters checked (a 400 naming the one at fault), times in UTC, the currency
    upper-cased."""
    since = None if filters.since is None else as_utc(filters.since)
    until = None if filters.until is None else as_utc(filters.until)
    if since is not None and until is not None and since > until:
        raise InvalidInput("until is before since", field="until")
    if filters.pipeline_id is not None and session.get(Pipeline, filters.pipeline_id) is None:
        raise InvalidInput(f"no pipeline {filters.pipeline_id}", field="pipeline_id")
    if filters.owner_id is not None and session.get(User, filters.owner_id) is None:
        raise InvalidInput(f"no user {filters.owner_id}", field="owner_id")
    currency = filters.currency
    if currency is not None:
        try:
            currency = custom_fields.check_currency(currency)
        except ValueError as exc:
            raise InvalidInput(str(exc), field="currency") from exc
    return ReportFilters(since, until, filters.pipeline_id, filters.owner_id, currency)


def _in_range(column: Any, filters: ReportFilters) -> ColumnElement[bool]:
    conditions = []
    if filters.since is not None:
        conditions.append(column >= filters.since)
    if filters.until is not None:
        conditions.append(column < filters.until)
    return and_(true(), *conditions)


def _deal_filters(filters: ReportFilters) -> list[ColumnElement[bool]]:
    """The owner and currency filters, which hold for a deal as a whole."""
    conditions: list[ColumnElement[bool]] = []
    if filters.owner_id is not None:
        conditions.append(Deal.owner_id == filters.owner_id)
    if filters.currency is not None:
        conditions.append(Deal.currency == filters.currency)
    return conditions


def _deals(actor: Actor | None, filters: ReportFilters, *, at: Any) -> list[ColumnElement[bool]]:
    """Deals the actor may see, in the filters' pipeline, owner and currency, with ``at``
    (the date the report is about) in the range."""
    conditions = [readable_deals(actor), *_deal_filters(filters), _in_range(at, filters)]
    if filters.pipeline_id is not None:
        conditions.append(Deal.pipeline_id == filters.pipeline_id)
    return conditions


# --- grouping deals: overall, per owner, per pipeline ----------------------------------


@dataclass(frozen=True)
class _Grouping:
    key: SQLColumnExpression[Any]
    label: SQLColumnExpression[Any]
    by: tuple[SQLColumnExpression[Any], ...]
    joins: tuple[tuple[Any, ColumnElement[bool]], ...]

    def select_from_deals(self, *columns: Any) -> AnySelect:
        statement = select(self.key.label("key"), self.label.label("label"), *columns)
        statement = statement.select_from(Deal)
        for target, on in self.joins:
            statement = statement.outerjoin(target, on)
        return statement


def _user_label() -> ColumnElement[Any]:
    return func.coalesce(func.nullif(User.name, ""), User.email)


def _grouping(group_by: str) -> _Grouping:
    if group_by == "owner":
        return _Grouping(
            Deal.owner_id,
            _user_label(),
            (Deal.owner_id, User.name, User.email),
            ((User, User.id == Deal.owner_id),),
        )
    if group_by == "pipeline":
        return _Grouping(
            Deal.pipeline_id,
            Pipeline.name,
            (Deal.pipeline_id, Pipeline.name),
            ((Pipeline, Pipeline.id == Deal.pipeline_id),),
        )
    if group_by == "none":
        # PostgreSQL refuses GROUP BY NULL, so the overall row groups by nothing.
        return _Grouping(null(), null(), (), ())
    raise InvalidInput(f"group_by is one of {', '.join(GROUPS)}", field="group_by")


def _text_order(value: str | None) -> tuple[bool, str]:
    """Sorts text by code point with None last, the same on every database."""
    return (value is None, value or "")


def _grouped_order(row: Any) -> tuple[Any, ...]:
    key = str(row.key) if row.key is not None else None
    return (*_text_order(row.label), *_text_order(key), *_text_order(row.currency))


# --- numbers -------------------------------------------------------------------------


def _money(value: Any) -> Decimal:
    return Decimal(value or 0).quantize(UNITS)


def _ratio(part: Any, whole: Any) -> float | None:
    """part / whole to 4 decimals; None when there is nothing to divide."""
    if not whole:
        return None
    return float((Decimal(part or 0) / Decimal(whole)).quantize(UNITS))


def _whole_seconds(start: Any, end: Any, dialect: str) -> ColumnElement[Any]:
    return cast(func.round(seconds_between(start, end, dialect)), BigInteger)


@dataclass(frozen=True)
class Durations:
    """Sums from which a group's mean and median follow; groups that share a window
    partition add up (the median's middle values fall in exactly one of them)."""

    count: int = 0
    total: int = 0
    middle_total: int = 0
    middle_count: int = 0

    def __add__(self, other: Durations) -> Durations:
        return Durations(
            self.count + other.count,
            self.total + other.total,
            self.middle_total + other.middle_total,
            self.middle_count + other.middle_count,
        )

    @property
    def average_days(self) -> float | None:
        return round(self.total / self.count / DAY, 2) if self.count else None

    @property
    def median_days(self) -> float | None:
        return round(self.middle_total / self.middle_count / DAY, 2) if self.middle_count else None


def _durations(
    session: Session, rows: Subquery, *, partition: Sequence[str], extra: Sequence[str] = ()
) -> dict[tuple[Any, ...], Durations]:
    """Count, sum and median parts of ``rows.c.seconds`` per ``partition`` (+ ``extra``).

    The median is the mean of the middle one or two values of each partition. SQLite finds
    them with ROW_NUMBER and COUNT windows; PostgreSQL with ``percentile_cont(0.5)``, the
    same definition, as an aggregate that sorts each group in memory instead of numbering
    every row through two windows (seconds against tenths of a second at 500,000 stays)."""
    if dialect_name(session) == "postgresql":
        return _durations_by_percentile(session, rows, partition=partition, extra=extra)
    parts = [rows.c[name] for name in partition]
    ranked = select(
        *(rows.c[name] for name in (*partition, *extra)),
        rows.c.seconds,
        func.row_number().over(partition_by=parts or None, order_by=rows.c.seconds).label("nth"),
        func.count().over(partition_by=parts or None).label("n"),
    ).subquery()
    keys = [ranked.c[name] for name in (*partition, *extra)]
    middle = and_(ranked.c.nth >= (ranked.c.n + 1) // 2, ranked.c.nth <= (ranked.c.n + 2) // 2)
    statement = select(
        *keys,
        func.count(),
        func.sum(ranked.c.seconds),
        func.sum(case((middle, ranked.c.seconds), else_=0)),
        func.count(case((middle, 1))),
    ).group_by(*keys)
    out: dict[tuple[Any, ...], Durations] = {}
    for row in session.execute(statement):
        *key, count, total, middle_total, middle_count = row
        if count:
            out[tuple(key)] = Durations(count, int(total), int(middle_total), middle_count)
    return out


def _durations_by_percentile(
    session: Session, rows: Subquery, *, partition: Sequence[str], extra: Sequence[str]
) -> dict[tuple[Any, ...], Durations]:
    """:func:`_durations` on PostgreSQL: one statement over the rows read once (a CTE),
    counts and sums per group, the median per partition; the median's parts go to one
    group of its partition, so that the groups of a partition add up to it."""
    source = select(rows).cte("measured")
    keys = [source.c[name] for name in (*partition, *extra)]
    parts = [source.c[name] for name in partition]
    no_extra = [null().label(name) for name in extra]
    statement = union_all(
        select(*keys, func.count(), func.sum(source.c.seconds), null()).group_by(*keys),
        select(
            *parts,
            *no_extra,
            literal(0),
            literal(0),
            func.percentile_cont(0.5).within_group(source.c.seconds),
        ).group_by(*parts),
    )
    out: dict[tuple[Any, ...], Durations] = {}
    medians: dict[tuple[Any, ...], float] = {}
    for row in session.execute(statement):
        *found, count, total, median = row
        key = tuple(found)
        if median is not None:
            medians[key[: len(partition)]] = float(median)
        elif count:
            out[key] = Durations(count, int(total), 0, 0)
    for key in list(out):
        middle = medians.pop(key[: len(partition)], None)
        if middle is not None:  # twice the median over two: exact for whole seconds
            out[key] += Durations(0, 0, round(2 * middle), 2)
    return out


# --- 1. pipeline by stage --------------------------------------------------------------


@dataclass
class StageRow:
    pipeline_id: uuid.UUID
    pipeline: str
    stage_id: uuid.UUID
    stage: str
    position: int
    probability: int
    currency: str | None
    deals: int
    amount: Decimal
    weighted_amount: Decimal


def _stages(session: Session, filters: ReportFilters) -> list[tuple[Stage, str]]:
    """The stages in the filters' pipeline (or all), each with its pipeline's name, in
    pipeline name and stage order."""
    statement = select(Stage, Pipeline.name).join(Pipeline, Pipeline.id == Stage.pipeline_id)
    if filters.pipeline_id is not None:
        statement = statement.where(Stage.pipeline_id == filters.pipeline_id)
    found = [(stage, name) for stage, name in session.execute(statement)]
    return sorted(found, key=lambda s: (s[1], str(s[0].pipeline_id), s[0].position))


def pipeline_by_stage(
    session: Session, *, actor: Actor | None, filters: ReportFilters
) -> list[StageRow]:
    """Open deals per pipeline, stage (in stage order) and currency: how many, their amount,
    and the amount weighted by the stage's probability. Empty stages have a row too."""
    filters = check_filters(session, filters)
    statement = (
        select(Deal.stage_id, Deal.currency, func.count(), func.sum(Deal.amount))
        .where(Deal.status == "open", *_deals(actor, filters, at=Deal.created_at))
        .group_by(Deal.stage_id, Deal.currency)
    )
    sums: dict[uuid.UUID, list[tuple[str | None, int, Decimal]]] = {}
    for stage_id, currency, count, amount in session.execute(statement):
        sums.setdefault(stage_id, []).append((currency, count, _money(amount)))
    rows = []
    for stage, pipeline in _stages(session, filters):
        # The probability is the stage's, so weighting the sum weights every deal.
        for currency, count, amount in sorted(
            sums.get(stage.id) or [(None, 0, _money(0))], key=lambda c: _text_order(c[0])
        ):
            weighted = (amount * stage.probability / 100).quantize(CENTS)
            rows.append(
                StageRow(
                    pipeline_id=stage.pipeline_id,
                    pipeline=pipeline,
                    stage_id=stage.id,
                    stage=stage.name,
                    position=stage.position,
                    probability=stage.probability,
                    currency=currency,
                    deals=count,
                    amount=amount,
                    weighted_amount=weighted,
                )
            )
    return rows


# --- 2. forecast by month --------------------------------------------------------------


@dataclass
class ForecastMonthRow:
    month: str | None
    currency: str | None
    deals: int
    amount: Decimal
    weighted_amount: Decimal


def _first_day(moment: datetime) -> date:
    """The first date whose midnight (UTC) is at or after ``moment``."""
    day = moment.date()
    return day if moment == datetime.combine(day, time(), UTC) else day + timedelta(days=1)


def forecast_by_month(
    session: Session, *, actor: Actor | None, filters: ReportFilters
) -> list[ForecastMonthRow]:
    """Open deals by the month they are expected to close, per currency: amount and
    weighted amount (:func:`patron.crm.deals.forecast`, narrowed by the filters; the range
    is on the expected close date, a day counting from its midnight UTC)."""
    filters = check_filters(session, filters)
    where = _deal_filters(filters)
    if filters.since is not None:
        where.append(Deal.expected_close_date >= _first_day(filters.since))
    if filters.until is not None:
        where.append(Deal.expected_close_date < _first_day(filters.until))
    found = deals.forecast(
        session, actor=actor, group_by="month", pipeline_id=filters.pipeline_id, where=where
    )
    rows = [
        ForecastMonthRow(r.key, r.currency, r.deals, _money(r.amount), r.weighted) for r in found
    ]
    return sorted(rows, key=lambda r: (*_text_order(r.month), *_text_order(r.currency)))


# --- 3. win rate ---------------------------------------------------------------------


@dataclass
class WinRateRow:
    key: uuid.UUID | None
    label: str | None
    currency: str | None
    won: int
    lost: int
    win_rate: float | None
    won_amount: Decimal
    lost_amount: Decimal
    win_rate_by_amount: float | None


def win_rate(
    session: Session, *, actor: Actor | None, filters: ReportFilters, group_by: str = "none"
) -> list[WinRateRow]:
    """Won / (won + lost) over the deals closed in the range, by count and by amount,
    overall or per owner or pipeline, and per currency (deals without an amount count in
    the row without a currency)."""
    filters = check_filters(session, filters)
    grouping = _grouping(group_by)
    won, lost = Deal.status == "won", Deal.status == "lost"
    statement = (
        grouping.select_from_deals(
            Deal.currency,
            func.count(case((won, 1))),
            func.count(case((lost, 1))),
            func.sum(case((won, Deal.amount))),
            func.sum(case((lost, Deal.amount))),
        )
        .where(Deal.status.in_(("won", "lost")), *_deals(actor, filters, at=Deal.closed_at))
        .group_by(*grouping.by, Deal.currency)
    )
    rows = []
    for key, label, currency, n_won, n_lost, won_amount, lost_amount in session.execute(statement):
        won_total, lost_total = _money(won_amount), _money(lost_amount)
        rows.append(
            WinRateRow(
                key=key,
                label=label,
                currency=currency,
                won=n_won,
                lost=n_lost,
                win_rate=_ratio(n_won, n_won + n_lost),
                won_amount=won_total,
                lost_amount=lost_total,
                win_rate_by_amount=_ratio(won_total, won_total + lost_total),
            )
        )
    return sorted(rows, key=_grouped_order)


# --- 4. average deal size ------------------------------------------------------------


@dataclass
class DealSizeRow:
    key: uuid.UUID | None
    label: str | None
    currency: str
    deals: int
    amount: Decimal
    average_amount: Decimal


def average_deal_size(
    session: Session, *, actor: Actor | None, filters: ReportFilters, group_by: str = "none"
) -> list[DealSizeRow]:
    """The won deals with an amount, closed in the range, per currency (and owner or
    pipeline): how many, their total and their average amount."""
    filters = check_filters(session, filters)
    grouping = _grouping(group_by)
    statement = (
        grouping.select_from_deals(Deal.currency, func.count(), func.sum(Deal.amount))
        .where(
            Deal.status == "won",
            Deal.amount.is_not(None),
            Deal.currency.is_not(None),
            *_deals(actor, filters, at=Deal.closed_at),
        )
        .group_by(*grouping.by, Deal.currency)
    )
    rows = [
        DealSizeRow(
            key, label, currency, count, _money(total), (_money(total) / count).quantize(CENTS)
        )
        for key, label, currency, count, total in session.execute(statement)
    ]
    return sorted(rows, key=_grouped_order)


# --- 5. sales cycle length -----------------------------------------------------------


@dataclass
class SalesCycleRow:
    key: uuid.UUID | None
    label: str | None
    deals: int
    average_days: float | None
    median_days: float | None


def sales_cycle(
    session: Session, *, actor: Actor | None, filters: ReportFilters, group_by: str = "none"
) -> list[SalesCycleRow]:
    """Days from a deal's creation to its winning, over the deals won in the range:
    average and median, overall or per owner or pipeline."""
    filters = check_filters(session, filters)
    grouping = _grouping(group_by)
    seconds = _whole_seconds(Deal.created_at, Deal.closed_at, dialect_name(session))
    won = (
        grouping.select_from_deals(seconds.label("seconds"))
        .where(
            Deal.status == "won",
            Deal.closed_at.is_not(None),
            *_deals(actor, filters, at=Deal.closed_at),
        )
        .subquery()
    )
    found = _durations(session, won, partition=("key", "label"))
    rows = [
        SalesCycleRow(key, label, d.count, d.average_days, d.median_days)
        for (key, label), d in found.items()
    ]
    return sorted(rows, key=lambda r: (*_text_order(r.label), *_text_order(_text(r.key))))


def _text(value: Any) -> str | None:
    return None if value is None else str(value)


# --- 6. stage conversion and time in stage -------------------------------------------


@dataclass
class StageConversionRow:
    pipeline_id: uuid.UUID
    pipeline: str
    stage_id: uuid.UUID
    stage: str
    position: int
    entered: int
    moved_on: int
    moved_back: int
    won: int
    lost: int
    still_open: int
    conversion: float | None
    average_days: float | None
    median_days: float | None
    open_average_days: float | None
    open_median_days: float | None


def _narrow(statement: AnySelect, actor: Actor | None, filters: ReportFilters) -> AnySelect:
    """``statement`` over :class:`DealStageVisit` kept to the stays of deals the actor sees,
    begun in the range, of deals with the filters' owner and currency. The visible deals
    are a set of ids: a rep's few thousand deals then lead to their stays by index, instead
    of every stay being joined to its deal and tested."""
    visit = DealStageVisit
    statement = statement.where(_in_range(visit.entered_at, filters))
    if not (actor is None or actor.sees_everything):
        statement = statement.where(visit.deal_id.in_(readable_deal_ids(actor)))
    if by_deal := _deal_filters(filters):
        statement = statement.join(Deal, Deal.id == visit.deal_id).where(*by_deal)
    return statement


def _stage_visits(
    session: Session,
    actor: Actor | None,
    filters: ReportFilters,
    stage_ids: Sequence[uuid.UUID],
    now: datetime,
) -> Subquery:
    """Each stay in ``stage_ids`` that :func:`_narrow` keeps, with its outcome, whether it
    ended, and its length in seconds (up to ``now`` for a stay that goes on)."""
    visit = DealStageVisit
    ended = visit.ended_at.is_not(None)
    end = literal(now, DateTime(timezone=True))
    stays = select(
        visit.stage_id,
        func.coalesce(visit.outcome, "open").label("outcome"),
        case((ended, 1), else_=0).label("ended"),
        case(
            (ended, visit.seconds),
            else_=_whole_seconds(visit.entered_at, end, dialect_name(session)),
        ).label("seconds"),
    ).where(visit.stage_id.in_(stage_ids))
    return _narrow(stays, actor, filters).subquery()


def stage_conversion(
    session: Session,
    *,
    actor: Actor | None,
    filters: ReportFilters,
    now: datetime | None = None,
) -> list[StageConversionRow]:
    """Where deals stall: per stage (in stage order), the stays that began in the range,
    and what became of each: moved on to a later stage, moved back (or to another
    pipeline), won or lost from it, or still open there. ``conversion`` is (moved on + won)
    / entered. Time in stage: average and median of the stays that ended, and the current
    age of the open ones. A deal that comes back to a stage counts again."""
    filters = check_filters(session, filters)
    stages, at = _stages(session, filters), as_utc(now or utcnow())
    ids = [stage.id for stage, _ in stages]
    everyone = actor is None or actor.sees_everything
    whole = filters.since is None and filters.until is None and not _deal_filters(filters)
    if everyone and whole:
        found = _stays_by_stage(session, ids, at, None)
    elif everyone and dialect_name(session) == "postgresql":
        found = _stays_by_stage(session, ids, at, lambda s: _narrow(s, actor, filters))
    else:
        # One pass over the stays: for a restricted caller, finding their deals' stays
        # costs more than measuring them, and is not to be paid once per statement.
        visits = _stage_visits(session, actor, filters, ids, at)
        found = _durations(session, visits, partition=("stage_id", "ended"), extra=("outcome",))
    return [_stage_row(stage, name, found) for stage, name in stages]


def _stays_by_stage(
    session: Session,
    stage_ids: Sequence[uuid.UUID],
    now: datetime,
    narrow: Callable[[AnySelect], AnySelect] | None,
) -> dict[tuple[Any, ...], Durations]:
    """:func:`_durations` of the stays in ``stage_ids`` (those ``narrow`` keeps), counted
    from what the deal service stored on them rather than by measuring each one: the ended
    stays' counts and lengths per outcome, the open ones' ages per stage.

    Over every stay (no ``narrow``: an admin's report over all time) all of it comes from
    indexes: counts and lengths by (stage, outcome, seconds), open stays by stage and
    entry, and each median as the middle one or two entries of an index, skipped to by
    position (at 500,000 stays, 0.11 s instead of 0.8 s). Otherwise (PostgreSQL only) the
    medians are ``percentile_cont``, which sorts the kept stays' lengths per stage; each
    statement applies ``narrow`` again, which suits narrowing by date (an index range),
    not by a caller's visible deals."""
    v, dialect = DealStageVisit, dialect_name(session)
    age = _whole_seconds(v.entered_at, literal(now, DateTime(timezone=True)), dialect)

    def kept(statement: AnySelect) -> AnySelect:
        statement = statement.where(v.stage_id.in_(stage_ids))
        return statement if narrow is None else narrow(statement)

    ended = kept(
        select(v.stage_id, literal(1), v.outcome, func.count(), func.sum(v.seconds)).where(
            v.outcome.is_not(None)
        )
    ).group_by(v.stage_id, v.outcome)
    still = kept(
        select(v.stage_id, literal(0), literal("open"), func.count(), func.sum(age)).where(
            v.ended_at.is_(None)
        )
    ).group_by(v.stage_id)
    out: dict[tuple[Any, ...], Durations] = {}
    sizes: dict[tuple[Any, ...], int] = {}
    counted: Sequence[Any] = session.execute(union_all(ended, still)).all()
    for row in counted:
        out[tuple(row[:3])] = Durations(row[3], int(row[4]))
        sizes[tuple(row[:2])] = sizes.get(tuple(row[:2]), 0) + row[3]
    if narrow is None:
        medians = _medians_by_position(session, sizes, age)
    else:
        medians = _medians_by_percentile(session, kept, age)
    for key in list(out):  # each partition's median goes to one of its groups
        middle = medians.pop(key[:2], None)
        if middle is not None:
            out[key] += middle
    return out


def _medians_by_position(
    session: Session, sizes: dict[tuple[Any, ...], int], age: ColumnElement[Any]
) -> dict[tuple[Any, ...], Durations]:
    """The middle one or two lengths of every (stage, ended) partition of ``sizes`` stays,
    each read at its position in an index."""
    v = DealStageVisit
    middles = []
    for (stage_id, was_ended), size in sizes.items():
        if was_ended:  # shortest first; an open stay is the shorter the later it began
            ordered = select(v.stage_id, literal(1).label("ended"), v.seconds.label("seconds"))
            ordered = ordered.where(v.stage_id == stage_id, v.seconds.is_not(None))
            ordered = ordered.order_by(v.seconds)
        else:
            ordered = select(v.stage_id, literal(0).label("ended"), age.label("seconds"))
            ordered = ordered.where(v.stage_id == stage_id, v.ended_at.is_(None))
            ordered = ordered.order_by(v.entered_at.desc())
        at_middle = ordered.offset((size - 1) // 2).limit(2 - size % 2).subquery()
        middles.append(select(at_middle))
    medians: dict[tuple[Any, ...], Durations] = {}
    if middles:
        for stage_id, was_ended, seconds in session.execute(union_all(*middles)):
            key = (stage_id, was_ended)
            medians[key] = medians.get(key, Durations()) + Durations(0, 0, int(seconds), 1)
    return medians


def _medians_by_percentile(
    session: Session, kept: Callable[[AnySelect], AnySelect], age: ColumnElement[Any]
) -> dict[tuple[Any, ...], Durations]:
    """The median length of the ended and of the open stays per stage, by PostgreSQL's
    ``percentile_cont(0.5)`` (the mean of the middle two of an even count), as twice the
    median over two: exact for whole seconds."""
    v = DealStageVisit
    half = func.percentile_cont(0.5)
    ended = kept(
        select(v.stage_id, literal(1), half.within_group(v.seconds)).where(v.outcome.is_not(None))
    ).group_by(v.stage_id)
    still = kept(
        select(v.stage_id, literal(0), half.within_group(age)).where(v.ended_at.is_(None))
    ).group_by(v.stage_id)
    medians: dict[tuple[Any, ...], Durations] = {}
    for stage_id, was_ended, median in session.execute(union_all(ended, still)):
        medians[(stage_id, was_ended)] = Durations(0, 0, round(2 * float(median)), 2)
    return medians


def _stage_row(
    stage: Stage, pipeline: str, found: dict[tuple[Any, ...], Durations]
) -> StageConversionRow:
    def stays(outcome: str | None = None, ended: int | None = None) -> Durations:
        total = Durations()
        for (stage_id, was_ended, was), durations in found.items():
            if stage_id == stage.id and outcome in (None, was) and ended in (None, was_ended):
                total += durations
        return total

    counts = {outcome: stays(outcome).count for outcome in OUTCOMES}
    entered = sum(counts.values())
    ended, still = stays(ended=1), stays(ended=0)
    return StageConversionRow(
        pipeline_id=stage.pipeline_id,
        pipeline=pipeline,
        stage_id=stage.id,
        stage=stage.name,
        position=stage.position,
        entered=entered,
        moved_on=counts["moved_on"],
        moved_back=counts["moved_back"],
        won=counts["won"],
        lost=counts["lost"],
        still_open=counts["open"],
        conversion=_ratio(counts["moved_on"] + counts["won"], entered),
        average_days=ended.average_days,
        median_days=ended.median_days,
        open_average_days=still.average_days,
        open_median_days=still.median_days,
    )


# --- 7. activities per owner ---------------------------------------------------------


@dataclass
class ActivityOwnerRow:
    owner_id: uuid.UUID | None
    owner: str | None
    calls: int
    meetings: int
    notes: int
    emails: int
    tasks_created: int
    tasks_completed: int
    total: int


def activities_per_owner(
    session: Session, *, actor: Actor | None, filters: ReportFilters
) -> list[ActivityOwnerRow]:
    """Per owner, the activities they logged in the range by kind, the tasks created in
    it and the tasks completed in it (``total`` is all but the completions). The pipeline
    filter keeps the activities on that pipeline's deals.

    For a caller who sees every activity, whole days come from the tallies the database
    keeps (:class:`ActivityTally`) and only the hours before the first and after the last
    whole day are counted from the activities; everyone else's are counted, as they see
    them."""
    filters = check_filters(session, filters)
    counts: dict[tuple[uuid.UUID | None, str], tuple[int, int]] = {}
    if (actor is None or actor.sees_everything) and filters.pipeline_id is None:
        _tallied(session, filters, counts)
    elif (arms := activity_count_arms(session, actor)) is not None:
        # A rep's or a manager's: each arm from its own index.
        _counted(session, union_all(*(_activity_counts(arm, filters) for arm in arms)), counts)
    else:
        _counted(session, _activity_counts(readable_activities(actor), filters), counts)
    owners: dict[uuid.UUID | None, dict[str, tuple[int, int]]] = {}
    for (owner_id, kind), found in counts.items():
        if any(found):
            owners.setdefault(owner_id, {})[kind] = found
    ids = [owner_id for owner_id in owners if owner_id is not None]
    labels: dict[uuid.UUID, str | None] = {}
    for user_id, label in session.execute(select(User.id, _user_label()).where(User.id.in_(ids))):
        labels[user_id] = label
    rows = []
    for owner_id, kinds in owners.items():
        calls, meetings, notes, emails, tasks = (kinds.get(k, (0, 0))[0] for k in KINDS)
        completed = kinds.get("task", (0, 0))[1]
        total = calls + meetings + notes + emails + tasks
        label = labels.get(owner_id) if owner_id is not None else None
        rows.append(
            ActivityOwnerRow(
                owner_id, label, calls, meetings, notes, emails, tasks, completed, total
            )
        )
    return sorted(rows, key=lambda r: (*_text_order(r.owner), *_text_order(_text(r.owner_id))))


def _counted(
    session: Session,
    grouped: AnySelect | CompoundSelect[Any],
    counts: dict[tuple[uuid.UUID | None, str], tuple[int, int]],
) -> None:
    """Adds the rows of ``grouped`` (owner_id, kind, logged, done) to ``counts``."""
    for owner_id, kind, logged, done in session.execute(grouped):
        before = counts.get((owner_id, kind), (0, 0))
        counts[(owner_id, kind)] = (before[0] + logged, before[1] + done)


def _midnight(moment: datetime, *, up: bool) -> datetime:
    """The UTC midnight at or before ``moment`` (after it, with ``up``, unless it is one)."""
    floor = datetime.combine(moment.date(), time(), UTC)
    return floor + timedelta(days=1) if up and floor < moment else floor


def _tallied(
    session: Session,
    filters: ReportFilters,
    counts: dict[tuple[uuid.UUID | None, str], tuple[int, int]],
) -> None:
    """:func:`_counted` for every activity: the whole days in the range from the tallies,
    the hours at either end of it from the activities."""
    first = None if filters.since is None else _midnight(filters.since, up=True)
    last = None if filters.until is None else _midnight(filters.until, up=False)
    if first is not None and last is not None and first >= last:  # no whole day in it
        _counted(session, _activity_counts(true(), filters), counts)
        return
    tally = ActivityTally
    days = [tally.day >= first.date()] if first is not None else []
    days += [tally.day < last.date()] if last is not None else []
    if filters.owner_id is not None:
        days.append(tally.owner_id == filters.owner_id)
    whole = (
        select(
            case((tally.owner_id == NO_OWNER, None), else_=tally.owner_id).label("owner_id"),
            tally.kind,
            func.sum(tally.logged).label("logged"),
            func.sum(tally.completed).label("done"),
        )
        .where(*days)
        .group_by(tally.owner_id, tally.kind)
    )
    _counted(session, whole, counts)
    edges = []
    if filters.since is not None and first is not None and filters.since < first:
        edges.append(replace(filters, until=first))
    if filters.until is not None and last is not None and last < filters.until:
        edges.append(replace(filters, since=last))
    for edge in edges:
        _counted(session, _activity_counts(true(), edge), counts)


def _activity_counts(visible: ColumnElement[bool], filters: ReportFilters) -> AnySelect:
    """Per owner and kind, of the activities ``visible`` keeps: those that occurred in the
    range and those completed in it, grouped before anything is joined to them."""
    ranged = filters.since is not None or filters.until is not None
    occurred = _in_range(Activity.occurred_at, filters)
    completed = and_(Activity.done_at.is_not(None), _in_range(Activity.done_at, filters))
    logged = func.count(case((occurred, 1))) if ranged else func.count()
    done = func.count(case((completed, 1))) if ranged else func.count(Activity.done_at)
    statement = (
        select(Activity.owner_id, Activity.kind, logged.label("logged"), done.label("done"))
        .where(visible)
        .group_by(Activity.owner_id, Activity.kind)
    )
    if ranged:
        statement = statement.where(or_(occurred, completed))
    if filters.owner_id is not None:
        statement = statement.where(Activity.owner_id == filters.owner_id)
    if filters.pipeline_id is not None:
        in_pipeline = select(Deal.id).where(Deal.pipeline_id == filters.pipeline_id)
        statement = statement.where(Activity.deal_id.in_(in_pipeline))
    return statement
