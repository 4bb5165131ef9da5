"""Tickets, their comments, and the SLA policies that set their clocks."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import ForeignKey, Index, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from patron.core.clock import utcnow
from patron.core.ids import new_id
from patron.core.models import Base


class SlaPolicy(Base):
    """Response and resolution targets for the tickets of some priorities and channels,
    counted in the business hours of a time zone.

    Policies are tried in ``position`` order; the first that covers a ticket's priority
    and channel applies. A deleted policy keeps its row (``deleted_at``): it matches no
    new ticket, and the tickets that have it keep their clocks.
    """

    __tablename__ = "sla_policies"

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=new_id)
    name: Mapped[str] = mapped_column(String(200))
    position: Mapped[int] = mapped_column(default=0)
    # Empty: every priority (channel).
    priorities: Mapped[list[Any]] = mapped_column(default=list)
    channels: Mapped[list[Any]] = mapped_column(default=list)
    # {"high": {"first_response": 60, "resolution": 480}, ...}: business minutes (or null).
    targets: Mapped[dict[str, Any]] = mapped_column(default=dict)
    # Warn when this fraction of a target has passed.
    warning_fraction: Mapped[float] = mapped_column(default=0.8)
    timezone: Mapped[str] = mapped_column(String(64))
    working_days: Mapped[list[Any]] = mapped_column(default=list)
    # [{"start": "09:00", "end": "12:00"}, ...] on each working day...
    working_hours: Mapped[list[Any]] = mapped_column(default=list)
    # ...unless a day has its own: {"sat": [{"start": "10:00", "end": "14:00"}]}.
    day_hours: Mapped[dict[str, Any]] = mapped_column(default=dict)
    # ISO dates.
    holidays: Mapped[list[Any]] = mapped_column(default=list)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)
    deleted_at: Mapped[datetime | None]


class Ticket(Base):
    """A support request.

    The SLA clock counts business time while the ticket is new or open: it pauses while
    pending and stops when solved. ``sla_clock_seconds`` is the business time counted up
    to ``sla_clock_since`` (the instant it last started running; null while it stands).
    Each target (first response, resolution) keeps its terms as they were when the
    policy was applied (``*_target`` minutes), its due and warning instants (null while
    the clock stands, unless already passed), whether it was breached, and the business
    minutes it took; ``sla_next_check_at`` is when the SLA job next has something to say.
    """

    __tablename__ = "tickets"
    __table_args__ = (
        Index("ix_tickets_person", "person_id"),
        Index("ix_tickets_company", "company_id"),
        Index("ix_tickets_assignee_status", "assignee_id", "status"),
        Index("ix_tickets_status_created", "status", "created_at"),
        Index("ix_tickets_first_response_due", "first_response_due_at"),
        Index("ix_tickets_resolution_due", "resolution_due_at"),
        Index("ix_tickets_sla_next_check", "sla_next_check_at"),
    )

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=new_id)
    subject: Mapped[str] = mapped_column(String(300))
    description: Mapped[str] = mapped_column(Text, default="")
    # The requester. Kept as the id the ticket was made for: after a merge it leads to the
    # survivor, and an unmerge needs no work.
    person_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("persons.id"))
    company_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("companies.id"))
    # new, open, pending, solved, closed
    status: Mapped[str] = mapped_column(String(10), default="new")
    # low, normal, high, urgent
    priority: Mapped[str] = mapped_column(String(10), default="normal")
    # email, web, phone, chat, form, api
    channel: Mapped[str] = mapped_column(String(10), default="api")
    assignee_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("users.id", ondelete="SET NULL")
    )
    tags: Mapped[list[Any]] = mapped_column(default=list)
    custom: Mapped[dict[str, Any]] = mapped_column(default=dict)
    created_by: Mapped[str] = mapped_column(String(320))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)
    # The first public reply by staff.
    first_responded_at: Mapped[datetime | None]
    # Cleared when the ticket is reopened: resolution is measured to the last solve.
    solved_at: Mapped[datetime | None]
    closed_at: Mapped[datetime | None]

    sla_policy_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("sla_policies.id"))
    sla_warning_fraction: Mapped[float | None]
    sla_clock_seconds: Mapped[float] = mapped_column(default=0.0)
    sla_clock_since: Mapped[datetime | None]
    sla_next_check_at: Mapped[datetime | None]

    first_response_target: Mapped[int | None]
    first_response_due_at: Mapped[datetime | None]
    first_response_warn_at: Mapped[datetime | None]
    first_response_breached: Mapped[bool] = mapped_column(default=False)
    # Business minutes on the clock at the first response; calendar minutes since creation.
    first_response_minutes: Mapped[float | None]
    first_response_calendar_minutes: Mapped[float | None]
    first_response_warning_sent_at: Mapped[datetime | None]
    first_response_breach_sent_at: Mapped[datetime | None]

    resolution_target: Mapped[int | None]
    resolution_due_at: Mapped[datetime | None]
    resolution_warn_at: Mapped[datetime | None]
    resolution_breached: Mapped[bool] = mapped_column(default=False)
    resolution_minutes: Mapped[float | None]
    resolution_calendar_minutes: Mapped[float | None]
    resolution_warning_sent_at: Mapped[datetime | None]
    resolution_breach_sent_at: Mapped[datetime | None]


class TicketComment(Base):
    """A public reply (seen by the requester) or an internal note (staff only).

    Written by a user, or the requester's own words (``from_requester``) logged by one.
    """

    __tablename__ = "ticket_comments"
    __table_args__ = (Index("ix_ticket_comments_ticket", "ticket_id", "created_at"),)

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=new_id)
    ticket_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("tickets.id", ondelete="CASCADE"))
    body: Mapped[str] = mapped_column(Text)
    public: Mapped[bool] = mapped_column(default=True)
    from_requester: Mapped[bool] = mapped_column(default=False)
    author_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    author_label: Mapped[str] = mapped_column(String(320))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
