"""Trait values with their lineage, survivorship rules, and computed trait definitions."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import BigInteger, ForeignKey, Index, String
from sqlalchemy.orm import Mapped, mapped_column

from patron.core.clock import utcnow
from patron.core.models import Base, BigIntPK, JSONType

SURVIVORSHIP_RULES = ("most_recent", "first_seen", "source_priority", "most_frequent", "non_empty")
COMPUTED_FUNCTIONS = (
    "count",
    "sum",
    "min",
    "max",
    "first",
    "last",
    "unique_count",
    "most_frequent",
)


class TraitValue(Base):
    """One distinct value a person's trait has had, where it came from, when, how often."""

    __tablename__ = "trait_values"
    __table_args__ = (Index("ix_trait_values_person", "person_id", "name"),)

    person_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("persons.id"), primary_key=True)
    name: Mapped[str] = mapped_column(String(200), primary_key=True)
    value_hash: Mapped[str] = mapped_column(String(32), primary_key=True)
    value: Mapped[Any] = mapped_column(JSONType, nullable=True)
    source_id: Mapped[uuid.UUID | None]
    first_seen: Mapped[datetime]
    last_seen: Mapped[datetime]
    count: Mapped[int] = mapped_column(default=1)
    last_seq: Mapped[int] = mapped_column(BigInteger)


class TraitRule(Base):
    """Which of a trait's values a profile shows (``most_recent`` when a trait has no rule)."""

    __tablename__ = "trait_rules"

    name: Mapped[str] = mapped_column(String(200), primary_key=True)
    rule: Mapped[str] = mapped_column(String(20))
    # For source_priority: source ids, most trusted first.
    source_priority: Mapped[list[Any]] = mapped_column(default=list)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)


class ComputedTrait(Base):
    """A trait computed from events: a function of an event (or of one of its properties)."""

    __tablename__ = "computed_traits"

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(100), unique=True)
    function: Mapped[str] = mapped_column(String(20))
    # The event name it counts (None: every event) and the property it aggregates.
    event: Mapped[str | None] = mapped_column(String(200))
    property: Mapped[str | None] = mapped_column(String(200))
    window_days: Mapped[int | None]
    builtin: Mapped[bool] = mapped_column(default=False)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class ComputedState(Base):
    """The running state of one computed trait for one person (what makes updates incremental)."""

    __tablename__ = "computed_states"

    person_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("persons.id"), primary_key=True)
    trait_id: Mapped[int] = mapped_column(
        BigInteger, ForeignKey("computed_traits.id", ondelete="CASCADE"), primary_key=True
    )
    state: Mapped[dict[str, Any]] = mapped_column(default=dict)
