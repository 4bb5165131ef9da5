"""search documents carry their record's owner

Revision ID: 0022
Revises: 0021
Create Date: 2026-12-01 13:40:00

A sales rep's search counts the rep's matching contacts. Without the owner beside the text,
that count walked the rep's contacts and tested each one's document until it had found
1,001 (39 ms for "hopper" at 1,000,000 persons, against 12 ms for an admin, whose count
stops at the first 1,001 documents the text index finds). With the owner on the document,
PostgreSQL asks one GIN index for "this owner and these trigrams" (btree_gin puts the owner
in the same index as pg_trgm's trigrams) and reads only documents that match both: 15 to
20 ms for the same count.

The owner is a copy, kept by the database itself: a document is built with its record's
owner (``crm.search``), and a trigger on each record's table copies a change of owner to
its document, whatever code made it (an edit, an assignment rule, an import, a merge, a
deleted user's records losing their owner).

On SQLite the column is kept the same way but no index is added: FTS5 cannot combine an
owner with its trigrams, and the search there is unchanged. Its FTS triggers are narrowed
to changes of the text, so that an owner change does not re-index the document's trigrams.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0022"
down_revision: str | None = "0021"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# (record type, its table): both constants, never input.
KINDS = (("person", "persons"), ("company", "companies"))


def _fts_update_trigger(kind: str, of: str) -> None:
    """SQLite's FTS5 update trigger of migration 0014, firing on updates ``of`` (a column
    list) or, with ``of`` empty, on any update."""
    fts = f"search_fts_{kind}"
    op.execute(f"DROP TRIGGER IF EXISTS {fts}_au")
    op.execute(
        f"CREATE TRIGGER {fts}_au AFTER UPDATE {of} ON search_documents "  # noqa: S608
        f"WHEN old.record_type = '{kind}' BEGIN "
        f"INSERT INTO {fts}({fts}, rowid, document) VALUES ('delete', old.id, old.document); "
        f"INSERT INTO {fts}(rowid, document) VALUES (new.id, new.document); END"
    )


def upgrade() -> None:
    postgres = op.get_bind().dialect.name == "postgresql"
    if postgres:
        # First: a server without the extension stops the migration before it changed
        # anything.
        op.execute("CREATE EXTENSION IF NOT EXISTS btree_gin")
    op.add_column("search_documents", sa.Column("owner_id", sa.Uuid(), nullable=True))
    if not postgres:
        for kind, _ in KINDS:
            _fts_update_trigger(kind, "OF document")
    for kind, table in KINDS:
        op.execute(
            f"UPDATE search_documents SET owner_id = ("  # noqa: S608
            f"SELECT r.owner_id FROM {table} r WHERE r.id = search_documents.record_id) "
            f"WHERE record_type = '{kind}'"
        )
        if postgres:
            op.execute(
                f"CREATE FUNCTION patron_{kind}_document_owner() RETURNS trigger "  # noqa: S608
                "LANGUAGE plpgsql AS $$ BEGIN "
                "UPDATE search_documents SET owner_id = NEW.owner_id "
                f"WHERE record_type = '{kind}' AND record_id = NEW.id; "
                "RETURN NULL; END $$"
            )
            op.execute(
                f"CREATE TRIGGER {table}_document_owner AFTER UPDATE OF owner_id ON {table} "
                "FOR EACH ROW WHEN (OLD.owner_id IS DISTINCT FROM NEW.owner_id) "
                f"EXECUTE FUNCTION patron_{kind}_document_owner()"
            )
        else:
            op.execute(
                f"CREATE TRIGGER {table}_document_owner AFTER UPDATE OF owner_id ON {table} "  # noqa: S608
                "WHEN old.owner_id IS NOT new.owner_id BEGIN "
                "UPDATE search_documents SET owner_id = new.owner_id "
                f"WHERE record_type = '{kind}' AND record_id = new.id; END"
            )
    if postgres:
        op.execute(
            "CREATE INDEX ix_search_documents_owner_trgm_person ON search_documents "
            "USING gin (owner_id, document gin_trgm_ops) WHERE record_type = 'person'"
        )
        # The update wrote every row again: the table's first half is left empty, and
        # indexes built in the transaction that wrote each row twice hold both (the
        # persons' trigram index 145 MB where a fresh build makes 85, at 1,000,000
        # documents; 0021's REINDEX had the same trouble). Once this is committed, VACUUM
        # FULL writes table and indexes again as after a fresh load (40 s at 1,100,000
        # documents). Last, so that what can fail has failed before the commit.
        with op.get_context().autocommit_block():
            op.execute("VACUUM FULL search_documents")


def downgrade() -> None:
    postgres = op.get_bind().dialect.name == "postgresql"
    for kind, table in KINDS:
        if postgres:
            op.execute(f"DROP TRIGGER IF EXISTS {table}_document_owner ON {table}")
            op.execute(f"DROP FUNCTION IF EXISTS patron_{kind}_document_owner()")
        else:
            op.execute(f"DROP TRIGGER IF EXISTS {table}_document_owner")
            _fts_update_trigger(kind, "")
    if postgres:
        op.execute("DROP INDEX IF EXISTS ix_search_documents_owner_trgm_person")
    op.drop_column("search_documents", "owner_id")
