"""activities carry the owners of the person, company and deal they are linked to

Revision ID: 0019
Revises: 0018
Create Date: 2026-12-01 07:00:00

A sales rep sees an activity they own and one on any person, company or deal they own.
Counting a rep's activities (the activity report) tested every activity against the sets
of records the rep owns: a scan of the whole table, 0.43 to 0.48 s at 2,000,000 activities
on PostgreSQL. With the owners of its linked records on each activity, the activities a
rep sees through ownership are four index ranges (one per owner column), read from the
index alone.

``person_owner_id``, ``company_owner_id`` and ``deal_owner_id`` hold the owner of the
linked record; ``NO_OWNER`` (the nil UUID) when it is linked to a record without an owner,
which a manager sees; null when it is linked to none. Triggers keep them, not the
services, so that no write misses them: an activity written or re-linked takes its
records' owners, and a person, company or deal that changes owner (a deleted user's
records too: ``ON DELETE SET NULL`` is an update) hands the new one to its activities. A
later migration that rebuilds ``activities``, ``persons``, ``companies`` or ``deals`` on
SQLite (batch mode) must make their triggers again.

``ix_activities_owner_due`` gains kind and occurrence, so that it also serves the count of
the activities a rep owns; the indexes by company and by ticket leave out the activities
without one.
"""

# The statements are built from the fixed names in LINKS, never from input.
# ruff: noqa: S608

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0019"
down_revision: str | None = "0018"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# (linked table, the activity's link to it, the column that holds its owner)
LINKS = (
    ("persons", "person_id", "person_owner_id"),
    ("companies", "company_id", "company_owner_id"),
    ("deals", "deal_id", "deal_owner_id"),
)
NO_OWNER = {
    "postgresql": "'00000000-0000-0000-0000-000000000000'::uuid",
    "sqlite": "'00000000000000000000000000000000'",
}
# Each index leads with one owner column and holds what the report reads and what the
# arms before it test (the activity's owner, then the owners of the earlier links).
INDEXES = {
    "ix_activities_person_owner": ["person_owner_id", "owner_id", "kind", "occurred_at", "done_at"],
    "ix_activities_company_owner": [
        "company_owner_id",
        "owner_id",
        "person_owner_id",
        "kind",
        "occurred_at",
        "done_at",
    ],
    "ix_activities_deal_owner": [
        "deal_owner_id",
        "owner_id",
        "person_owner_id",
        "company_owner_id",
        "kind",
        "occurred_at",
        "done_at",
    ],
}
OWNER_DUE = ["owner_id", "done_at", "due_at", "kind", "occurred_at"]
# Made partial: most activities have no company or ticket, and SQLite's statistics count
# those nulls as one key matching them all, which made a lookup of a few companies' or
# tickets' activities look as dear as reading the table.
PARTIAL = {"ix_activities_company": "company_id", "ix_activities_ticket": "ticket_id"}


def _index_links(*, partial: bool) -> None:
    for name, column in PARTIAL.items():
        op.drop_index(name, table_name="activities")
        where = {}
        if partial:
            predicate = sa.text(f"{column} IS NOT NULL")
            where = {"sqlite_where": predicate, "postgresql_where": predicate}
        op.create_index(name, "activities", [column, "occurred_at"], **where)


def _owner_of(dialect: str, table: str, link: str, row: str) -> str:
    """The owner of the record ``row.link`` points at, as the activity stores it."""
    return (
        f"CASE WHEN {row}.{link} IS NULL THEN NULL ELSE coalesce("
        f"(SELECT owner_id FROM {table} WHERE id = {row}.{link}), {NO_OWNER[dialect]}) END"
    )


# An activity written or re-linked reads its record's owner FOR SHARE: a concurrent change
# of that owner then waits for the activity's transaction, and its update of the record's
# activities sees the activity (or the activity waits and reads the new owner). Without
# the lock, each transaction missed the other's uncommitted row and the activity kept the
# old owner. SQLite has one writer at a time.
POSTGRES_LINK = """
    IF NEW.{link} IS NULL THEN
        NEW.{column} := NULL;
    ELSE
        SELECT coalesce(owner_id, {none}) INTO NEW.{column}
        FROM {table} WHERE id = NEW.{link} FOR SHARE;
    END IF;"""


