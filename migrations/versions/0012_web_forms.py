"""web forms: forms, their submissions, rate counters, IP salts; attribution on persons

Revision ID: 0012
Revises: 0011
Create Date: 2026-11-24 09:00:00

Forms are defined by admins and served at /f/<slug>. Every post is kept in
``form_submissions`` (accepted ones also enter the event log in the same transaction).
``form_rate_counters`` counts posts per client IP hash and per form in one-minute windows;
``form_ip_salts`` holds the daily secret IP hashes are made with. Persons get
``first_touch`` and ``latest_touch``, the campaign attribution of their form submissions.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0012"
down_revision: str | None = "0011"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

JSON = sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql")
WHEN = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "forms",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("slug", sa.String(length=80), nullable=False),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("submit_label", sa.String(length=100), nullable=False),
        sa.Column("fields", JSON, nullable=False),
        sa.Column("consents", JSON, nullable=False),
        sa.Column("success_message", sa.Text(), nullable=False),
        sa.Column("redirect_url", sa.String(length=2000), nullable=True),
        sa.Column("owner_id", sa.Uuid(), nullable=True),
        sa.Column("team_id", sa.Uuid(), nullable=True),
        sa.Column("enabled", sa.Boolean(), nullable=False),
        sa.Column("created_by", sa.String(length=320), nullable=False),
        sa.Column("created_at", WHEN, nullable=False),
        sa.Column("updated_at", WHEN, nullable=False),
        sa.ForeignKeyConstraint(
            ["owner_id"], ["users.id"], name=op.f("fk_forms_owner_id_users"), ondelete="SET NULL"
        ),
        sa.ForeignKeyConstraint(
            ["team_id"], ["teams.id"], name=op.f("fk_forms_team_id_teams"), ondelete="SET NULL"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_forms")),
        sa.UniqueConstraint("slug", name=op.f("uq_forms_slug")),
    )
    op.create_table(
        "form_submissions",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("form_id", sa.Uuid(), nullable=False),
        sa.Column("status", sa.String(length=10), nullable=False),
        sa.Column("reason", sa.String(length=20), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("error_field", sa.String(length=200), nullable=True),
        sa.Column("answers", JSON, nullable=False),
        sa.Column("consent", JSON, nullable=False),
        sa.Column("attribution", JSON, nullable=False),
        sa.Column("anonymous_id", sa.String(length=200), nullable=True),
        sa.Column("ip_hash", sa.String(length=64), nullable=True),
        sa.Column("user_agent", sa.String(length=500), nullable=True),
        sa.Column("person_id", sa.Uuid(), nullable=True),
        sa.Column("assign_team_id", sa.Uuid(), nullable=True),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("next_attempt_at", WHEN, nullable=True),
        sa.Column("processed_at", WHEN, nullable=True),
        sa.Column("created_at", WHEN, nullable=False),
        sa.ForeignKeyConstraint(
            ["form_id"], ["forms.id"], name=op.f("fk_form_submissions_form_id_forms")
        ),
        sa.ForeignKeyConstraint(
            ["assign_team_id"],
            ["teams.id"],
            name=op.f("fk_form_submissions_assign_team_id_teams"),
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_form_submissions")),
    )
    with op.batch_alter_table("form_submissions") as batch:
        batch.create_index("ix_form_submissions_form", ["form_id", "created_at"], unique=False)
        batch.create_index("ix_form_submissions_retry", ["status", "next_attempt_at"], unique=False)
        batch.create_index("ix_form_submissions_person", ["person_id"], unique=False)
    op.create_table(
        "form_rate_counters",
        sa.Column("key", sa.String(length=100), nullable=False),
        sa.Column("window", sa.BigInteger(), nullable=False),
        sa.Column("shard", sa.String(length=60), nullable=False),
        sa.Column("count", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("key", "window", "shard", name=op.f("pk_form_rate_counters")),
    )
    op.create_table(
        "form_ip_salts",
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("salt", sa.String(length=64), nullable=False),
        sa.PrimaryKeyConstraint("day", name=op.f("pk_form_ip_salts")),
    )
    with op.batch_alter_table("persons") as batch:
        batch.add_column(sa.Column("first_touch", JSON, nullable=True))
        batch.add_column(sa.Column("latest_touch", JSON, nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("persons") as batch:
        batch.drop_column("latest_touch")
        batch.drop_column("first_touch")
    op.drop_table("form_ip_salts")
    op.drop_table("form_rate_counters")
    with op.batch_alter_table("form_submissions") as batch:
        batch.drop_index("ix_form_submissions_person")
        batch.drop_index("ix_form_submissions_retry")
        batch.drop_index("ix_form_submissions_form")
    op.drop_table("form_submissions")
    op.drop_table("forms")
