"""Companies and who works where. Fed by ``group`` calls now; the CRM issue extends them."""

from __future__ import annotations

import uuid
from datetime import date, datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import (
    BigInteger,
    ForeignKey,
    Index,
    Numeric,
    String,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.orm import Mapped, mapped_column

from patron.core.clock import utcnow
from patron.core.ids import new_id
from patron.core.models import Base, BigIntPK


class Company(Base):
    """A company: from ``group`` calls, created by hand, or both.

    ``domain`` (normalised: lower case, no scheme, no ``www.``) is the natural key. A company
    merged into another stays as a pointer (``merged_into``), so its old id and groupId
    still find the survivor.
    """

    __tablename__ = "companies"
    __table_args__ = (
        Index("ix_companies_owner", "owner_id", "created_at"),
        Index("ix_companies_name", "name", "id"),
        Index(
            "ix_companies_merged_into",
            "merged_into",
            sqlite_where=text("merged_into IS NOT NULL"),
            postgresql_where=text("merged_into IS NOT NULL"),
        ),
    )

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=new_id)
    # The groupId the tracking API knows the company by.
    group_id: Mapped[str | None] = mapped_column(String(200), unique=True)
    name: Mapped[str | None] = mapped_column(String(300))
    traits: Mapped[dict[str, Any]] = mapped_column(default=dict)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)
    domain: Mapped[str | None] = mapped_column(String(253), unique=True)
    industry: Mapped[str | None] = mapped_column(String(200))
    # Number of employees.
    size: Mapped[int | None]
    owner_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    tags: Mapped[list[Any]] = mapped_column(default=list)
    custom: Mapped[dict[str, Any]] = mapped_column(default=dict)
    archived_at: Mapped[datetime | None]
    merged_into: Mapped[uuid.UUID | None]
    # The import that last wrote this company: a domain seen twice in one file is refused.
    import_id: Mapped[uuid.UUID | None]


class CustomField(Base):
    """A typed field an admin adds to persons, companies, deals or tickets.

    Values live in the record's ``custom`` JSON under ``key``, stored in a form that sorts
    right as text or number: dates as ``YYYY-MM-DD``, datetimes as UTC ISO 8601, money as
    ``{"amount": number, "currency": "EUR"}``, references as the record's id.
    """

    __tablename__ = "custom_fields"
    __table_args__ = (
        UniqueConstraint("record_type", "key", name="uq_custom_fields_record_type_key"),
    )

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True, autoincrement=True)
    record_type: Mapped[str] = mapped_column(String(20))
    key: Mapped[str] = mapped_column(String(60))
    label: Mapped[str] = mapped_column(String(200))
    type: Mapped[str] = mapped_column(String(20))
    # The choices of a single or multi select.
    options: Mapped[list[Any]] = mapped_column(default=list)
    # What a reference points at: person, company, deal or ticket.
    reference_type: Mapped[str | None] = mapped_column(String(20))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class PersonCompany(Base):
    """A person's link to a company, with the role they have there."""

    __tablename__ = "person_companies"
    __table_args__ = (Index("ix_person_companies_company", "company_id"),)

    person_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("persons.id"), primary_key=True)
    company_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("companies.id", ondelete="CASCADE"), primary_key=True
    )
    role: Mapped[str | None] = mapped_column(String(200))
    since_seq: Mapped[int | None] = mapped_column(BigInteger)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class Pipeline(Base):
    """A sales process: ordered stages, and how long a deal may sit still before it rots."""

    __tablename__ = "pipelines"

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=new_id)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    # An open deal with no activity for this many days is flagged as rotting (None: never).
    rotting_days: Mapped[int | None]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class Stage(Base):
    """One step of a pipeline, with the probability (percent) that a deal there is won."""

    __tablename__ = "pipeline_stages"
    __table_args__ = (
        UniqueConstraint("pipeline_id", "name", name="uq_pipeline_stages_pipeline_name"),
    )

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=new_id)
    pipeline_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("pipelines.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(200))
    position: Mapped[int]
    probability: Mapped[int]


class Deal(Base):
    """A sale in progress: in a pipeline's stage, open until won or lost."""

    __tablename__ = "deals"
    __table_args__ = (
        Index("ix_deals_owner", "owner_id", "created_at"),
        # A rep's deals in a stage, counted and listed.
        Index("ix_deals_owner_stage", "owner_id", "stage_id"),
        Index("ix_deals_created", "created_at", "id"),
        Index("ix_deals_stage_amount", "stage_id", "amount", "id"),
        # Biggest first: lists put nulls last in both directions, so on PostgreSQL the
        # ascending index read backwards (nulls first) cannot give this order; SQLite's
        # can (its nulls sort low), and it needs no second index.
        Index(
            "ix_deals_stage_amount_desc",
            "stage_id",
            text("amount DESC NULLS LAST"),
            text("id DESC"),
        ).ddl_if(dialect="postgresql"),
        Index("ix_deals_pipeline_stage", "pipeline_id", "stage_id"),
        Index("ix_deals_person", "person_id"),
        Index("ix_deals_company", "company_id"),
        Index("ix_deals_status_close", "status", "expected_close_date"),
        # Reports on the deals closed in a period (win rate, deal size, sales cycle).
        Index("ix_deals_status_closed_at", "status", "closed_at"),
    )

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=new_id)
    name: Mapped[str] = mapped_column(String(300))
    amount: Mapped[Decimal | None] = mapped_column(Numeric(20, 4))
    currency: Mapped[str | None] = mapped_column(String(3))
    expected_close_date: Mapped[date | None]
    owner_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    person_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("persons.id"))
    company_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("companies.id"))
    pipeline_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("pipelines.id"))
    stage_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("pipeline_stages.id"))
    # open, won, lost
    status: Mapped[str] = mapped_column(String(10), default="open")
    lost_reason: Mapped[str | None] = mapped_column(String(500))
    closed_at: Mapped[datetime | None]
    custom: Mapped[dict[str, Any]] = mapped_column(default=dict)
    # The last change or activity on the deal: rotting counts from here.
    last_activity_at: Mapped[datetime] = mapped_column(default=utcnow)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)
    # The deal's record id in the system it was imported from: the key imports upsert by.
    external_id: Mapped[str | None] = mapped_column(String(200), unique=True)
    # The import that last wrote this deal: an external id seen twice in one file is refused.
    import_id: Mapped[uuid.UUID | None]