def _postgres() -> None:
    assignments = "".join(
        POSTGRES_LINK.format(link=link, column=column, table=table, none=NO_OWNER["postgresql"])
        for table, link, column in LINKS
    )
    op.execute(
        "CREATE FUNCTION patron_activity_record_owners() RETURNS trigger LANGUAGE plpgsql AS $$\n"
        f"BEGIN{assignments}\n    RETURN NEW;\nEND $$"
    )
    op.execute(
        "CREATE TRIGGER activities_record_owners"
        " BEFORE INSERT OR UPDATE OF person_id, company_id, deal_id ON activities"
        " FOR EACH ROW EXECUTE FUNCTION patron_activity_record_owners()"
    )
    for table, link, column in LINKS:
        op.execute(
            f"CREATE FUNCTION patron_{table}_owner_to_activities() RETURNS trigger"
            " LANGUAGE plpgsql AS $$\nBEGIN\n"
            f"    UPDATE activities SET {column} = coalesce(NEW.owner_id, {NO_OWNER['postgresql']})"
            f" WHERE {link} = NEW.id;\n    RETURN NULL;\nEND $$"
        )
        op.execute(
            f"CREATE TRIGGER {table}_owner_to_activities AFTER UPDATE OF owner_id ON {table}"
            " FOR EACH ROW WHEN (OLD.owner_id IS DISTINCT FROM NEW.owner_id)"
            f" EXECUTE FUNCTION patron_{table}_owner_to_activities()"
        )


def _sqlite() -> None:
    # SQLite's triggers cannot change the row being written: they update it after.
    assignments = ", ".join(
        f"{column} = {_owner_of('sqlite', table, link, 'NEW')}" for table, link, column in LINKS
    )
    relink = f"UPDATE activities SET {assignments} WHERE rowid = NEW.rowid;"
    op.execute(
        f"CREATE TRIGGER activities_record_owners_insert AFTER INSERT ON activities BEGIN {relink} END"
    )
    op.execute(
        "CREATE TRIGGER activities_record_owners_update"
        f" AFTER UPDATE OF person_id, company_id, deal_id ON activities BEGIN {relink} END"
    )
    for table, link, column in LINKS:
        op.execute(
            f"CREATE TRIGGER {table}_owner_to_activities AFTER UPDATE OF owner_id ON {table}"
            " WHEN OLD.owner_id IS NOT NEW.owner_id BEGIN"
            f" UPDATE activities SET {column} = coalesce(NEW.owner_id, {NO_OWNER['sqlite']})"
            f" WHERE {link} = NEW.id; END"
        )


def upgrade() -> None:
    dialect = op.get_bind().dialect.name
    for _, _, column in LINKS:
        op.add_column("activities", sa.Column(column, sa.Uuid(), nullable=True))
    # The activities already there. The update changes no column the tallies count, so
    # on PostgreSQL their trigger (which sees every updated row) is off meanwhile.
    postgres = dialect == "postgresql"
    if postgres:
        op.execute("ALTER TABLE activities DISABLE TRIGGER activities_tally_update")
    assignments = ", ".join(
        f"{column} = {_owner_of(dialect, table, link, 'activities')}"
        for table, link, column in LINKS
    )
    op.execute(
        f"UPDATE activities SET {assignments}"
        " WHERE person_id IS NOT NULL OR company_id IS NOT NULL OR deal_id IS NOT NULL"
    )
    if postgres:
        op.execute("ALTER TABLE activities ENABLE TRIGGER activities_tally_update")
        _postgres()
    else:
        _sqlite()
    op.drop_index("ix_activities_owner_due", table_name="activities")
    op.create_index("ix_activities_owner_due", "activities", OWNER_DUE)
    for name, columns in INDEXES.items():
        op.create_index(name, "activities", columns)
    _index_links(partial=True)


def downgrade() -> None:
    postgres = op.get_bind().dialect.name == "postgresql"
    _index_links(partial=False)
    for name in INDEXES:
        op.drop_index(name, table_name="activities")
    op.drop_index("ix_activities_owner_due", table_name="activities")
    op.create_index("ix_activities_owner_due", "activities", OWNER_DUE[:3])
    triggers = [(f"{table}_owner_to_activities", table) for table, _, _ in LINKS]
    if postgres:
        triggers.append(("activities_record_owners", "activities"))
    else:
        triggers += [(f"activities_record_owners_{w}", "") for w in ("insert", "update")]
    for name, table in triggers:
        op.execute(f"DROP TRIGGER IF EXISTS {name}" + (f" ON {table}" if postgres else ""))
    if postgres:
        op.execute("DROP FUNCTION IF EXISTS patron_activity_record_owners()")
        for table, _, _ in LINKS:
            op.execute(f"DROP FUNCTION IF EXISTS patron_{table}_owner_to_activities()")
    # Not batch mode: on SQLite it would rebuild the table without its tally triggers.
    for _, _, column in LINKS:
        op.execute(f"ALTER TABLE activities DROP COLUMN {column}")
