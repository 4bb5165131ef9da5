"""Alembic environment: the engine comes from Patron, never from an ini file."""

from __future__ import annotations

from alembic import context
from sqlalchemy import Engine

from patron.core.migrations import include_name
from patron.models import metadata

config = context.config


def run_migrations() -> None:
    engine = config.attributes.get("engine")
    if not isinstance(engine, Engine):
        raise RuntimeError("run migrations through `patron migrate`, which supplies the engine")
    with engine.connect() as connection:
        context.configure(
            connection=connection,
            target_metadata=metadata,
            render_as_batch=connection.dialect.name == "sqlite",
            compare_type=True,
            include_name=include_name,
        )
        with context.begin_transaction():
            context.run_migrations()
        connection.commit()


run_migrations()
