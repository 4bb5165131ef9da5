"""crm imports: deal external ids, the import that last wrote a record, dry-run counts

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-23 12:30:00

Deals get ``external_id`` (the record id in the system a file comes from), the natural key
a deal import upserts by. Companies and deals remember the import that last wrote them
(``import_id``), so a key that appears twice in one file is refused on its second line
without the import holding every key it has seen in memory. Imports count the records
they created and updated, and say whether they were a dry run.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("deals") as batch:
        batch.add_column(sa.Column("external_id", sa.String(length=200), nullable=True))
        batch.add_column(sa.Column("import_id", sa.Uuid(), nullable=True))
        batch.create_unique_constraint(op.f("uq_deals_external_id"), ["external_id"])
    with op.batch_alter_table("companies") as batch:
        batch.add_column(sa.Column("import_id", sa.Uuid(), nullable=True))
    with op.batch_alter_table("imports") as batch:
        batch.add_column(sa.Column("created", sa.Integer(), nullable=False, server_default="0"))
        batch.add_column(sa.Column("updated", sa.Integer(), nullable=False, server_default="0"))
        batch.add_column(
            sa.Column("dry_run", sa.Boolean(), nullable=False, server_default=sa.false())
        )


def downgrade() -> None:
    with op.batch_alter_table("imports") as batch:
        batch.drop_column("dry_run")
        batch.drop_column("updated")
        batch.drop_column("created")
    with op.batch_alter_table("companies") as batch:
        batch.drop_column("import_id")
    with op.batch_alter_table("deals") as batch:
        batch.drop_constraint(op.f("uq_deals_external_id"), type_="unique")
        batch.drop_column("import_id")
        batch.drop_column("external_id")
