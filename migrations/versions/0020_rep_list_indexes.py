"""a rep's contacts by lifecycle stage and deals by stage, by owner first

Revision ID: 0020
Revises: 0019
Create Date: 2026-12-01 08:00:00

A sales rep's lists are read in parts (their own records, then what is shared with them),
so the part they own is a plain owner test an index can serve. Their most used views are
their contacts at a lifecycle stage ("my leads") and their deals in a stage; counting
those (up to 1,000) read the contacts of every owner until a thousand of the rep's were
found, 100,000 rows at 1,000,000 persons, where an admin's count reads 1,000; and a rep's
count of all their contacts read each one's row to see that it is neither merged nor
archived. These two indexes find the rep's rows of a stage directly, and the one on
persons holds what the lists test, so that a count reads the index alone.
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0020"
down_revision: str | None = "0019"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index(
        "ix_persons_owner_stage",
        "persons",
        ["owner_id", "lifecycle_stage", "merged_into", "archived_at"],
    )
    op.create_index("ix_deals_owner_stage", "deals", ["owner_id", "stage_id"])


def downgrade() -> None:
    op.drop_index("ix_deals_owner_stage", table_name="deals")
    op.drop_index("ix_persons_owner_stage", table_name="persons")
