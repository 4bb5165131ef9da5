"""ingest hot path: id indexes move from events to event_keys

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-23 11:20:00

Every insert into ``events`` kept two indexes on ids (user_id, anonymous_id) sorted; ids
arrive in random order, so each insert touched pages all over both. The debugger's id
filters now use ``event_keys``, which the processing loop fills; it starts with every
event already in the log.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "event_keys",
        sa.Column(
            "seq",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=False,
            nullable=False,
        ),
        sa.Column("user_id", sa.String(length=200), nullable=True),
        sa.Column("anonymous_id", sa.String(length=200), nullable=True),
        sa.ForeignKeyConstraint(
            ["seq"], ["events.seq"], name=op.f("fk_event_keys_seq_events"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("seq", name=op.f("pk_event_keys")),
    )
    op.execute(
        "INSERT INTO event_keys (seq, user_id, anonymous_id) "
        "SELECT seq, user_id, anonymous_id FROM events"
    )
    with op.batch_alter_table("event_keys", schema=None) as batch_op:
        batch_op.create_index("ix_event_keys_anonymous_seq", ["anonymous_id", "seq"], unique=False)
        batch_op.create_index("ix_event_keys_user_seq", ["user_id", "seq"], unique=False)
    with op.batch_alter_table("events", schema=None) as batch_op:
        batch_op.drop_index("ix_events_anonymous_seq")
        batch_op.drop_index("ix_events_user_seq")


def downgrade() -> None:
    with op.batch_alter_table("events", schema=None) as batch_op:
        batch_op.create_index("ix_events_user_seq", ["user_id", "seq"], unique=False)
        batch_op.create_index("ix_events_anonymous_seq", ["anonymous_id", "seq"], unique=False)
    with op.batch_alter_table("event_keys", schema=None) as batch_op:
        batch_op.drop_index("ix_event_keys_user_seq")
        batch_op.drop_index("ix_event_keys_anonymous_seq")
    op.drop_table("event_keys")
