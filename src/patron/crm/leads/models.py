"""Tables of lead scoring (scores, rules, trained models) and lead assignment (teams' and
members' settings, assignment rules, the assignment log)."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    ForeignKey,
    ForeignKeyConstraint,
    Index,
    ScalarSelect,
    String,
    Text,
    select,
)
from sqlalchemy.orm import Mapped, mapped_column

from patron.core.clock import utcnow
from patron.core.models import Base, BigIntPK
from patron.identity.models import Person

LEAD_SCORE = "lead_score"
PREDICTIVE_SCORE = "predictive_lead_score"
SCORE_KINDS = (LEAD_SCORE, PREDICTIVE_SCORE)


class LeadScore(Base):
    """One score of one person: the automatic value with its explanation, and a person's
    override of it.

    Kept apart from ``Person.traits``, which are derived from the log and wiped by rebuilds,
    while overrides are human decisions. ``value`` is what everyone sees (the override while
    there is one, else the automatic value): lists filter and sort on it.
    """

    __tablename__ = "lead_scores"
    __table_args__ = (
        Index("ix_lead_scores_kind_value", "kind", "value"),
        Index("ix_lead_scores_stale", "stale"),
    )

    person_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("persons.id", ondelete="CASCADE"), primary_key=True
    )
    kind: Mapped[str] = mapped_column(String(30), primary_key=True)
    value: Mapped[float | None]
    automatic: Mapped[float | None]
    # Rule score: the rules that matched and what each added; predictive: the features
    # that pushed the probability up or down most.
    explanation: Mapped[dict[str, Any]] = mapped_column(default=dict)
    model_version: Mapped[int | None] = mapped_column(BigInteger)
    computed_at: Mapped[datetime | None]
    override_value: Mapped[float | None]
    override_reason: Mapped[str | None] = mapped_column(String(500))
    override_by: Mapped[str | None] = mapped_column(String(320))
    override_at: Mapped[datetime | None]
    # Set when the person was split or replayed (an unmerge): the next refresh recomputes.
    stale: Mapped[bool] = mapped_column(default=False)


def score_column(kind: str) -> ScalarSelect[float | None]:
    """The visible score of a kind as a column of a query over :class:`Person`."""
    return (
        select(LeadScore.value)
        .where(LeadScore.person_id == Person.id, LeadScore.kind == kind)
        .correlate(Person)
        .scalar_subquery()
    )


class ScoringRule(Base):
    """Points a person earns (or loses) while all the conditions hold; optionally halving
    every ``half_life_days`` since the time of the evidence (an event, a trait, a visit)."""

    __tablename__ = "lead_scoring_rules"

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    conditions: Mapped[list[Any]] = mapped_column(default=list)
    points: Mapped[float]
    half_life_days: Mapped[float | None]
    active: Mapped[bool] = mapped_column(default=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)


class ScoringModel(Base):
    """One training of the predictive model. ``status`` is ``trained`` or ``insufficient``
    (too little history: nothing is scored with it); the latest trained one is in use."""

    __tablename__ = "lead_scoring_models"

    version: Mapped[int] = mapped_column(BigIntPK, primary_key=True, autoincrement=True)
    status: Mapped[str] = mapped_column(String(20))
    message: Mapped[str] = mapped_column(Text, default="")
    won: Mapped[int] = mapped_column(default=0)
    lost: Mapped[int] = mapped_column(default=0)
    # The feature spec and the per-value counts among won and lost persons.
    parameters: Mapped[dict[str, Any]] = mapped_column(default=dict)
    trained_at: Mapped[datetime] = mapped_column(default=utcnow)
    trained_by: Mapped[str] = mapped_column(String(320), default="system")


class ScoringState(Base):
    """What the last full rescore covered, so the refresh job knows when another is due:
    after rules change, after a retrain, and daily for decay."""

    __tablename__ = "lead_scoring_state"

    name: Mapped[str] = mapped_column(String(20), primary_key=True)
    rules_version: Mapped[int] = mapped_column(BigInteger, default=0)
    scored_rules_version: Mapped[int] = mapped_column(BigInteger, default=0)
    scored_model_version: Mapped[int | None] = mapped_column(BigInteger)
    rescored_at: Mapped[datetime | None]


class AssignmentTeam(Base):
    """A team's part in lead assignment: whether it is the default team, and the clock of
    its weighted round robin (locked while assigning, on PostgreSQL)."""

    __tablename__ = "assignment_teams"

    team_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("teams.id", ondelete="CASCADE"), primary_key=True
    )
    is_default: Mapped[bool] = mapped_column(default=False)
    # Stride scheduling's virtual time: the pass of the member picked last.
    clock: Mapped[float] = mapped_column(default=0.0)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)


class AssignmentMember(Base):
    """A team member's capacity (leads per rolling 30 days; None: unlimited), weight,
    availability, and place in the team's round robin. Gone with the membership."""

    __tablename__ = "assignment_members"
    __table_args__ = (
        ForeignKeyConstraint(
            ["team_id", "user_id"],
            ["team_members.team_id", "team_members.user_id"],
            ondelete="CASCADE",
        ),
    )

    team_id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    user_id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    capacity: Mapped[int | None]
    weight: Mapped[int] = mapped_column(default=1)
    available: Mapped[bool] = mapped_column(default=True)
    # Stride scheduling: the lowest pass gets the next lead, and picking adds 1/weight.
    turn: Mapped[float] = mapped_column(default=0.0)
    assigned: Mapped[int] = mapped_column(BigInteger, default=0)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)


class AssignmentRule(Base):
    """Leads matching every condition go to ``team_id``; the lowest ``priority`` wins."""

    __tablename__ = "assignment_rules"
    __table_args__ = (Index("ix_assignment_rules_priority", "priority", "id"),)

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    team_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("teams.id", ondelete="CASCADE"))
    priority: Mapped[int]
    conditions: Mapped[list[Any]] = mapped_column(default=list)
    active: Mapped[bool] = mapped_column(default=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)


class LeadAssignment(Base):
    """One assignment or reassignment of a lead, with why. Users and teams are kept as ids
    (no foreign keys), so the history outlives them."""

    __tablename__ = "lead_assignments"
    __table_args__ = (
        Index("ix_lead_assignments_person", "person_id", "id"),
        Index("ix_lead_assignments_to_owner", "to_owner_id", "at"),
        Index("ix_lead_assignments_from_owner", "from_owner_id", "id"),
        Index("ix_lead_assignments_team", "team_id", "id"),
    )

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True, autoincrement=True)
    person_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("persons.id", ondelete="CASCADE"))
    from_owner_id: Mapped[uuid.UUID | None]
    to_owner_id: Mapped[uuid.UUID | None]
    team_id: Mapped[uuid.UUID | None]
    rule_id: Mapped[int | None] = mapped_column(BigInteger)
    # assign (a new lead), rebalance (moved by a manager's rebalance)
    kind: Mapped[str] = mapped_column(String(20))
    reason: Mapped[str] = mapped_column(Text)
    score: Mapped[float | None]
    actor_id: Mapped[uuid.UUID | None]
    actor_label: Mapped[str] = mapped_column(String(320))
    at: Mapped[datetime] = mapped_column(default=utcnow)
