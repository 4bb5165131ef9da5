"""tickets: SLA policies, tickets with their SLA clocks, comments; activities on tickets

Revision ID: 0009
Revises: 0008
Create Date: 2026-11-30 17:40:00

Tickets carry their SLA state in plain columns (due and warning instants, breached flags,
business minutes taken per target) so that filters and reports are simple queries, and
``sla_next_check_at`` so the SLA job reads only the tickets it has something to say about.
Activities may link to a ticket.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

JSON = sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql")


def upgrade() -> None:
    op.create_table(
        "sla_policies",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("priorities", JSON, nullable=False),
        sa.Column("channels", JSON, nullable=False),
        sa.Column("targets", JSON, nullable=False),
        sa.Column("warning_fraction", sa.Double(), nullable=False),
        sa.Column("timezone", sa.String(length=64), nullable=False),
        sa.Column("working_days", JSON, nullable=False),
        sa.Column("working_hours", JSON, nullable=False),
        sa.Column("day_hours", JSON, nullable=False),
        sa.Column("holidays", JSON, nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("deleted_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_sla_policies")),
    )
    op.create_table(
        "tickets",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("subject", sa.String(length=300), nullable=False),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("person_id", sa.Uuid(), nullable=True),
        sa.Column("company_id", sa.Uuid(), nullable=True),
        sa.Column("status", sa.String(length=10), nullable=False),
        sa.Column("priority", sa.String(length=10), nullable=False),
        sa.Column("channel", sa.String(length=10), nullable=False),
        sa.Column("assignee_id", sa.Uuid(), nullable=True),
        sa.Column("tags", JSON, nullable=False),
        sa.Column("custom", JSON, nullable=False),
        sa.Column("created_by", sa.String(length=320), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("first_responded_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("solved_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("closed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("sla_policy_id", sa.Uuid(), nullable=True),
        sa.Column("sla_warning_fraction", sa.Double(), nullable=True),
        sa.Column("sla_clock_seconds", sa.Double(), nullable=False),
        sa.Column("sla_clock_since", sa.DateTime(timezone=True), nullable=True),
        sa.Column("sla_next_check_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("first_response_target", sa.Integer(), nullable=True),
        sa.Column("first_response_due_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("first_response_warn_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("first_response_breached", sa.Boolean(), nullable=False),
        sa.Column("first_response_minutes", sa.Double(), nullable=True),
        sa.Column("first_response_calendar_minutes", sa.Double(), nullable=True),
        sa.Column("first_response_warning_sent_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("first_response_breach_sent_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("resolution_target", sa.Integer(), nullable=True),
        sa.Column("resolution_due_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("resolution_warn_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("resolution_breached", sa.Boolean(), nullable=False),
        sa.Column("resolution_minutes", sa.Double(), nullable=True),
        sa.Column("resolution_calendar_minutes", sa.Double(), nullable=True),
        sa.Column("resolution_warning_sent_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("resolution_breach_sent_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["assignee_id"],
            ["users.id"],
            name=op.f("fk_tickets_assignee_id_users"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["company_id"], ["companies.id"], name=op.f("fk_tickets_company_id_companies")
        ),
        sa.ForeignKeyConstraint(
            ["person_id"], ["persons.id"], name=op.f("fk_tickets_person_id_persons")
        ),
        sa.ForeignKeyConstraint(
            ["sla_policy_id"],
            ["sla_policies.id"],
            name=op.f("fk_tickets_sla_policy_id_sla_policies"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_tickets")),
    )
    with op.batch_alter_table("tickets", schema=None) as batch_op:
        batch_op.create_index("ix_tickets_assignee_status", ["assignee_id", "status"], unique=False)
        batch_op.create_index("ix_tickets_company", ["company_id"], unique=False)
        batch_op.create_index(
            "ix_tickets_first_response_due", ["first_response_due_at"], unique=False
        )
        batch_op.create_index("ix_tickets_person", ["person_id"], unique=False)
        batch_op.create_index("ix_tickets_resolution_due", ["resolution_due_at"], unique=False)
        batch_op.create_index("ix_tickets_sla_next_check", ["sla_next_check_at"], unique=False)
        batch_op.create_index("ix_tickets_status_created", ["status", "created_at"], unique=False)

    op.create_table(
        "ticket_comments",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("ticket_id", sa.Uuid(), nullable=False),
        sa.Column("body", sa.Text(), nullable=False),
        sa.Column("public", sa.Boolean(), nullable=False),
        sa.Column("from_requester", sa.Boolean(), nullable=False),
        sa.Column("author_id", sa.Uuid(), nullable=True),
        sa.Column("author_label", sa.String(length=320), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["author_id"],
            ["users.id"],
            name=op.f("fk_ticket_comments_author_id_users"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["ticket_id"],
            ["tickets.id"],
            name=op.f("fk_ticket_comments_ticket_id_tickets"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_ticket_comments")),
    )
    with op.batch_alter_table("ticket_comments", schema=None) as batch_op:
        batch_op.create_index(
            "ix_ticket_comments_ticket", ["ticket_id", "created_at"], unique=False
        )

    with op.batch_alter_table("activities", schema=None) as batch_op:
        batch_op.add_column(sa.Column("ticket_id", sa.Uuid(), nullable=True))
        batch_op.create_index("ix_activities_ticket", ["ticket_id", "occurred_at"], unique=False)
        batch_op.create_foreign_key(
            batch_op.f("fk_activities_ticket_id_tickets"),
            "tickets",
            ["ticket_id"],
            ["id"],
            ondelete="CASCADE",
        )


def downgrade() -> None:
    with op.batch_alter_table("activities", schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f("fk_activities_ticket_id_tickets"), type_="foreignkey")
        batch_op.drop_index("ix_activities_ticket")
        batch_op.drop_column("ticket_id")

    with op.batch_alter_table("ticket_comments", schema=None) as batch_op:
        batch_op.drop_index("ix_ticket_comments_ticket")

    op.drop_table("ticket_comments")
    with op.batch_alter_table("tickets", schema=None) as batch_op:
        batch_op.drop_index("ix_tickets_status_created")
        batch_op.drop_index("ix_tickets_sla_next_check")
        batch_op.drop_index("ix_tickets_resolution_due")
        batch_op.drop_index("ix_tickets_person")
        batch_op.drop_index("ix_tickets_first_response_due")
        batch_op.drop_index("ix_tickets_company")
        batch_op.drop_index("ix_tickets_assignee_status")

    op.drop_table("tickets")
    op.drop_table("sla_policies")
