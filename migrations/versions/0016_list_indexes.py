"""deals biggest first by stage, and one trigram index per kind of search document, on
PostgreSQL

Revision ID: 0016
Revises: 0015
Create Date: 2026-12-01 01:30:00

The deal list sorted by amount, biggest first, puts deals without an amount last. On
PostgreSQL the ascending (stage, amount, id) index read backwards gives nulls first, so
the list sorted a whole stage's deals (35 ms at 200,000 deals) to show one page. The new
index holds the order the list asks for. SQLite's ascending index already serves it.

The trigram index over every search document served company searches badly: a person's
document holds their companies' names, so a word like "Software" matched 150,000 person
documents, which a company search read and threw away (170 ms at 1,000,000 persons). One
partial index per kind keeps each search to its own documents, as SQLite's one FTS5 table
per kind already does.
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0016"
down_revision: str | None = "0015"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

KINDS = ("person", "company")


def upgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    op.execute(
        "CREATE INDEX ix_deals_stage_amount_desc ON deals "
        "(stage_id, amount DESC NULLS LAST, id DESC)"
    )
    for kind in KINDS:
        op.execute(
            f"CREATE INDEX ix_search_documents_trgm_{kind} ON search_documents "
            f"USING gin (document gin_trgm_ops) WHERE record_type = '{kind}'"
        )
    op.execute("DROP INDEX ix_search_documents_trgm")


def downgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    op.execute(
        "CREATE INDEX ix_search_documents_trgm ON search_documents "
        "USING gin (document gin_trgm_ops)"
    )
    for kind in KINDS:
        op.execute(f"DROP INDEX ix_search_documents_trgm_{kind}")
    op.execute("DROP INDEX ix_deals_stage_amount_desc")
