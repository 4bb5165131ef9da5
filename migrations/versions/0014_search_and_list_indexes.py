"""search documents and list indexes: contacts and companies found by words at any size

Revision ID: 0014
Revises: 0013
Create Date: 2026-11-30 19:45:00

Searching a million contacts by substring scanned every person, their identities and their
companies (26 s on SQLite). Each contact and company now has a search document
(``search_documents``), indexed for substring search: on SQLite by an FTS5 table with the
trigram tokenizer (``search_fts_person``, ``search_fts_company``: external-content tables
kept in step by triggers), on
PostgreSQL by a pg_trgm GIN index. The documents of existing records are built here.

The indexes on ``merged_into`` hold only merged records: ``merged_into IS NULL``, which
every list asks, matched the whole index, and SQLite's planner took it for a selective one.
The default list orders get indexes that serve them whole: contacts newest first (for
everyone, and per owner), by name (the JSON trait, as the list writes it), companies by
name, deals newest first and by stage and amount. The person owner index moves from
``created_seq`` to ``created_at``, the order the contact list uses.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0014"
down_revision: str | None = "0013"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

NAME_SQLITE = "CAST(json_extract(traits, '$.\"name\"') AS TEXT)"
NAME_POSTGRES = "(traits ->> 'name')"

# The documents, as patron.crm.search builds them (names, emails and phones, company names,
# one a line; a company's name and domain).
PERSONS = """
INSERT INTO search_documents (record_type, record_id, document)
SELECT 'person', p.id,
  coalesce({name}, '') || chr_nl || coalesce({first}, '') || chr_nl || coalesce({last}, '')
  || chr_nl || coalesce((SELECT {agg_i} FROM identities i
                         WHERE i.person_id = p.id AND i.kind IN ('email', 'phone')), '')
  || chr_nl || coalesce((SELECT {agg_c} FROM person_companies pc
                         JOIN companies c ON c.id = pc.company_id
                         WHERE pc.person_id = p.id), '')
FROM persons p WHERE p.merged_into IS NULL
"""
COMPANIES = """
INSERT INTO search_documents (record_type, record_id, document)
SELECT 'company', c.id, coalesce(c.name, '') || chr_nl || coalesce(c.domain, '')
FROM companies c WHERE c.merged_into IS NULL
"""


def _documents(sqlite: bool) -> list[str]:
    newline = "char(10)" if sqlite else "chr(10)"
    if sqlite:

        def json(key: str) -> str:
            return f"CAST(json_extract(p.traits, '$.\"{key}\"') AS TEXT)"

        agg_i, agg_c = "group_concat(i.value, char(10))", "group_concat(c.name, char(10))"
    else:

        def json(key: str) -> str:
            return f"(p.traits ->> '{key}')"

        agg_i, agg_c = "string_agg(i.value, chr(10))", "string_agg(c.name, chr(10))"
    persons = PERSONS.format(
        name=json("name"), first=json("firstName"), last=json("lastName"), agg_i=agg_i, agg_c=agg_c
    )
    return [persons.replace("chr_nl", newline), COMPANIES.replace("chr_nl", newline)]


def _fts_table(kind: str) -> None:
    """An FTS5 trigram index over the documents of one kind of record, kept in step by
    triggers (one table a kind, so a word common in the other kind's documents costs
    nothing here)."""
    fts = f"search_fts_{kind}"
    op.execute(
        f"CREATE VIRTUAL TABLE {fts} USING fts5(document, content='search_documents', "
        "content_rowid='id', tokenize='trigram')"
    )
    # ``kind`` is one of two constants above, never input.
    when = f"WHEN {{row}}.record_type = '{kind}'"
    add = f"INSERT INTO {fts}(rowid, document) VALUES (new.id, new.document);"  # noqa: S608
    remove = (
        f"INSERT INTO {fts}({fts}, rowid, document) "  # noqa: S608
        "VALUES ('delete', old.id, old.document);"
    )
    op.execute(
        f"CREATE TRIGGER {fts}_ai AFTER INSERT ON search_documents "
        f"{when.format(row='new')} BEGIN {add} END"
    )
    op.execute(
        f"CREATE TRIGGER {fts}_ad AFTER DELETE ON search_documents "
        f"{when.format(row='old')} BEGIN {remove} END"
    )
    op.execute(
        f"CREATE TRIGGER {fts}_au AFTER UPDATE ON search_documents "
        f"{when.format(row='old')} BEGIN {remove} {add} END"
    )


def upgrade() -> None:
    sqlite = op.get_bind().dialect.name == "sqlite"
    op.create_table(
        "search_documents",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("record_type", sa.String(length=10), nullable=False),
        sa.Column("record_id", sa.Uuid(), nullable=False),
        sa.Column("document", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_search_documents")),
        sa.UniqueConstraint("record_type", "record_id", name="uq_search_documents_record"),
    )
    if sqlite:
        for kind in ("person", "company"):
            _fts_table(kind)
    else:
        op.execute("CREATE EXTENSION IF NOT EXISTS pg_trgm")
        op.execute(
            "CREATE INDEX ix_search_documents_trgm ON search_documents "
            "USING gin (document gin_trgm_ops)"
        )
    for statement in _documents(sqlite):
        op.execute(statement)

    for table in ("persons", "companies"):
        op.drop_index(f"ix_{table}_merged_into", table_name=table)
        op.create_index(
            f"ix_{table}_merged_into",
            table,
            ["merged_into"],
            sqlite_where=sa.text("merged_into IS NOT NULL"),
            postgresql_where=sa.text("merged_into IS NOT NULL"),
        )
    op.drop_index("ix_persons_owner", table_name="persons")
    op.create_index("ix_persons_owner", "persons", ["owner_id", "created_at", "id"])
    op.create_index("ix_persons_created", "persons", ["created_at", "id"])
    name = NAME_SQLITE if sqlite else NAME_POSTGRES
    op.create_index("ix_persons_name", "persons", [sa.text(name), "id"])
    op.create_index("ix_companies_name", "companies", ["name", "id"])
    op.create_index("ix_deals_created", "deals", ["created_at", "id"])
    op.create_index("ix_deals_stage_amount", "deals", ["stage_id", "amount", "id"])


def downgrade() -> None:
    op.drop_index("ix_deals_stage_amount", table_name="deals")
    op.drop_index("ix_deals_created", table_name="deals")
    op.drop_index("ix_companies_name", table_name="companies")
    op.drop_index("ix_persons_name", table_name="persons")
    op.drop_index("ix_persons_created", table_name="persons")
    op.drop_index("ix_persons_owner", table_name="persons")
    op.create_index("ix_persons_owner", "persons", ["owner_id", "created_seq"])
    for table in ("persons", "companies"):
        op.drop_index(f"ix_{table}_merged_into", table_name=table)
        op.create_index(f"ix_{table}_merged_into", table, ["merged_into"])
    if op.get_bind().dialect.name == "sqlite":
        for kind in ("person", "company"):
            for trigger in ("ai", "ad", "au"):
                op.execute(f"DROP TRIGGER IF EXISTS search_fts_{kind}_{trigger}")
            op.execute(f"DROP TABLE IF EXISTS search_fts_{kind}")
    op.drop_table("search_documents")
