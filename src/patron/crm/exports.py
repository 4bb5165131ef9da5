"""Any filtered list of contacts, companies, deals, activities or tickets as CSV, page by
page (constant memory), with the same visibility, filters, search and sort as the list."""

from __future__ import annotations

import csv
import io
from collections.abc import Callable, Iterator
from dataclasses import replace
from typing import Any

from sqlalchemy.orm import Session, sessionmaker

from patron.auth.service import Actor
from patron.core.clock import utcnow
from patron.core.pagination import ListQuery, Page
from patron.crm import activities, companies, contacts, deals
from patron.crm import fields as custom_fields
from patron.crm.records import jsonable
from patron.crm.tickets import clock as ticket_clock
from patron.crm.tickets import service as tickets

PAGE = 500
CONTACT_COLUMNS = (
    "id",
    "name",
    "email",
    "owner_id",
    "lifecycle_stage",
    "lead_status",
    "tags",
    "created_at",
    "archived_at",
)
COMPANY_COLUMNS = (
    "id",
    "name",
    "domain",
    "industry",
    "size",
    "owner_id",
    "tags",
    "group_id",
    "created_at",
    "archived_at",
)
DEAL_COLUMNS = (
    "id",
    "external_id",
    "name",
    "amount",
    "currency",
    "status",
    "lost_reason",
    "expected_close_date",
    "owner_id",
    "person_id",
    "company_id",
    "pipeline_id",
    "stage_id",
    "created_at",
    "closed_at",
)
ACTIVITY_COLUMNS = (
    "id",
    "kind",
    "subject",
    "body",
    "person_id",
    "company_id",
    "deal_id",
    "ticket_id",
    "owner_id",
    "created_by",
    "occurred_at",
    "due_at",
    "done_at",
    "priority",
    "direction",
    "duration_seconds",
    "outcome",
    "starts_at",
    "ends_at",
)
TICKET_COLUMNS = (
    "id",
    "subject",
    "status",
    "priority",
    "channel",
    "person_id",
    "company_id",
    "assignee_id",
    "tags",
    "created_by",
    "created_at",
    "first_responded_at",
    "solved_at",
    "closed_at",
    "sla_policy_id",
    "sla_state",
    "first_response_target",
    "first_response_due_at",
    "first_response_breached",
    "first_response_minutes",
    "resolution_target",
    "resolution_due_at",
    "resolution_breached",
    "resolution_minutes",
)
KINDS = ("contacts", "companies", "deals", "activities", "tickets")
RECORD_TYPES = {"contacts": "person", "companies": "company", "deals": "deal", "tickets": "ticket"}
COLUMNS = {
    "contacts": CONTACT_COLUMNS,
    "companies": COMPANY_COLUMNS,
    "deals": DEAL_COLUMNS,
    "activities": ACTIVITY_COLUMNS,
    "tickets": TICKET_COLUMNS,
}


def _lister(kind: str, archived: bool, rotting: bool | None) -> Callable[..., Page[Any]]:
    """The list function of ``kind`` with its own filters bound (archived, rotting)."""
    if kind == "deals":
        return lambda session, **common: deals.list_deals(session, rotting=rotting, **common)
    if kind == "activities":
        return activities.list_activities
    if kind == "tickets":
        return tickets.list_tickets
    chosen: Callable[..., Page[Any]] = (
        contacts.list_contacts if kind == "contacts" else companies.list_companies
    )
    return lambda session, **common: chosen(session, archived=archived, **common)


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, list):
        return ";".join(str(_cell(v)) for v in value)
    if isinstance(value, dict):
        return " ".join(f"{k}={_cell(v)}" for k, v in value.items())
    return str(jsonable(value))


def _contact_value(person: Any, column: str) -> Any:
    if column in ("name", "email"):
        return person.traits.get(column)
    return getattr(person, column)


def _ticket_value(ticket: Any, column: str) -> Any:
    if column == "sla_state":  # the state needs no calendar, only the stored clock
        now = utcnow()
        views = [ticket_clock.target_view(ticket, t, None, now) for t in ticket_clock.TARGETS]
        return ticket_clock.overall([v.state for v in views if v is not None])
    return getattr(ticket, column)


def export_csv(
    sessions: sessionmaker[Session],
    *,
    kind: str,
    actor: Actor | None,
    query: ListQuery,
    search: str | None,
    archived: bool = False,
    rotting: bool | None = None,
    page_size: int = PAGE,
) -> Iterator[str]:
    """The CSV text of the whole filtered list, a page at a time (header first).

    The first page is read before this returns, so bad filters or sorts raise here, while
    an error response can still be sent; the session lives as long as the iterator."""
    # Activities have no custom fields.
    record_type = RECORD_TYPES.get(kind)
    lister = _lister(kind, archived, rotting)
    columns = COLUMNS[kind]
    value = {"contacts": _contact_value, "tickets": _ticket_value}.get(kind, getattr)
    session = sessions()
    try:
        keys = sorted(custom_fields.fields_of(session, record_type)) if record_type else []
        page_query = replace(query, limit=page_size, cursor=None)
        page = lister(session, actor=actor, query=page_query, search=search)
    except BaseException:
        session.close()
        raise

    def rows() -> Iterator[str]:
        nonlocal page, page_query
        try:
            yield _line([*columns, *(f"custom.{k}" for k in keys)])
            while True:
                for record in page.items:
                    cells = [value(record, c) for c in columns]
                    yield _line([*cells, *(record.custom.get(k) for k in keys)])
                if page.next_cursor is None:
                    return
                session.expunge_all()
                page_query = replace(page_query, cursor=page.next_cursor)
                page = lister(session, actor=actor, query=page_query, search=search)
        finally:
            session.close()

    return rows()


def _line(cells: list[Any]) -> str:
    out = io.StringIO()
    csv.writer(out).writerow([_cell(c) for c in cells])
    return out.getvalue()
