"""The one place Patron reads the time, so every timestamp is timezone-aware UTC."""

from __future__ import annotations

from datetime import UTC, datetime


def utcnow() -> datetime:
    return datetime.now(UTC)


def as_utc(value: datetime) -> datetime:
    """Return ``value`` in UTC; naive values (SQLite hands them back) are taken as UTC."""
    zone = value.tzinfo
    if zone is UTC:
        return value  # the common case: already converted once
    if zone is None:
        return value.replace(tzinfo=UTC)
    return value.astimezone(UTC)
