"""The identity graph: persons, their identifiers, the events they own, merges and rules.

Everything here except the rules, the blocked values and the separations recorded by
unmerges is derived from the event log, and ``patron rebuild`` can derive it again.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import BigInteger, ForeignKey, Index, String, Text, UniqueConstraint, text
from sqlalchemy.orm import Mapped, mapped_column

from patron.core.clock import utcnow
from patron.core.dialect import json_text
from patron.core.models import Base, BigIntPK


class Person(Base):
    """One customer. A merged person stays as a pointer (``merged_into``) to its survivor."""

    __tablename__ = "persons"
    __table_args__ = (
        # Only merged persons are in it: ``merged_into IS NULL`` (every list) must not
        # look selective to the planner, and the pointers are what lookups need.
        Index(
            "ix_persons_merged_into",
            "merged_into",
            sqlite_where=text("merged_into IS NOT NULL"),
            postgresql_where=text("merged_into IS NOT NULL"),
        ),
        # A sales user's contacts, newest first; and everyone's (the default list order).
        Index("ix_persons_owner", "owner_id", "created_at", "id"),
        # A rep's contacts, and those at a lifecycle stage ("my leads"), counted from the
        # index alone: it holds what every contact list tests.
        Index(
            "ix_persons_owner_stage", "owner_id", "lifecycle_stage", "merged_into", "archived_at"
        ),
        Index("ix_persons_created", "created_at", "id"),
        Index("ix_persons_lifecycle_stage", "lifecycle_stage"),
        # The newest person's log position: processing asks it once a batch (can a message
        # of it revive a person?), record linkage once a run (anyone new?).
        Index("ix_persons_created_seq", "created_seq"),
    )

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    # The log position of the message that created the person: the older person survives.
    created_seq: Mapped[int] = mapped_column(BigInteger)
    merged_into: Mapped[uuid.UUID | None]
    traits: Mapped[dict[str, Any]] = mapped_column(default=dict)
    computed: Mapped[dict[str, Any]] = mapped_column(default=dict)
    first_seen: Mapped[datetime | None]
    last_seen: Mapped[datetime | None]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)
    # CRM fields, kept by patron.crm. People set them, not the log, so resets, replays and
    # rebuilds leave them alone; a merge fills the survivor's empty ones from the merged.
    owner_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    lifecycle_stage: Mapped[str | None] = mapped_column(String(40))
    lead_status: Mapped[str | None] = mapped_column(String(40))
    tags: Mapped[list[Any]] = mapped_column(default=list)
    custom: Mapped[dict[str, Any]] = mapped_column(default=dict)
    archived_at: Mapped[datetime | None]
    # Campaign attribution from web forms (utm_*, referrer, landing_page, at), kept by
    # patron.crm.forms like the CRM fields: the first touch is never overwritten.
    first_touch: Mapped[dict[str, Any] | None]
    latest_touch: Mapped[dict[str, Any] | None]


# Contacts sorted (and filtered) by name: the expression the list sorts by, indexed.
Index(
    "ix_persons_name",
    json_text(Person.__table__.c.traits, "name"),
    Person.__table__.c.id,
)


class Identity(Base):
    """One normalised identifier value and the person it resolves to."""

    __tablename__ = "identities"
    __table_args__ = (
        UniqueConstraint("kind", "value", name="uq_identities_kind_value"),
        Index("ix_identities_person", "person_id"),
    )

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True, autoincrement=True)
    kind: Mapped[str] = mapped_column(String(60))
    value: Mapped[str] = mapped_column(String(320))
    person_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("persons.id"))
    first_seq: Mapped[int] = mapped_column(BigInteger)
    # How many other persons were merged in through this value (the super-node guard).
    joins: Mapped[int] = mapped_column(default=0)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class PersonEvent(Base):
    """Which person owns each event of the log (the log itself is never rewritten)."""

    __tablename__ = "person_events"
    __table_args__ = (Index("ix_person_events_person_seq", "person_id", "seq"),)

    seq: Mapped[int] = mapped_column(
        BigInteger, ForeignKey("events.seq", ondelete="CASCADE"), primary_key=True
    )
    person_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("persons.id"))


class Merge(Base):
    """One merge: who survived, who was merged, what linked them, and whether it was undone."""

    __tablename__ = "merges"
    __table_args__ = (
        Index("ix_merges_survivor", "survivor_id"),
        Index("ix_merges_merged", "merged_id"),
    )

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True, autoincrement=True)
    survivor_id: Mapped[uuid.UUID]
    merged_id: Mapped[uuid.UUID]
    # message (an identifier shared by a message), alias, manual, match
    reason: Mapped[str] = mapped_column(String(20))
    seq: Mapped[int | None] = mapped_column(BigInteger)
    # The identifiers that linked the two, and anything else that explains the merge.
    evidence: Mapped[dict[str, Any]] = mapped_column(default=dict)
    # Each side's identifiers at the time of the merge ("kind:value" strings).
    survivor_identities: Mapped[list[Any]] = mapped_column(default=list)
    merged_identities: Mapped[list[Any]] = mapped_column(default=list)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    undone_at: Mapped[datetime | None]
    undone_by: Mapped[str | None] = mapped_column(String(320))


class Separation(Base):
    """A human decision that two sets of identifiers belong to different persons.

    Written by an unmerge; the resolver never merges a person holding one side with a
    person holding the other, live or in a rebuild.
    """

    __tablename__ = "identity_separations"

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True, autoincrement=True)
    merge_id: Mapped[int | None] = mapped_column(BigInteger)
    left: Mapped[list[Any]] = mapped_column(default=list)
    right: Mapped[list[Any]] = mapped_column(default=list)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    created_by: Mapped[str] = mapped_column(String(320), default="system")


class IdentityRule(Base):
    """How one kind of identifier behaves: its limit per person and its priority.

    ``max_per_person`` None means unlimited. A lower ``priority`` number wins: when a message
    would break a limit, its identifier with the highest number is dropped first.
    ``trait`` names a trait whose value is an identifier of this kind (external ids and
    custom kinds an admin declares).
    """

    __tablename__ = "identity_rules"

    kind: Mapped[str] = mapped_column(String(60), primary_key=True)
    max_per_person: Mapped[int | None]
    priority: Mapped[int] = mapped_column(default=50)
    trait: Mapped[str | None] = mapped_column(String(200))
    builtin: Mapped[bool] = mapped_column(default=False)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)


class BlockedValue(Base):
    """An identifier value that never links anything (exact, or a regular expression).

    ``status`` is ``active`` for an admin's entry and ``review`` for a value the super-node
    guard blocked on its own, waiting for someone to confirm or release it.
    """

    __tablename__ = "blocked_values"

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True, autoincrement=True)
    kind: Mapped[str | None] = mapped_column(String(60))
    pattern: Mapped[str] = mapped_column(String(320))
    is_regex: Mapped[bool] = mapped_column(default=False)
    origin: Mapped[str] = mapped_column(String(20), default="admin")
    status: Mapped[str] = mapped_column(String(20), default="active")
    reason: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    created_by: Mapped[str] = mapped_column(String(320), default="system")


class IdentityConflict(Base):
    """An identifier a message carried but that was not used to link, and why."""

    __tablename__ = "identity_conflicts"
    __table_args__ = (Index("ix_identity_conflicts_person", "person_id"),)

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True, autoincrement=True)
    seq: Mapped[int] = mapped_column(BigInteger)
    person_id: Mapped[uuid.UUID | None]
    kind: Mapped[str] = mapped_column(String(60))
    value: Mapped[str] = mapped_column(String(320))
    # limit, separation, supernode
    reason: Mapped[str] = mapped_column(String(20))
    detail: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class MatchRun(Base):
    """One run of the record-linkage matcher, and how far into the persons it got."""

    __tablename__ = "match_runs"

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True, autoincrement=True)
    mode: Mapped[str] = mapped_column(String(20))  # full, or incremental (new persons only)
    started_at: Mapped[datetime] = mapped_column(default=utcnow)
    finished_at: Mapped[datetime | None]
    # Persons created at or before this log position were compared by this run.
    high_water: Mapped[int] = mapped_column(BigInteger, default=0)
    compared: Mapped[int] = mapped_column(default=0)
    pairs: Mapped[int] = mapped_column(default=0)
    merged: Mapped[int] = mapped_column(default=0)
    queued: Mapped[int] = mapped_column(default=0)


class MatchCandidate(Base):
    """A pair of persons the matcher found alike, with per-field evidence.

    ``status``: ``pending`` (waiting for a person), ``accepted`` or ``merged`` (merged, by a
    person or automatically), ``rejected`` (never proposed again).
    """

    __tablename__ = "match_candidates"
    __table_args__ = (
        UniqueConstraint("left_id", "right_id", name="uq_match_candidates_pair"),
        Index("ix_match_candidates_status", "status", "id"),
    )

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True, autoincrement=True)
    run_id: Mapped[int] = mapped_column(BigInteger)
    left_id: Mapped[uuid.UUID]
    right_id: Mapped[uuid.UUID]
    match_probability: Mapped[float]
    match_weight: Mapped[float]
    evidence: Mapped[list[Any]] = mapped_column(default=list)
    status: Mapped[str] = mapped_column(String(20), default="pending")
    merge_id: Mapped[int | None] = mapped_column(BigInteger)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    decided_at: Mapped[datetime | None]
    decided_by: Mapped[str | None] = mapped_column(String(320))