class DealStageVisit(Base):
    """A deal's time in one stage: entered, and left (None while it is still there).

    A stay is *settled* when it ends: the deal moved on to a later stage of the same
    pipeline, moved back (or to another pipeline), or was won or lost in it. The deal
    service writes the outcome, the end and the length then, so the stage conversion
    report counts and measures stays as stored instead of working each one out again
    from the deal on every call. A won or lost deal's stay ends when it closed; reopening
    the deal unsettles it.
    """

    __tablename__ = "deal_stage_history"
    __table_args__ = (
        Index("ix_deal_stage_history_deal", "deal_id", "id"),
        # The stage conversion report reads the stays begun in a period (all it needs of
        # them from the index alone); over all time, the ended stays' counts and lengths
        # per stage and outcome, the open ones per stage, and each median at its position
        # in stage and length (or entry) order.
        Index(
            "ix_deal_stage_history_entered",
            "entered_at",
            "stage_id",
            "outcome",
            "seconds",
            "ended_at",
        ),
        Index("ix_deal_stage_history_outcome", "stage_id", "outcome", "seconds"),
        Index("ix_deal_stage_history_length", "stage_id", "seconds"),
        Index(
            "ix_deal_stage_history_open",
            "stage_id",
            "entered_at",
            sqlite_where=text("ended_at IS NULL"),
            postgresql_where=text("ended_at IS NULL"),
        ),
    )

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True, autoincrement=True)
    deal_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("deals.id", ondelete="CASCADE"))
    stage_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("pipeline_stages.id"))
    entered_at: Mapped[datetime] = mapped_column(default=utcnow)
    left_at: Mapped[datetime | None]
    # moved_on, moved_back, won or lost; None while the stay goes on.
    outcome: Mapped[str | None] = mapped_column(String(10))
    ended_at: Mapped[datetime | None]
    # Whole seconds from entered_at to ended_at.
    seconds: Mapped[int | None] = mapped_column(BigInteger)


