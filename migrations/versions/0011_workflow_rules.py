"""workflow rules and their runs

Revision ID: 0011
Revises: 0010
Create Date: 2026-11-24 09:00:00

``workflow_rules``: a trigger, conditions and actions an admin defined, and the secret its
webhooks are signed with (deleted rules stay, with ``deleted_at``, for their runs).
``workflow_runs``: one per rule and triggering change (unique ``rule_id, trigger_key``),
written in the change's transaction; the state of each action, attempts, the next attempt
and the worker's lease.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0011"
down_revision: str | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

JSON = sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql")


def upgrade() -> None:
    op.create_table(
        "workflow_rules",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("enabled", sa.Boolean(), nullable=False),
        sa.Column("trigger_type", sa.String(length=30), nullable=False),
        sa.Column("record_type", sa.String(length=20), nullable=False),
        sa.Column("trigger", JSON, nullable=False),
        sa.Column("conditions", JSON, nullable=False),
        sa.Column("actions", JSON, nullable=False),
        sa.Column("webhook_secret", sa.String(length=100), nullable=False),
        sa.Column("created_by", sa.String(length=320), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("deleted_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_workflow_rules")),
    )
    op.create_table(
        "workflow_runs",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("rule_id", sa.Uuid(), nullable=False),
        sa.Column("trigger_key", sa.String(length=64), nullable=False),
        sa.Column("record_type", sa.String(length=20), nullable=False),
        sa.Column("record_id", sa.Uuid(), nullable=False),
        sa.Column("change", JSON, nullable=False),
        sa.Column("rule_name", sa.String(length=200), nullable=False),
        sa.Column("actions", JSON, nullable=False),
        sa.Column("depth", sa.Integer(), nullable=False),
        sa.Column("parent_run_id", sa.BigInteger(), nullable=True),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("next_attempt_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("claim", sa.Uuid(), nullable=True),
        sa.Column("locked_until", sa.DateTime(timezone=True), nullable=True),
        sa.Column("steps", JSON, nullable=False),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["rule_id"],
            ["workflow_rules.id"],
            name=op.f("fk_workflow_runs_rule_id_workflow_rules"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_workflow_runs")),
        sa.UniqueConstraint("rule_id", "trigger_key", name="uq_workflow_runs_rule_trigger"),
    )
    with op.batch_alter_table("workflow_runs") as batch:
        batch.create_index("ix_workflow_runs_due", ["status", "next_attempt_at"], unique=False)
        batch.create_index("ix_workflow_runs_record", ["record_type", "record_id"], unique=False)
        batch.create_index("ix_workflow_runs_rule", ["rule_id", "id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("workflow_runs") as batch:
        batch.drop_index("ix_workflow_runs_rule")
        batch.drop_index("ix_workflow_runs_record")
        batch.drop_index("ix_workflow_runs_due")
    op.drop_table("workflow_runs")
    op.drop_table("workflow_rules")
