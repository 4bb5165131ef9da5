"""stage stays store how they ended, when, and how long they lasted

Revision ID: 0017
Revises: 0016
Create Date: 2026-12-01 04:40:00

The stage conversion report worked out every stay's outcome and length from the stay and
its deal on each call: at 500,000 stays, the join and the expressions alone took about
0.35 s on PostgreSQL. The deal service now writes the outcome (moved_on, moved_back, won,
lost), the end and the length in whole seconds when a stay ends, and clears them when a
deal is reopened; existing stays get them here, by the rule the report applied.
``moved_forward`` is now the outcome ``moved_on`` and goes.

Over all time (an admin's usual view), the report reads counts, lengths and medians from
three new indexes instead of measuring and sorting every stay; over a period, the index
by entry holds all it reads of each stay.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0017"
down_revision: str | None = "0016"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


# The stays' lengths in whole seconds, as each dialect counts them.
SET_SECONDS = {
    "postgresql": "UPDATE deal_stage_history SET seconds ="
    " CAST(round(CAST(date_part('epoch', ended_at - entered_at) AS numeric)) AS bigint)"
    " WHERE ended_at IS NOT NULL",
    "sqlite": "UPDATE deal_stage_history SET seconds ="
    " CAST(round((julianday(ended_at) - julianday(entered_at)) * 86400) AS INTEGER)"
    " WHERE ended_at IS NOT NULL",
}


def upgrade() -> None:
    with op.batch_alter_table("deal_stage_history") as batch:
        batch.add_column(sa.Column("outcome", sa.String(10), nullable=True))
        batch.add_column(sa.Column("ended_at", sa.DateTime(timezone=True), nullable=True))
        batch.add_column(sa.Column("seconds", sa.BigInteger(), nullable=True))
    # Stays the deal left: forward or not, as recorded when it moved.
    op.execute(
        "UPDATE deal_stage_history SET ended_at = left_at, outcome = CASE WHEN moved_forward"
        " THEN 'moved_on' ELSE 'moved_back' END WHERE left_at IS NOT NULL"
    )
    # The stay a won or lost deal is still in ended when the deal closed (never before it
    # began). Correlated subqueries, so that both dialects run the same statement.
    op.execute(
        """
        UPDATE deal_stage_history SET
            outcome = (SELECT d.status FROM deals AS d WHERE d.id = deal_stage_history.deal_id),
            ended_at = coalesce((
                SELECT d.closed_at FROM deals AS d
                WHERE d.id = deal_stage_history.deal_id AND d.closed_at > entered_at
            ), entered_at)
        WHERE left_at IS NULL AND EXISTS (
            SELECT 1 FROM deals AS d
            WHERE d.id = deal_stage_history.deal_id AND d.status IN ('won', 'lost')
        )
        """
    )
    op.execute(SET_SECONDS[op.get_bind().dialect.name])
    with op.batch_alter_table("deal_stage_history") as batch:
        batch.drop_column("moved_forward")
    op.drop_index("ix_deal_stage_history_entered", table_name="deal_stage_history")
    op.create_index(
        "ix_deal_stage_history_entered",
        "deal_stage_history",
        ["entered_at", "stage_id", "outcome", "seconds", "ended_at"],
    )
    op.create_index(
        "ix_deal_stage_history_outcome", "deal_stage_history", ["stage_id", "outcome", "seconds"]
    )
    op.create_index("ix_deal_stage_history_length", "deal_stage_history", ["stage_id", "seconds"])
    op.create_index(
        "ix_deal_stage_history_open",
        "deal_stage_history",
        ["stage_id", "entered_at"],
        sqlite_where=sa.text("ended_at IS NULL"),
        postgresql_where=sa.text("ended_at IS NULL"),
    )


def downgrade() -> None:
    for name in ("open", "length", "outcome", "entered"):
        op.drop_index(f"ix_deal_stage_history_{name}", table_name="deal_stage_history")
    op.create_index("ix_deal_stage_history_entered", "deal_stage_history", ["entered_at"])
    with op.batch_alter_table("deal_stage_history") as batch:
        batch.add_column(
            sa.Column("moved_forward", sa.Boolean(), nullable=False, server_default=sa.false())
        )
    op.execute(
        "UPDATE deal_stage_history SET moved_forward ="
        " CASE WHEN outcome = 'moved_on' THEN true ELSE false END"
    )
    with op.batch_alter_table("deal_stage_history") as batch:
        batch.drop_column("seconds")
        batch.drop_column("ended_at")
        batch.drop_column("outcome")
