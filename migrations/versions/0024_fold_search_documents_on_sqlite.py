"""search documents in lower case on SQLite too

Revision ID: 0024
Revises: 0023
Create Date: 2026-12-01 14:30:00

A search with many matches tests documents one by one with ``LIKE``, which on SQLite
ignores the case of ASCII letters only: "élodie" did not find "Élodie" there, though the
trigram index, which folds case by itself, found it when the matches were few. Documents
are now kept in lower case on SQLite as on PostgreSQL (0021), folded by ``patron_fold``, a
Unicode-aware function every connection registers (``core.db.fold_case``); the words are
folded by the same function. This folds the documents already there; the trigram index
follows through its triggers.
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0024"
down_revision: str | None = "0023"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        op.execute(
            "UPDATE search_documents SET document = patron_fold(document) "
            "WHERE document <> patron_fold(document)"
        )


def downgrade() -> None:
    # Nothing to undo: the previous code found lower-case documents as well, and builds a
    # document in its case again when its record changes.
    pass
