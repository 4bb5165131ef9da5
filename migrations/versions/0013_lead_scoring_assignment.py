"""lead scoring and assignment: scores with overrides, scoring rules and trained models,
teams' and members' assignment settings, assignment rules, the assignment log

Revision ID: 0013
Revises: 0012
Create Date: 2026-11-24 10:00:00

Scores live in their own table (not in persons.traits, which rebuilds derive again from the
log), because overrides are human decisions. Member settings cascade with the membership.
The assignment log keeps user and team ids without foreign keys, so it outlives them.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0013"
down_revision: str | None = "0012"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "lead_scoring_models",
        sa.Column(
            "version",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("message", sa.Text(), nullable=False),
        sa.Column("won", sa.Integer(), nullable=False),
        sa.Column("lost", sa.Integer(), nullable=False),
        sa.Column(
            "parameters",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=False,
        ),
        sa.Column("trained_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("trained_by", sa.String(length=320), nullable=False),
        sa.PrimaryKeyConstraint("version", name=op.f("pk_lead_scoring_models")),
    )
    op.create_table(
        "lead_scoring_rules",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column(
            "conditions",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=False,
        ),
        sa.Column("points", sa.Double(), nullable=False),
        sa.Column("half_life_days", sa.Double(), nullable=True),
        sa.Column("active", sa.Boolean(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_lead_scoring_rules")),
        sa.UniqueConstraint("name", name=op.f("uq_lead_scoring_rules_name")),
    )
    op.create_table(
        "lead_scoring_state",
        sa.Column("name", sa.String(length=20), nullable=False),
        sa.Column("rules_version", sa.BigInteger(), nullable=False),
        sa.Column("scored_rules_version", sa.BigInteger(), nullable=False),
        sa.Column("scored_model_version", sa.BigInteger(), nullable=True),
        sa.Column("rescored_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_lead_scoring_state")),
    )
    op.create_table(
        "assignment_rules",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("team_id", sa.Uuid(), nullable=False),
        sa.Column("priority", sa.Integer(), nullable=False),
        sa.Column(
            "conditions",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=False,
        ),
        sa.Column("active", sa.Boolean(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["team_id"],
            ["teams.id"],
            name=op.f("fk_assignment_rules_team_id_teams"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_assignment_rules")),
        sa.UniqueConstraint("name", name=op.f("uq_assignment_rules_name")),
    )
    with op.batch_alter_table("assignment_rules", schema=None) as batch_op:
        batch_op.create_index("ix_assignment_rules_priority", ["priority", "id"], unique=False)

    op.create_table(
        "assignment_teams",
        sa.Column("team_id", sa.Uuid(), nullable=False),
        sa.Column("is_default", sa.Boolean(), nullable=False),
        sa.Column("clock", sa.Double(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["team_id"],
            ["teams.id"],
            name=op.f("fk_assignment_teams_team_id_teams"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("team_id", name=op.f("pk_assignment_teams")),
    )
    op.create_table(
        "assignment_members",
        sa.Column("team_id", sa.Uuid(), nullable=False),
        sa.Column("user_id", sa.Uuid(), nullable=False),
        sa.Column("capacity", sa.Integer(), nullable=True),
        sa.Column("weight", sa.Integer(), nullable=False),
        sa.Column("available", sa.Boolean(), nullable=False),
        sa.Column("turn", sa.Double(), nullable=False),
        sa.Column("assigned", sa.BigInteger(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["team_id", "user_id"],
            ["team_members.team_id", "team_members.user_id"],
            name=op.f("fk_assignment_members_team_id_team_members"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("team_id", "user_id", name=op.f("pk_assignment_members")),
    )
    op.create_table(
        "lead_assignments",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("person_id", sa.Uuid(), nullable=False),
        sa.Column("from_owner_id", sa.Uuid(), nullable=True),
        sa.Column("to_owner_id", sa.Uuid(), nullable=True),
        sa.Column("team_id", sa.Uuid(), nullable=True),
        sa.Column("rule_id", sa.BigInteger(), nullable=True),
        sa.Column("kind", sa.String(length=20), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("score", sa.Double(), nullable=True),
        sa.Column("actor_id", sa.Uuid(), nullable=True),
        sa.Column("actor_label", sa.String(length=320), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["person_id"],
            ["persons.id"],
            name=op.f("fk_lead_assignments_person_id_persons"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_lead_assignments")),
    )
    with op.batch_alter_table("lead_assignments", schema=None) as batch_op:
        batch_op.create_index(
            "ix_lead_assignments_from_owner", ["from_owner_id", "id"], unique=False
        )
        batch_op.create_index("ix_lead_assignments_person", ["person_id", "id"], unique=False)
        batch_op.create_index("ix_lead_assignments_team", ["team_id", "id"], unique=False)
        batch_op.create_index("ix_lead_assignments_to_owner", ["to_owner_id", "at"], unique=False)

    op.create_table(
        "lead_scores",
        sa.Column("person_id", sa.Uuid(), nullable=False),
        sa.Column("kind", sa.String(length=30), nullable=False),
        sa.Column("value", sa.Double(), nullable=True),
        sa.Column("automatic", sa.Double(), nullable=True),
        sa.Column(
            "explanation",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=False,
        ),
        sa.Column("model_version", sa.BigInteger(), nullable=True),
        sa.Column("computed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("override_value", sa.Double(), nullable=True),
        sa.Column("override_reason", sa.String(length=500), nullable=True),
        sa.Column("override_by", sa.String(length=320), nullable=True),
        sa.Column("override_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("stale", sa.Boolean(), nullable=False),
        sa.ForeignKeyConstraint(
            ["person_id"],
            ["persons.id"],
            name=op.f("fk_lead_scores_person_id_persons"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("person_id", "kind", name=op.f("pk_lead_scores")),
    )
    with op.batch_alter_table("lead_scores", schema=None) as batch_op:
        batch_op.create_index("ix_lead_scores_kind_value", ["kind", "value"], unique=False)
        batch_op.create_index("ix_lead_scores_stale", ["stale"], unique=False)


def downgrade() -> None:
    for table, indexes in (
        ("lead_scores", ("ix_lead_scores_stale", "ix_lead_scores_kind_value")),
        (
            "lead_assignments",
            (
                "ix_lead_assignments_to_owner",
                "ix_lead_assignments_team",
                "ix_lead_assignments_person",
                "ix_lead_assignments_from_owner",
            ),
        ),
        ("assignment_rules", ("ix_assignment_rules_priority",)),
    ):
        with op.batch_alter_table(table) as batch:
            for index in indexes:
                batch.drop_index(index)
    for table in (
        "lead_scores",
        "lead_assignments",
        "assignment_members",
        "assignment_teams",
        "assignment_rules",
        "lead_scoring_state",
        "lead_scoring_rules",
        "lead_scoring_models",
    ):
        op.drop_table(table)
