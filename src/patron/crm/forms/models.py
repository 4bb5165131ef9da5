"""Forms, their submissions, and the counters that rate-limit them."""

from __future__ import annotations

import uuid
from datetime import date, datetime
from typing import Any

from sqlalchemy import BigInteger, ForeignKey, Index, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from patron.core.clock import utcnow
from patron.core.ids import new_id
from patron.core.models import Base


class Form(Base):
    """A web form an admin defines: its fields and where their answers go, the consents it
    asks for, what a visitor sees after sending it, and who gets the leads it makes.

    ``fields`` and ``consents`` are lists of JSON objects, checked by
    :mod:`patron.crm.forms.definitions` on every write. Forms are disabled, never deleted,
    so their submissions always have a form.
    """

    __tablename__ = "forms"

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=new_id)
    name: Mapped[str] = mapped_column(String(200))
    # The public URL key: /f/<slug>.
    slug: Mapped[str] = mapped_column(String(80), unique=True)
    description: Mapped[str] = mapped_column(Text, default="")
    submit_label: Mapped[str] = mapped_column(String(100), default="Submit")
    fields: Mapped[list[Any]] = mapped_column(default=list)
    consents: Mapped[list[Any]] = mapped_column(default=list)
    success_message: Mapped[str] = mapped_column(Text, default="")
    redirect_url: Mapped[str | None] = mapped_column(String(2000))
    # The lead owner rule: a fixed owner, or a team for the assignment engine, or neither.
    owner_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    team_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("teams.id", ondelete="SET NULL"))
    enabled: Mapped[bool] = mapped_column(default=True)
    created_by: Mapped[str] = mapped_column(String(320), default="system")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)


class FormSubmission(Base):
    """One post to a form, kept whatever became of it.

    ``status``: ``accepted`` (stored with its identify and track in the event log; the lead
    steps run once processing resolved the person: ``processed_at``), ``failed`` (accepted,
    but the lead steps kept failing until the attempts ran out) or ``rejected`` (never
    entered the log; ``reason`` says why: honeypot, rate_limited, invalid, too_large,
    form_disabled).
    """

    __tablename__ = "form_submissions"
    __table_args__ = (
        Index("ix_form_submissions_form", "form_id", "created_at"),
        Index("ix_form_submissions_retry", "status", "next_attempt_at"),
        Index("ix_form_submissions_person", "person_id"),
    )

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=new_id)
    form_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("forms.id"))
    status: Mapped[str] = mapped_column(String(10))
    reason: Mapped[str | None] = mapped_column(String(20))
    error: Mapped[str | None] = mapped_column(Text)
    error_field: Mapped[str | None] = mapped_column(String(200))
    # Accepted: the checked answers by field key. Rejected: what was posted, capped.
    answers: Mapped[dict[str, Any]] = mapped_column(default=dict)
    # Consent purpose -> given (bool).
    consent: Mapped[dict[str, Any]] = mapped_column(default=dict)
    # utm_source, utm_medium, utm_campaign, utm_term, utm_content, referrer, landing_page.
    attribution: Mapped[dict[str, Any]] = mapped_column(default=dict)
    # The browser snippet's anonymous id of the visitor, when the page had one.
    anonymous_id: Mapped[str | None] = mapped_column(String(200))
    # HMAC of the client IP under a salt that changes every day (the IP is not kept here).
    ip_hash: Mapped[str | None] = mapped_column(String(64))
    user_agent: Mapped[str | None] = mapped_column(String(500))
    # The person processing resolved the submission to (no foreign key: a rebuild may
    # remove and re-create persons, always under the same id).
    person_id: Mapped[uuid.UUID | None]
    # The form's team rule, for the assignment engine to pick an owner in that team.
    assign_team_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("teams.id", ondelete="SET NULL")
    )
    attempts: Mapped[int] = mapped_column(default=0)
    next_attempt_at: Mapped[datetime | None]
    processed_at: Mapped[datetime | None]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class FormRateCounter(Base):
    """How many submissions a key (``ip:<hash>`` or ``form:<id>``) made in one minute.

    Each server thread that writes counts in a shard of its own, so concurrent transactions
    never wait on (or deadlock over) the same row; the count is the sum over shards.
    """

    __tablename__ = "form_rate_counters"

    key: Mapped[str] = mapped_column(String(100), primary_key=True)
    # Minutes since the epoch.
    window: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    shard: Mapped[str] = mapped_column(String(60), primary_key=True)
    count: Mapped[int] = mapped_column(default=0)


class FormIpSalt(Base):
    """The secret a day's IP hashes are made with; deleted after two days, so that old
    hashes can no longer be traced back to an address."""

    __tablename__ = "form_ip_salts"

    day: Mapped[date] = mapped_column(primary_key=True)
    salt: Mapped[str] = mapped_column(String(64))
