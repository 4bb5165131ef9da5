"""persons indexed by the log position that created them

Revision ID: 0026
Revises: 0025
Create Date: 2026-12-01 17:20:00

Two questions read the newest ``created_seq``: the processing loop, once a batch, to know
whether any of its messages could revive a person under its old id (only a replay can),
and record linkage, once a run, to know whether anyone new arrived. Without an index each
was a scan of every person; with it, one step down a B-tree, and linkage's "created since
the last run" reads only the new ones.
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0026"
down_revision: str | None = "0025"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index("ix_persons_created_seq", "persons", ["created_seq"])


def downgrade() -> None:
    op.drop_index("ix_persons_created_seq", table_name="persons")
