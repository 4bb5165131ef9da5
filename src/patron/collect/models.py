"""Sources, the append-only event log, rejected messages, the processing cursor, imports."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any, NamedTuple, Protocol

from sqlalchemy import BigInteger, ForeignKey, Index, String, Text, UniqueConstraint, false
from sqlalchemy.orm import Mapped, mapped_column

from patron.core.clock import utcnow
from patron.core.ids import new_id
from patron.core.models import Base, BigIntPK


class Source(Base):
    """Where data comes from: a website, an app, a backend, a file import."""

    __tablename__ = "sources"

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=new_id)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    kind: Mapped[str] = mapped_column(String(20), default="server")
    write_key_hash: Mapped[str] = mapped_column(String(64), unique=True)
    write_key_prefix: Mapped[str] = mapped_column(String(16))
    enabled: Mapped[bool] = mapped_column(default=True)
    # Browser origins allowed to send with this key; empty means any origin.
    allowed_origins: Mapped[list[Any]] = mapped_column(default=list)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    key_rotated_at: Mapped[datetime | None]


class Event(Base):
    """One accepted message. Rows are only ever appended; ``seq`` is the log order."""

    __tablename__ = "events"
    __table_args__ = (
        UniqueConstraint("source_id", "message_id", name="uq_events_source_message"),
        Index("ix_events_source_seq", "source_id", "seq"),
        Index("ix_events_type_seq", "type", "seq"),
        Index("ix_events_event_seq", "event", "seq"),
        Index("ix_events_received", "received_at"),
        # No index on user_id or anonymous_id here: ids arrive in random order, and keeping
        # them sorted made every insert markedly slower. They are indexed in event_keys.
    )

    seq: Mapped[int] = mapped_column(BigIntPK, primary_key=True, autoincrement=True)
    source_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("sources.id"))
    message_id: Mapped[str] = mapped_column(String(200))
    type: Mapped[str] = mapped_column(String(16))
    event: Mapped[str | None] = mapped_column(String(200))
    user_id: Mapped[str | None] = mapped_column(String(200))
    anonymous_id: Mapped[str | None] = mapped_column(String(200))
    timestamp: Mapped[datetime]
    received_at: Mapped[datetime]
    flags: Mapped[list[Any]] = mapped_column(default=list)
    payload: Mapped[dict[str, Any]]


class LogEntry(Protocol):
    """A message of the log as the processing loop's handlers read it: an :class:`Event`
    row, or the lighter :class:`LoggedEvent` that processing loads (read-only either way)."""

    @property
    def seq(self) -> int: ...
    @property
    def source_id(self) -> uuid.UUID: ...
    @property
    def message_id(self) -> str: ...
    @property
    def type(self) -> str: ...
    @property
    def event(self) -> str | None: ...
    @property
    def user_id(self) -> str | None: ...
    @property
    def anonymous_id(self) -> str | None: ...
    @property
    def timestamp(self) -> datetime: ...
    @property
    def received_at(self) -> datetime: ...
    @property
    def payload(self) -> dict[str, Any]: ...


class LoggedEvent(NamedTuple):
    """An event row read without the ORM (and without its ``flags``, which processing does
    not look at). Processing reads the log thousands of events at a time and only reads
    them: a mapped object per event cost a third more than the read."""

    seq: int
    source_id: uuid.UUID
    message_id: str
    type: str
    event: str | None
    user_id: str | None
    anonymous_id: str | None
    timestamp: datetime
    received_at: datetime
    payload: dict[str, Any]


class EventKey(Base):
    """The ids of each event, indexed for the debugger's ``userId`` and ``anonymousId`` filters.

    Kept off ``events``, so the ingest path does not pay for these indexes: the processing
    loop fills this table for each batch it reads, in log order. Events past its highest
    ``seq`` are found by scanning the tail of the log.
    """

    __tablename__ = "event_keys"
    __table_args__ = (
        Index("ix_event_keys_user_seq", "user_id", "seq"),
        Index("ix_event_keys_anonymous_seq", "anonymous_id", "seq"),
    )

    seq: Mapped[int] = mapped_column(
        BigIntPK, ForeignKey("events.seq", ondelete="CASCADE"), primary_key=True
    )
    user_id: Mapped[str | None] = mapped_column(String(200))
    anonymous_id: Mapped[str | None] = mapped_column(String(200))


class RejectedMessage(Base):
    """A message refused by validation, kept with the reason so nothing vanishes silently."""

    __tablename__ = "rejected_messages"
    __table_args__ = (Index("ix_rejected_source_id", "source_id", "id"),)

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True, autoincrement=True)
    source_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("sources.id"))
    received_at: Mapped[datetime] = mapped_column(default=utcnow)
    code: Mapped[str] = mapped_column(String(40))
    reason: Mapped[str] = mapped_column(Text)
    field: Mapped[str | None] = mapped_column(String(200))
    message_id: Mapped[str | None] = mapped_column(String(200))
    # The offending message as received, possibly not valid JSON, capped in size.
    raw: Mapped[str] = mapped_column(Text)


class ProcessingCursor(Base):
    """How far a processor has read the event log; it resumes here after a restart."""

    __tablename__ = "processing_cursors"

    name: Mapped[str] = mapped_column(String(50), primary_key=True)
    position: Mapped[int] = mapped_column(BigInteger, default=0)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)


class EventCatalogEntry(Base):
    """What each source sends: every (type, event name) with counts and first/last seen.

    Derived by the processing loop from the log, so the sources page and the debugger
    can show what a source is sending without scanning the log.
    """

    __tablename__ = "event_catalog"

    source_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("sources.id"), primary_key=True)
    type: Mapped[str] = mapped_column(String(16), primary_key=True)
    name: Mapped[str] = mapped_column(String(200), primary_key=True)
    count: Mapped[int] = mapped_column(default=0)
    first_seen: Mapped[datetime]
    last_seen: Mapped[datetime]


class Import(Base):
    """One file import, run from the CLI or uploaded through the API."""

    __tablename__ = "imports"

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=new_id)
    source_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("sources.id"))
    kind: Mapped[str] = mapped_column(String(20))
    filename: Mapped[str] = mapped_column(String(500))
    status: Mapped[str] = mapped_column(String(20), default="pending")
    options: Mapped[dict[str, Any]] = mapped_column(default=dict)
    rows_read: Mapped[int] = mapped_column(default=0)
    accepted: Mapped[int] = mapped_column(default=0)
    duplicates: Mapped[int] = mapped_column(default=0)
    rejected: Mapped[int] = mapped_column(default=0)
    # Companies and deals imports (and people dry runs): records created and updated.
    created: Mapped[int] = mapped_column(default=0, server_default="0")
    updated: Mapped[int] = mapped_column(default=0, server_default="0")
    # A dry run reads and checks every row, reports the counts, and writes no record.
    dry_run: Mapped[bool] = mapped_column(default=False, server_default=false())
    bytes_total: Mapped[int] = mapped_column(default=0)
    bytes_read: Mapped[int] = mapped_column(default=0)
    error: Mapped[str | None] = mapped_column(Text)
    report_path: Mapped[str | None] = mapped_column(String(1000))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    finished_at: Mapped[datetime | None]


class ImportRejection(Base):
    """A row of an import that was refused, with its line number and reason."""

    __tablename__ = "import_rejections"
    __table_args__ = (Index("ix_import_rejections_import", "import_id", "line"),)

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True, autoincrement=True)
    import_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("imports.id", ondelete="CASCADE"))
    line: Mapped[int]
    code: Mapped[str] = mapped_column(String(40))
    reason: Mapped[str] = mapped_column(Text)
