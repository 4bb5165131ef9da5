"""The support report: ticket volume, first-response and resolution times, SLA compliance,
within the tickets the caller may see (``readable_tickets``).

Times are the business minutes the SLA clock counted (what the targets are in) and the
calendar minutes a customer waited; averages and medians come from the same window query
as the sales reports' durations, so SQLite and PostgreSQL agree.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import BigInteger, ColumnElement, case, cast, func, literal, select
from sqlalchemy.orm import Session

from patron.auth.models import User
from patron.auth.service import Actor
from patron.core.clock import utcnow
from patron.core.errors import InvalidInput
from patron.crm.access import readable_tickets
from patron.crm.reports.service import (
    Durations,
    ReportFilters,
    _durations,
    _in_range,
    _ratio,
    _text_order,
    _user_label,
    check_filters,
)
from patron.crm.tickets.clock import state_column
from patron.crm.tickets.models import Ticket

GROUPS = ("none", "priority", "channel", "assignee", "month")
OPEN = ("new", "open", "pending")
SOLVED = ("solved", "closed")
MINUTE = 60


@dataclass
class TicketRow:
    key: str | None
    label: str | None
    created: int
    open: int
    solved: int
    responded: int
    first_response_avg_minutes: float | None
    first_response_median_minutes: float | None
    first_response_calendar_avg_minutes: float | None
    resolution_avg_minutes: float | None
    resolution_median_minutes: float | None
    resolution_calendar_avg_minutes: float | None
    first_response_met: int
    first_response_breached: int
    first_response_compliance: float | None
    resolution_met: int
    resolution_breached: int
    resolution_compliance: float | None


def _group(group_by: str, dialect: str) -> tuple[Any, Any]:
    """The key and label a ticket falls under (one constant group for ``none``)."""
    if group_by == "none":
        return literal("all"), literal("all")
    if group_by in ("priority", "channel"):
        column = getattr(Ticket, group_by)
        return column, column
    if group_by == "assignee":
        label = select(_user_label()).where(User.id == Ticket.assignee_id).scalar_subquery()
        return Ticket.assignee_id, label
    if group_by == "month":
        month = (
            func.to_char(Ticket.created_at, "YYYY-MM")
            if dialect == "postgresql"
            else func.strftime("%Y-%m", Ticket.created_at)
        )
        return month, month
    raise InvalidInput(f"group_by is one of {', '.join(GROUPS)}", field="group_by")


def _check(filters: ReportFilters) -> None:
    if filters.pipeline_id is not None:
        raise InvalidInput("tickets are in no pipeline", field="pipeline_id")
    if filters.currency is not None:
        raise InvalidInput("tickets have no currency", field="currency")


def ticket_report(
    session: Session,
    *,
    actor: Actor | None,
    filters: ReportFilters,
    group_by: str = "none",
    now: datetime | None = None,
) -> list[TicketRow]:
    """Per group, the tickets created in the range: how many, how many are still open or
    solved, how fast they were first answered and solved (business and calendar minutes),
    and how many met or breached each SLA target (compliance = met / (met + breached));
    ``owner_id`` is the assignee."""
    filters = check_filters(session, filters)
    _check(filters)
    dialect = session.get_bind().dialect.name
    key, label = _group(group_by, dialect)
    where = [readable_tickets(actor), _in_range(Ticket.created_at, filters)]
    if filters.owner_id is not None:
        where.append(Ticket.assignee_id == filters.owner_id)
    counts = _counts(session, key, label, where, now or utcnow())
    times = {
        target: _times(session, key, where, target) for target in ("first_response", "resolution")
    }
    rows = []
    overall = group_by == "none"
    for group, (name, numbers) in counts.items():
        first = times["first_response"].get(group, Durations())
        resolution = times["resolution"].get(group, Durations())
        rows.append(
            TicketRow(
                key=None if overall else group,
                label=None if overall else name,
                created=numbers["created"],
                open=numbers["open"],
                solved=numbers["solved"],
                responded=numbers["responded"],
                first_response_avg_minutes=_minutes(first.total, first.count),
                first_response_median_minutes=_minutes(first.middle_total, first.middle_count),
                first_response_calendar_avg_minutes=_round(numbers["first_calendar"]),
                resolution_avg_minutes=_minutes(resolution.total, resolution.count),
                resolution_median_minutes=_minutes(
                    resolution.middle_total, resolution.middle_count
                ),
                resolution_calendar_avg_minutes=_round(numbers["resolution_calendar"]),
                first_response_met=numbers["first_met"],
                first_response_breached=numbers["first_breached"],
                first_response_compliance=_ratio(
                    numbers["first_met"], numbers["first_met"] + numbers["first_breached"]
                ),
                resolution_met=numbers["resolution_met"],
                resolution_breached=numbers["resolution_breached"],
                resolution_compliance=_ratio(
                    numbers["resolution_met"],
                    numbers["resolution_met"] + numbers["resolution_breached"],
                ),
            )
        )
    return sorted(rows, key=lambda r: (*_text_order(r.label), *_text_order(r.key)))


def _count_if(condition: ColumnElement[bool]) -> ColumnElement[Any]:
    return func.count(case((condition, 1)))


def _counts(
    session: Session,
    key: ColumnElement[Any],
    label: ColumnElement[Any],
    where: list[ColumnElement[bool]],
    now: datetime,
) -> dict[str | None, tuple[str | None, dict[str, Any]]]:
    first = state_column("first_response", now)
    resolution = state_column("resolution", now)
    columns = {
        "created": func.count(),
        "open": _count_if(Ticket.status.in_(OPEN)),
        "solved": _count_if(Ticket.status.in_(SOLVED)),
        "responded": _count_if(Ticket.first_responded_at.is_not(None)),
        "first_calendar": func.avg(Ticket.first_response_calendar_minutes),
        "resolution_calendar": func.avg(Ticket.resolution_calendar_minutes),
        # Each target's state now, as the ticket shows it (the SLA job need not have run).
        "first_met": _count_if(first == "met"),
        "first_breached": _count_if(first == "breached"),
        "resolution_met": _count_if(resolution == "met"),
        "resolution_breached": _count_if(resolution == "breached"),
    }
    grouped = select(key.label("key"), *(c.label(n) for n, c in columns.items())).where(*where)
    statement = grouped.group_by(key)
    names = dict(session.execute(select(key, label).where(*where).distinct()).all())
    out: dict[str | None, tuple[str | None, dict[str, Any]]] = {}
    for row in session.execute(statement):
        values = row._mapping
        if not values["created"]:
            continue
        name = names.get(values["key"])
        out[_text(values["key"])] = (_text(name), {n: values[n] for n in columns})
    return out


def _times(
    session: Session, key: ColumnElement[Any], where: list[ColumnElement[bool]], target: str
) -> dict[str | None, Durations]:
    """Business time each answered (or solved) ticket took, per group, as whole seconds."""
    minutes = getattr(Ticket, f"{target}_minutes")
    rows = (
        select(
            key.label("grp"),
            cast(func.round(minutes * MINUTE), BigInteger).label("seconds"),
        )
        .where(*where, minutes.is_not(None))
        .subquery()
    )
    found = _durations(session, rows, partition=["grp"])
    return {_text(group): durations for (group,), durations in found.items()}


def _text(value: Any) -> str | None:
    return None if value is None else str(value)


def _minutes(total_seconds: int, count: int) -> float | None:
    return round(total_seconds / count / MINUTE, 1) if count else None


def _round(value: Any) -> float | None:
    return None if value is None else round(float(value), 1)
