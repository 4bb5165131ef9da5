"""Every domain's tables, imported in one place so Alembic sees the whole schema."""

from patron.auth.models import ApiToken, AuditEntry, LoginSession, User
from patron.collect.models import (
    Event,
    EventCatalogEntry,
    Import,
    ImportRejection,
    ProcessingCursor,
    RejectedMessage,
    Source,
)
from patron.core.models import Base

metadata = Base.metadata

__all__ = [
    "ApiToken",
    "AuditEntry",
    "Event",
    "EventCatalogEntry",
    "Import",
    "ImportRejection",
    "LoginSession",
    "ProcessingCursor",
    "RejectedMessage",
    "Source",
    "User",
    "metadata",
]
