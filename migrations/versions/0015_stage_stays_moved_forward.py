"""stage stays record whether they ended with a move forward

Revision ID: 0015
Revises: 0014
Create Date: 2026-11-30 21:40:00

The stage conversion report needs, for each stay, whether the deal went on to a later
stage of the same pipeline. Finding it at query time (each stay's next stay, by a window
over the whole history or a lookup per stay) cost seconds at 500,000 stays; the deal
service now writes it when the deal moves. Existing stays get it from their next stay here.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0015"
down_revision: str | None = "0014"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("deal_stage_history") as batch:
        batch.add_column(
            sa.Column("moved_forward", sa.Boolean(), nullable=False, server_default=sa.false())
        )
    # A stay moved forward when it ended and the deal's next stay is in a later stage of
    # the same pipeline. Correlated subqueries, so that both dialects run the same text.
    op.execute(
        """
        UPDATE deal_stage_history SET moved_forward = (
            SELECT nxt_stage.pipeline_id = cur_stage.pipeline_id
                   AND nxt_stage.position > cur_stage.position
            FROM deal_stage_history AS nxt
            JOIN pipeline_stages AS nxt_stage ON nxt_stage.id = nxt.stage_id
            JOIN pipeline_stages AS cur_stage ON cur_stage.id = deal_stage_history.stage_id
            WHERE nxt.deal_id = deal_stage_history.deal_id AND nxt.id > deal_stage_history.id
            ORDER BY nxt.id
            LIMIT 1
        )
        WHERE left_at IS NOT NULL AND EXISTS (
            SELECT 1 FROM deal_stage_history AS nxt
            WHERE nxt.deal_id = deal_stage_history.deal_id AND nxt.id > deal_stage_history.id
        )
        """
    )


def downgrade() -> None:
    with op.batch_alter_table("deal_stage_history") as batch:
        batch.drop_column("moved_forward")
