"""statistics on a company's searchable text, on PostgreSQL

Revision ID: 0023
Revises: 0022
Create Date: 2026-12-01 14:10:00

A company search with many matches tests each company's own name and domain
(``crm.search.company_document``) instead of reading its search document. Without
statistics on that expression the planner guessed that a word matches 10 companies in
100,000 and sorted every match to show a page (45 ms for "Software", which matches 17,000);
with them it expects 16,000 and walks the name index until it has a page (6 to 10 ms).

Statistics on an expression need PostgreSQL 14 or later; on an older server the search
still works, planned without them. The expression is written as PostgreSQL deparses the
one the search sends, which is what the planner matches (a test compares the two).
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0023"
down_revision: str | None = "0022"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

COMPANY_DOCUMENT = (
    "lower((((COALESCE(name, ''::character varying))::text || E'\\n'::text) "
    "|| (COALESCE(domain, ''::character varying))::text))"
)


def upgrade() -> None:
    bind = op.get_bind()
    if bind.dialect.name != "postgresql" or bind.dialect.server_version_info < (14,):
        return
    op.execute(f"CREATE STATISTICS st_companies_document ON ({COMPANY_DOCUMENT}) FROM companies")
    op.execute("ANALYZE companies")


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP STATISTICS IF EXISTS st_companies_document")
