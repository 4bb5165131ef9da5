"""The leads report: where leads come from and how far they get, within the persons the
caller may see (``readable_persons``).

A lead is a live, unarchived person whose lifecycle stage is lead or further along the
funnel. Its source is the campaign of its first touch (``first_touch.utm_source``, set by
web forms), and for leads that came without one, the Patron source of the message that made
the person (the website, the shop backend, an import...).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import ColumnElement, and_, case, exists, func, select
from sqlalchemy.orm import Session

from patron.auth.service import Actor
from patron.collect.models import Event, Source
from patron.core.errors import InvalidInput
from patron.crm.contacts import LIFECYCLE_STAGES
from patron.crm.models import Deal
from patron.crm.reports.service import ReportFilters, _in_range, _ratio, _text_order, check_filters
from patron.identity.models import Person
from patron.profiles.access import readable_persons

GROUPS = ("source", "medium", "campaign")
# The funnel from lead on, in order; "other" is off it.
FUNNEL = LIFECYCLE_STAGES[LIFECYCLE_STAGES.index("lead") : LIFECYCLE_STAGES.index("other")]
UNKNOWN = "(unknown)"


@dataclass
class LeadSourceRow:
    source: str
    leads: int
    marketing_qualified: int
    sales_qualified: int
    opportunities: int
    customers: int
    with_won_deal: int
    conversion: float | None


def _reached(stage: str) -> ColumnElement[bool]:
    """The person's stage is ``stage`` or further along the funnel."""
    return Person.lifecycle_stage.in_(FUNNEL[FUNNEL.index(stage) :])


def _group(group_by: str) -> ColumnElement[Any]:
    if group_by == "source":
        made_by = (
            select(Source.name)
            .join(Event, Event.source_id == Source.id)
            .where(Event.seq == Person.created_seq)
            .scalar_subquery()
        )
        return func.coalesce(Person.first_touch["utm_source"].as_string(), made_by)
    if group_by in ("medium", "campaign"):
        touch: ColumnElement[Any] = Person.first_touch[f"utm_{group_by}"].as_string()
        return touch
    raise InvalidInput(f"group_by is one of {', '.join(GROUPS)}", field="group_by")


def leads_by_source(
    session: Session, *, actor: Actor | None, filters: ReportFilters, group_by: str = "source"
) -> list[LeadSourceRow]:
    """Per first-touch source (or medium, or campaign), the leads first seen in the range
    and how many of them reached each stage since: marketing qualified, sales qualified,
    opportunity, customer (a customer or evangelist, or anyone with a won deal);
    ``conversion`` is customers / leads. ``owner_id`` is the lead's owner."""
    filters = check_filters(session, filters)
    if filters.pipeline_id is not None:
        raise InvalidInput("leads are in no pipeline", field="pipeline_id")
    if filters.currency is not None:
        raise InvalidInput("leads have no currency", field="currency")
    source = _group(group_by).label("source")
    won = exists().where(Deal.person_id == Person.id, Deal.status == "won")
    customer = _reached("customer") | won
    where = [
        Person.merged_into.is_(None),
        Person.archived_at.is_(None),
        _reached("lead"),
        readable_persons(actor),
        _in_range(Person.first_seen, filters),
    ]
    if filters.owner_id is not None:
        where.append(Person.owner_id == filters.owner_id)
    leads = (
        select(
            source,
            case((_reached("marketingqualifiedlead"), 1), else_=0).label("mql"),
            case((_reached("salesqualifiedlead"), 1), else_=0).label("sql"),
            case((_reached("opportunity"), 1), else_=0).label("opportunity"),
            case((customer, 1), else_=0).label("customer"),
            case((won, 1), else_=0).label("won"),
        )
        .where(and_(*where))
        .subquery()
    )
    statement = select(
        leads.c.source,
        func.count(),
        func.sum(leads.c.mql),
        func.sum(leads.c.sql),
        func.sum(leads.c.opportunity),
        func.sum(leads.c.customer),
        func.sum(leads.c.won),
    ).group_by(leads.c.source)
    rows = [
        LeadSourceRow(
            source=name or UNKNOWN,
            leads=count,
            marketing_qualified=int(mql or 0),
            sales_qualified=int(sql or 0),
            opportunities=int(opportunity or 0),
            customers=int(customers or 0),
            with_won_deal=int(won_count or 0),
            conversion=_ratio(customers, count),
        )
        for name, count, mql, sql, opportunity, customers, won_count in session.execute(statement)
    ]
    return sorted(rows, key=lambda r: (-r.leads, *_text_order(r.source)))
