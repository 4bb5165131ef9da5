"""Identifiers and secrets."""

from __future__ import annotations

import hashlib
import secrets
import uuid


def new_id() -> uuid.UUID:
    """A random UUID for a new record."""
    return uuid.uuid4()


def new_secret(prefix: str, nbytes: int = 24) -> str:
    """A random credential such as ``pk_...`` (write key) or ``pt_...`` (API token)."""
    return f"{prefix}_{secrets.token_urlsafe(nbytes)}"


def hash_secret(secret: str) -> str:
    """SHA-256 of a high-entropy secret; such secrets need no slow hash to be safe at rest."""
    return hashlib.sha256(secret.encode()).hexdigest()
