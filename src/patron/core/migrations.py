"""Alembic, driven from code: the schema version check and the upgrade."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine

from patron.core.errors import DatabaseBehind

# What the models do not describe on purpose, because it is one dialect's (migrations 0014,
# 0016, 0022 and 0025): SQLite's FTS5 index over search_documents with the shadow tables it
# keeps; PostgreSQL's trigram indexes over the same documents, one per kind, and one over
# persons' owners and trigrams; and its indexes for a rep's pages read owner first.
UNMODELLED_TABLES = "search_fts"
UNMODELLED_INDEXES = frozenset(
    {
        "ix_search_documents_trgm_person",
        "ix_search_documents_trgm_company",
        "ix_search_documents_owner_trgm_person",
        "ix_persons_owner_name",
        "ix_deals_owner_stage_amount",
    }
)


def include_name(name: str | None, type_: str, _parent_names: Any) -> bool:
    """For autogenerate and comparisons: leave out what the models do not describe."""
    if name is None:
        return True
    if type_ == "table":
        return not name.startswith(UNMODELLED_TABLES)
    return not (type_ == "index" and name in UNMODELLED_INDEXES)


def migrations_dir() -> Path:
    """The revisions folder: packaged inside a wheel, or at the top of a source checkout."""
    packaged = Path(__file__).resolve().parent.parent / "_migrations"
    if packaged.is_dir():
        return packaged
    return Path(__file__).resolve().parents[3] / "migrations"


def alembic_config(engine: Engine) -> Config:
    config = Config()
    config.set_main_option("script_location", str(migrations_dir()))
    config.attributes["engine"] = engine
    return config


def head_revision(engine: Engine) -> str | None:
    return ScriptDirectory.from_config(alembic_config(engine)).get_current_head()


def current_revision(engine: Engine) -> str | None:
    with engine.connect() as connection:
        return MigrationContext.configure(connection).get_current_revision()


def upgrade(engine: Engine) -> None:
    """Bring the schema to the newest revision."""
    command.upgrade(alembic_config(engine), "head")


def check_current(engine: Engine, *, auto_migrate: bool) -> None:
    """Refuse to run on a schema that is behind, unless allowed to migrate it here and now."""
    current, head = current_revision(engine), head_revision(engine)
    if current == head:
        return
    if auto_migrate:
        upgrade(engine)
        return
    raise DatabaseBehind(
        f"the database is at revision {current or 'none (empty)'} but this Patron needs "
        f"{head}; run `patron migrate` first"
    )