class Activity(Base):
    """Work done with customers: a task, call, meeting, note or email, linked to any of a
    person, a company, a deal and a ticket.

    One table for every kind, with the columns only some kinds use left empty: the timeline
    and "my tasks" then read one table, and a new kind needs no join.
    """

    __tablename__ = "activities"
    __table_args__ = (
        Index("ix_activities_person", "person_id", "occurred_at"),
        # Partial: most activities have no company or ticket, and SQLite's statistics count
        # those nulls as one key that matches them all, so a count by company or ticket
        # looked no cheaper than reading the table (see ``activity_count_arms``).
        Index(
            "ix_activities_company",
            "company_id",
            "occurred_at",
            sqlite_where=text("company_id IS NOT NULL"),
            postgresql_where=text("company_id IS NOT NULL"),
        ),
        Index("ix_activities_deal", "deal_id", "occurred_at"),
        Index(
            "ix_activities_ticket",
            "ticket_id",
            "occurred_at",
            sqlite_where=text("ticket_id IS NOT NULL"),
            postgresql_where=text("ticket_id IS NOT NULL"),
        ),
        # "My tasks"; with kind and occurrence, also a rep's count of the activities they own.
        Index("ix_activities_owner_due", "owner_id", "done_at", "due_at", "kind", "occurred_at"),
        Index("ix_activities_reminders", "owner_id", "remind_at"),
        # The activity report reads what occurred, and the tasks completed, in a period.
        Index("ix_activities_occurred", "occurred_at"),
        Index("ix_activities_done", "done_at"),
        # A rep's count of the activities they see through the records they own: one range
        # per owner column, holding what the count reads and what the earlier ranges test.
        Index(
            "ix_activities_person_owner",
            "person_owner_id",
            "owner_id",
            "kind",
            "occurred_at",
            "done_at",
        ),
        Index(
            "ix_activities_company_owner",
            "company_owner_id",
            "owner_id",
            "person_owner_id",
            "kind",
            "occurred_at",
            "done_at",
        ),
        Index(
            "ix_activities_deal_owner",
            "deal_owner_id",
            "owner_id",
            "person_owner_id",
            "company_owner_id",
            "kind",
            "occurred_at",
            "done_at",
        ),
        UniqueConstraint("email_message_id", "person_id", name="uq_activities_email_person"),
    )

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=new_id)
    # task, call, meeting, note, email
    kind: Mapped[str] = mapped_column(String(10))
    subject: Mapped[str] = mapped_column(String(300), default="")
    body: Mapped[str] = mapped_column(Text, default="")
    person_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("persons.id"))
    company_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("companies.id"))
    deal_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("deals.id", ondelete="CASCADE"))
    ticket_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("tickets.id", ondelete="CASCADE")
    )
    # Whose it is: a task's assignee, or whoever logged the activity.
    owner_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    created_by: Mapped[str] = mapped_column(String(320))
    # When it happened (a task: when it was created); the timeline's order.
    occurred_at: Mapped[datetime] = mapped_column(default=utcnow)
    # Tasks.
    due_at: Mapped[datetime | None]
    remind_at: Mapped[datetime | None]
    reminder_dismissed_at: Mapped[datetime | None]
    priority: Mapped[str | None] = mapped_column(String(10))
    done_at: Mapped[datetime | None]
    # Calls and emails: inbound or outbound.
    direction: Mapped[str | None] = mapped_column(String(10))
    # Calls.
    duration_seconds: Mapped[int | None]
    outcome: Mapped[str | None] = mapped_column(String(40))
    # Meetings.
    starts_at: Mapped[datetime | None]
    ends_at: Mapped[datetime | None]
    # Meeting attendees, email addresses (from, to, cc), and the like.
    details: Mapped[dict[str, Any]] = mapped_column(default=dict)
    # The RFC 822 Message-ID of a logged email: the same message is logged once per person.
    email_message_id: Mapped[str | None] = mapped_column(String(500))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)
    # The owners of the linked person, company and deal: NO_OWNER for a linked record
    # without one, null for no link. Database triggers keep them (migration 0019); code
    # never writes them. They let a rep's activities be counted from indexes (see
    # ``patron.crm.access.activity_count_arms``).
    person_owner_id: Mapped[uuid.UUID | None]
    company_owner_id: Mapped[uuid.UUID | None]
    deal_owner_id: Mapped[uuid.UUID | None]


# The owner of activities that have none, in ActivityTally (a key column cannot be null);
# and of a linked record that has none, in an activity's person, company and deal owners.
NO_OWNER = uuid.UUID(int=0)


class ActivityTally(Base):
    """How many activities of a kind an owner logged on a day (UTC), and how many they
    completed on it: the activity report over whole days for callers who see every
    activity, instead of counting millions of rows on each call.

    Kept by database triggers on ``activities`` (migration 0018), so that every write
    counts, whatever makes it: the services, bulk statements, a deleted user's activities
    losing their owner. A migration that rebuilds ``activities`` (SQLite's batch mode) must
    make the triggers again; ``tests/crm/test_activity_tallies.py`` fails if it does not.
    """

    __tablename__ = "activity_tallies"

    owner_id: Mapped[uuid.UUID] = mapped_column(primary_key=True)  # NO_OWNER for none
    kind: Mapped[str] = mapped_column(String(10), primary_key=True)
    day: Mapped[date] = mapped_column(primary_key=True)
    logged: Mapped[int] = mapped_column(default=0)
    completed: Mapped[int] = mapped_column(default=0)


class SearchDocument(Base):
    """The text a contact or a company is found by (``patron.crm.search``): a person's
    names, emails, phones and company names; a company's name and domain.

    Indexed for substring search: on SQLite by the FTS5 tables ``search_fts_<kind>`` (trigram
    tokens, kept in step by triggers), on PostgreSQL by pg_trgm GIN indexes, one per kind
    (partial). Both are made by migrations (0014, 0016); the models know only this table.
    """

    __tablename__ = "search_documents"
    __table_args__ = (
        UniqueConstraint("record_type", "record_id", name="uq_search_documents_record"),
    )

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True, autoincrement=True)
    record_type: Mapped[str] = mapped_column(String(10))
    record_id: Mapped[uuid.UUID]
    document: Mapped[str] = mapped_column(Text, default="")
    # The record's owner, copied so that a restricted user's search asks one index for
    # their documents holding the words (PostgreSQL: GIN over owner and trigrams). Kept by
    # triggers on the records' tables (migration 0022), whatever code changes an owner.
    owner_id: Mapped[uuid.UUID | None]
