"""report indexes: deals closed, stays begun, activities occurred and completed in a period

Revision ID: 0010
Revises: 0009
Create Date: 2026-11-24 10:00:00

The sales reports take a period; these indexes let a report over a period read only that
period's rows: deals by status and close time (win rate, deal size, sales cycle), stage
stays by the time they began (stage conversion), activities by when they occurred and when
a task was completed (activities per owner).
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index("ix_deals_status_closed_at", "deals", ["status", "closed_at"])
    op.create_index("ix_deal_stage_history_entered", "deal_stage_history", ["entered_at"])
    op.create_index("ix_activities_occurred", "activities", ["occurred_at"])
    op.create_index("ix_activities_done", "activities", ["done_at"])


def downgrade() -> None:
    op.drop_index("ix_activities_done", table_name="activities")
    op.drop_index("ix_activities_occurred", table_name="activities")
    op.drop_index("ix_deal_stage_history_entered", table_name="deal_stage_history")
    op.drop_index("ix_deals_status_closed_at", table_name="deals")
