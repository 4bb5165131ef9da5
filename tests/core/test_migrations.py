"""The schema check: a database behind the code is refused, the embedded one migrates."""

from __future__ import annotations

from pathlib import Path

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from typer.testing import CliRunner

from patron.cli import app
from patron.core.db import create_db_engine
from patron.core.errors import DatabaseBehind
from patron.core.migrations import (
    alembic_config,
    current_revision,
    head_revision,
    include_name,
    upgrade,
)
from patron.core.runtime import Runtime
from patron.core.settings import Settings
from patron.models import metadata


def test_configured_database_behind_is_refused_until_migrated(
    empty_database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = Settings(database_url=empty_database_url, data_dir=tmp_path)
    engine = create_db_engine(settings)
    assert current_revision(engine) is None
    with pytest.raises(DatabaseBehind, match="patron migrate"):
        Runtime.start(settings)
    monkeypatch.setenv("PATRON_DATABASE_URL", empty_database_url)
    refused = CliRunner().invoke(app, ["sources", "list"])
    assert refused.exit_code == 1
    assert "patron migrate" in refused.output
    migrated = CliRunner().invoke(app, ["migrate"])
    assert migrated.exit_code == 0, migrated.output
    assert current_revision(engine) == head_revision(engine)
    Runtime.start(settings).close()
    engine.dispose()


def test_embedded_default_migrates_itself(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path / "fresh")
    assert settings.is_embedded()
    runtime = Runtime.start(settings)
    assert current_revision(runtime.engine) == head_revision(runtime.engine)
    assert (tmp_path / "fresh" / "patron.db").exists()
    runtime.close()


def test_the_migrations_build_exactly_the_models(database_url: str, tmp_path: Path) -> None:
    """Every table, column, index and constraint of the models comes from a migration, and
    the migrations make nothing the models do not know (so autogenerate would be empty)."""
    engine = create_db_engine(Settings(database_url=database_url, data_dir=tmp_path))
    with engine.connect() as connection:
        context = MigrationContext.configure(
            connection,
            opts={
                "compare_type": True,
                "compare_server_default": False,
                "include_name": include_name,
            },
        )
        differences = compare_metadata(context, metadata)
    engine.dispose()
    assert differences == []


def test_every_migration_downgrades_and_upgrades_again(
    empty_database_url: str, tmp_path: Path
) -> None:
    engine = create_db_engine(Settings(database_url=empty_database_url, data_dir=tmp_path))
    upgrade(engine)
    config = alembic_config(engine)
    command.downgrade(config, "base")
    assert current_revision(engine) is None
    command.upgrade(config, "head")
    assert current_revision(engine) == head_revision(engine)
    engine.dispose()
