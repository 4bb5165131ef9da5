"""File imports: JSONL files of events and CSV or JSONL files of people, fed through ingest.

Every row becomes a Segment message and goes through :func:`service.ingest`, the path the
HTTP API uses, so validation and idempotency are identical. Files are read line by line
and committed in chunks of :data:`CHUNK_ROWS` rows, so memory stays flat whatever the file
size; the ``Import`` row carries the counts after every chunk, and every refused row is
kept in ``ImportRejection`` and in a CSV report (``line,code,reason``) under
``data_dir/imports``. Counts: ``rows_read = accepted + duplicates + rejected``, where
``accepted`` counts messages newly stored and ``duplicates`` those the log already had.

Events: each non-blank line is one message naming its ``type``. A message without a
``messageId`` gets ``import-<sha256 of the line>``, so rerunning a file stores nothing new.

People: each row becomes an ``identify``. Mapping (``--map COLUMN=TARGET``, or a JSON
object ``{"COLUMN": "TARGET"}`` through the API) sends a column to:

* ``user_id`` / ``anonymous_id``: the message's ``userId`` / ``anonymousId``;
* ``timestamp``: the message's timestamp (ISO-8601);
* ``traits.NAME`` or plain ``NAME`` (``email``, ``phone``, ``firstName``): a trait; dots
  nest (``address.city``);
* ``-``: the column is not imported.

Unmapped columns become traits under their own name; the id column (``--id-column``) is
not a trait unless mapped. Empty CSV cells and JSON nulls set nothing. CSV values stay
strings. The record id is kept as ``context.externalIds`` (type ``<source slug>_record_id``)
and in ``context.import`` with the line number.

Decision: Segment messages need a userId or an anonymousId. A row without a mapped
``user_id`` (or ``anonymous_id``) gets ``anonymousId = import:<source slug>:<record id>``,
or, without a record id, ``import:<source slug>:<hash of its email or phone>``. A row with
none of user id, anonymous id, record id, email or phone is refused.

The messageId of a person is a hash of the source id, the record id and the mapped content
(ids, traits, timestamp; not the line number): the same file again stores nothing, a changed
row (or a mapping that changes what a row says) stores exactly one new identify.

Files must be UTF-8 (a byte-order mark is fine). A line that is not UTF-8, not JSON, or
longer than :data:`MAX_LINE_BYTES` is refused with its line number; an empty file is an
error before anything starts. A failed import keeps the chunks it committed; running the
file again is safe.
"""

from __future__ import annotations

import csv
import hashlib
import re
import uuid
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from itertools import islice
from pathlib import Path
from typing import IO, Any

import orjson
from sqlalchemy import func, insert, select, update
from sqlalchemy.orm import Session, sessionmaker

from patron.auth.service import Actor, record_audit
from patron.collect.messages import MessageError, RequestMeta, unstorable
from patron.collect.models import Import, ImportRejection, Source
from patron.collect.service import Envelope, create_source, get_source_by_name, ingest
from patron.core.clock import utcnow
from patron.core.errors import Forbidden, InvalidInput, NotFound
from patron.core.pagination import Page, decode_int_cursor, encode_cursor
from patron.core.settings import Settings

KINDS = ("events", "people")
FORMATS = ("csv", "jsonl")
CHUNK_ROWS = 500
MAX_LINE_BYTES = 1024 * 1024
BOM = b"\xef\xbb\xbf"
DROP = "-"
MESSAGE_TARGETS = {
    "user_id": "userId",
    "userId": "userId",
    "anonymous_id": "anonymousId",
    "anonymousId": "anonymousId",
    "timestamp": "timestamp",
}
EXTENSIONS = {".csv": "csv", ".jsonl": "jsonl", ".ndjson": "jsonl", ".json": "jsonl"}
CUSTOM = "custom."

# Checks a row's values for ``custom.KEY`` mapping targets (person custom fields): takes
# {key: value as read} and returns {key: value as stored}, or raises MessageError naming
# the field. The CRM, above this module, registers the factory (patron.pipeline).
CustomValues = Callable[[dict[str, Any]], dict[str, Any]]
CUSTOM_VALUES: list[Callable[[Session], CustomValues]] = []

# A people dry run asks, per message, whether it would create a person, update one, or
# change nothing: "create", "update" or "unchanged". Identity, above this module, registers
# the factory (patron.pipeline); it is made once per chunk, with the rules of the moment.
PersonClassifier = Callable[[uuid.UUID, dict[str, Any]], str]
PERSON_CLASSIFIER: list[Callable[[Session, Settings], PersonClassifier]] = []


@dataclass(frozen=True)
class RecordKind:
    """An import of CRM records (companies, deals), which the CRM registers here.

    ``check`` is called when the import is created, with the CSV header and the options; it
    refuses bad options (a 400) and returns the options to keep. ``write_chunk`` writes one
    chunk of rows in the caller's transaction and returns the rejected ones; a dry run rolls
    that transaction back, so it goes through exactly the same checks as a real run.
    ``source`` is the source such imports are recorded under.
    """

    source: Callable[[Session], Source]
    check: Callable[[Session, list[str], dict[str, Any]], dict[str, Any]]
    write_chunk: Callable[[Session, Import, list[_Record], ImportProgress], list[Rejected]]


RECORD_KINDS: dict[str, RecordKind] = {}


def import_kinds() -> tuple[str, ...]:
    """Every kind of import: events and people, and the CRM's record kinds."""
    return (*KINDS, *RECORD_KINDS)


@dataclass
class ImportProgress:
    """How far an import has got, handed to the progress callback after every chunk."""

    bytes_total: int
    bytes_read: int = 0
    rows_read: int = 0
    accepted: int = 0
    duplicates: int = 0
    rejected: int = 0
    created: int = 0
    updated: int = 0


ProgressCallback = Callable[[ImportProgress], None]


@dataclass
class _Record:
    """One row read from a file: its value, or why it could not be read."""

    line: int
    value: Any = None
    digest: str = ""  # of the line, for a messageId the line does not carry
    error: tuple[str, str] | None = None


Record = _Record  # public name, for the record kinds registered from above


@dataclass
class _Bytes:
    read: int = 0


@dataclass
class _PeoplePlan:
    source_id: uuid.UUID
    slug: str
    import_id: uuid.UUID
    id_column: str | None
    mapping: dict[str, str] = field(default_factory=dict)
    custom: CustomValues | None = None


Rejected = tuple[int, str, str]  # line, code, reason


# --- starting an import ----------------------------------------------------------------


def source_for_import(session: Session, name: str, *, create: bool) -> tuple[Source, bool]:
    """The source named ``name``; when missing, created with kind "import" if ``create``.

    Returns the source and whether it was created now.
    """
    name = name.strip()
    try:
        return get_source_by_name(session, name), False
    except NotFound:
        if not create:
            raise
    source, _key = create_source(session, name=name, kind="import")
    return source, True


def parse_map_options(values: Iterable[str]) -> dict[str, str]:
    """Turn ``COLUMN=TARGET`` strings (the CLI's ``--map``) into a mapping."""
    mapping: dict[str, str] = {}
    for value in values:
        column, sep, target = value.rpartition("=")
        if not sep or not column.strip():
            raise InvalidInput(f"--map needs COLUMN=TARGET, got {value!r}", field="mapping")
        mapping[column.strip()] = target.strip()
    return mapping


def create_import(
    session: Session,
    *,
    source: Source,
    kind: str,
    path: Path,
    filename: str | None = None,
    file_format: str | None = None,
    id_column: str | None = None,
    mapping: dict[str, str] | None = None,
    actor: Actor | None = None,
    dry_run: bool = False,
    extra: dict[str, Any] | None = None,
) -> Import:
    """Check the file and options and record a pending import; :func:`run_import` runs it.

    Everything that can be known before reading the rows is checked here, so a bad option
    or an empty file is refused at once rather than reported by a failed import.
    """
    if kind not in import_kinds():
        raise InvalidInput(
            f"kind must be one of {', '.join(import_kinds())}, got {kind!r}", field="kind"
        )
    if not source.enabled:
        raise Forbidden(f"source {source.name!r} is disabled", code="source_disabled")
    if not path.is_file():
        raise InvalidInput(f"no file at {path}", field="file")
    if not _has_content(path):
        raise InvalidInput("the file is empty", code="empty_file", field="file")
    fmt = _resolve_format(kind, file_format, filename or path.name)
    options: dict[str, Any] = {"format": fmt, "path": str(path.resolve())}
    if kind in RECORD_KINDS:
        options.update(_record_options(session, kind, path, fmt, id_column, mapping, extra))
    elif kind == "people":
        options["id_column"] = (id_column or "").strip() or None
        options["mapping"] = _check_mapping(mapping or {})
        if fmt == "csv":
            _check_header(path, options["id_column"], options["mapping"])
    elif id_column or mapping:
        raise InvalidInput("id column and mapping do not apply to events", field="kind")
    if dry_run and kind == "events":
        raise InvalidInput("dry runs are for people, companies and deals", field="dry_run")
    imp = Import(
        source_id=source.id,
        kind=kind,
        filename=filename or str(path),
        options=options,
        dry_run=dry_run,
    )
    session.add(imp)
    session.flush()
    record_audit(
        session,
        actor=actor,
        action="create",
        record_type="import",
        record_id=str(imp.id),
        after={"kind": kind, "source": source.name, "filename": imp.filename, "dry_run": dry_run},
    )
    return imp


def _record_options(
    session: Session,
    kind: str,
    path: Path,
    fmt: str,
    id_column: str | None,
    mapping: dict[str, str] | None,
    extra: dict[str, Any] | None,
) -> dict[str, Any]:
    if fmt != "csv":
        raise InvalidInput(f"a {kind} import reads CSV", field="format")
    id_column = (id_column or "").strip() or None
    checked = _check_mapping(mapping or {})
    _check_header(path, id_column, checked)
    with path.open("rb") as handle:
        header = _csv_header(csv.reader(_text_lines(_lines(handle, _Bytes()), {})))
    given = {**(extra or {}), "id_column": id_column, "mapping": checked}
    return RECORD_KINDS[kind].check(session, header, given)


def _has_content(path: Path) -> bool:
    with path.open("rb") as handle:
        first = True
        while block := handle.read(64 * 1024):
            if first and block.startswith(BOM):
                block = block[len(BOM) :]
            first = False
            if block.strip():
                return True
    return False


def _resolve_format(kind: str, given: str | None, name: str) -> str:
    if kind == "events":
        if given not in (None, "jsonl"):
            raise InvalidInput("an events import reads JSONL only", field="format")
        return "jsonl"
    if given is not None:
        if given not in FORMATS:
            raise InvalidInput(f"format must be csv or jsonl, got {given!r}", field="format")
        return given
    found = EXTENSIONS.get(Path(name).suffix.lower())
    if found is None:
        raise InvalidInput(
            f"cannot tell the format of {name!r} from its extension; say csv or jsonl",
            field="format",
        )
    return found


def _check_mapping(mapping: dict[str, str]) -> dict[str, str]:
    checked: dict[str, str] = {}
    for column, target in mapping.items():
        if not isinstance(column, str) or not isinstance(target, str) or not column.strip():
            raise InvalidInput("a mapping sends a column name to a target name", field="mapping")
        target = target.strip() or DROP
        path = target.removeprefix("traits.")
        if target != DROP and target not in MESSAGE_TARGETS and not all(path.split(".")):
            raise InvalidInput(
                f"mapping target {target!r} for column {column!r} is not valid: use "
                "user_id, anonymous_id, timestamp, traits.NAME, NAME, custom.KEY or - (skip)",
                field="mapping",
            )
        checked[column.strip()] = target
    return checked


def _check_header(path: Path, id_column: str | None, mapping: dict[str, str]) -> None:
    with path.open("rb") as handle:
        header = _csv_header(csv.reader(_text_lines(_lines(handle, _Bytes()), {})))
    missing = [c for c in [*([id_column] if id_column else []), *mapping] if c not in header]
    if missing:
        raise InvalidInput(
            f"the header has no column {missing[0]!r}; it has: {', '.join(header)}",
            field="id_column" if missing[0] == id_column else "mapping",
        )


def _csv_header(reader: Iterator[list[str]]) -> list[str]:
    try:
        header = [name.strip() for name in next(reader)]
    except (StopIteration, csv.Error) as exc:
        raise InvalidInput(f"the CSV header cannot be read: {exc}", field="file") from None
    try:
        "".join(header).encode("utf-8")
    except UnicodeEncodeError:
        raise InvalidInput("the header line is not valid UTF-8", field="file") from None
    if "\0" in "".join(header):
        raise InvalidInput("the header line contains a NUL character", field="file")
    if not any(header):
        raise InvalidInput("the first line must be a header of column names", field="file")
    named = [name for name in header if name]
    duplicate = next((name for name in named if named.count(name) > 1), None)
    if duplicate is not None:
        raise InvalidInput(f"the header names column {duplicate!r} twice", field="file")
    return header


# --- running an import -----------------------------------------------------------------


def run_import(
    sessions: sessionmaker[Session],
    import_id: uuid.UUID,
    *,
    settings: Settings,
    progress: ProgressCallback | None = None,
) -> Import:
    """Run a pending import to the end, committing every chunk; returns the final row.

    A failure is recorded on the import (status ``failed``, ``error``) rather than raised,
    so the caller, a CLI command or a background task, only has to read the status.
    """
    with sessions() as session, session.begin():
        imp = session.get(Import, import_id)
        if imp is None:
            raise NotFound(f"no import with id {import_id}")
        source = session.get_one(Source, imp.source_id)
        path = Path(imp.options["path"])
        report = settings.data_dir / "imports" / f"{imp.id}-rejections.csv"
        imp.status, imp.bytes_total, imp.report_path = "running", _size(path), str(report)
    try:
        stats = _read_file(sessions, imp, source, path, report, settings, progress)
    except KeyboardInterrupt:
        _finish(sessions, import_id, status="failed", error="interrupted")
        raise
    except Exception as exc:
        return _finish(sessions, import_id, status="failed", error=f"{type(exc).__name__}: {exc}")
    if stats.rows_read == 0:
        return _finish(sessions, import_id, status="failed", error="the file has no rows")
    return _finish(sessions, import_id, status="done", error=None)


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0


def _finish(
    sessions: sessionmaker[Session], import_id: uuid.UUID, *, status: str, error: str | None
) -> Import:
    with sessions() as session, session.begin():
        imp = session.get_one(Import, import_id)
        imp.status, imp.error, imp.finished_at = status, error, utcnow()
    return imp


def _read_file(
    sessions: sessionmaker[Session],
    imp: Import,
    source: Source,
    path: Path,
    report_path: Path,
    settings: Settings,
    progress: ProgressCallback | None,
) -> ImportProgress:
    stats = ImportProgress(bytes_total=imp.bytes_total)
    counter = _Bytes()
    report_path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("rb") as handle, report_path.open("w", newline="", encoding="utf-8") as out:
        report = csv.writer(out)
        report.writerow(["line", "code", "reason"])
        read = _lines(handle, counter)
        if imp.options["format"] == "csv":
            records: Iterator[_Record] = _csv_records(read)
        else:
            records = _jsonl_records(read)
        if imp.kind in RECORD_KINDS:
            _write_records(sessions, imp, records, counter, out, report, stats, progress)
            return stats
        to_message = (
            _events_message
            if imp.kind == "events"
            else _people_message_maker(imp, source, _custom_check(sessions, imp))
        )
        skew = timedelta(seconds=settings.max_future_skew_seconds)
        if imp.dry_run:
            output = (out, report)
            _classify_people(
                sessions, imp, source, records, counter, output, settings, stats, progress
            )
            return stats
        for chunk in _chunks(records, CHUNK_ROWS):
            messages, lines, rejections = _build_messages(chunk, to_message)
            # One transaction per chunk: the counts on the import always match the log.
            with sessions() as session, session.begin():
                rejections += _ingest_chunk(session, source, messages, lines, skew, stats)
                rejections.sort()
                stats.rows_read += len(chunk)
                stats.rejected += len(rejections)
                stats.bytes_read = counter.read
                _save_chunk(session, imp.id, rejections, stats)
            report.writerows(rejections)
            out.flush()
            if progress is not None:
                progress(stats)
    return stats


def _write_records(
    sessions: sessionmaker[Session],
    imp: Import,
    records: Iterator[_Record],
    counter: _Bytes,
    out: IO[str],
    report: Any,
    stats: ImportProgress,
    progress: ProgressCallback | None,
) -> None:
    """Companies and deals: each chunk in one transaction, rolled back on a dry run."""
    kind = RECORD_KINDS[imp.kind]
    for chunk in _chunks(records, CHUNK_ROWS):
        with sessions() as session:
            session.begin()
            rejections = kind.write_chunk(session, imp, chunk, stats)
            if imp.dry_run:
                session.rollback()
                session.begin()
            rejections.sort()
            stats.rows_read += len(chunk)
            stats.rejected += len(rejections)
            stats.bytes_read = counter.read
            _save_chunk(session, imp.id, rejections, stats)
            session.commit()
        report.writerows(rejections)
        out.flush()
        if progress is not None:
            progress(stats)


def _classify_people(
    sessions: sessionmaker[Session],
    imp: Import,
    source: Source,
    records: Iterator[_Record],
    counter: _Bytes,
    output: tuple[IO[str], Any],
    settings: Settings,
    stats: ImportProgress,
    progress: ProgressCallback | None = None,
) -> None:
    """A people dry run: build every message as a real run would, and count what each
    would do (by looking its identifiers up) instead of storing it."""
    out, report = output
    to_message = _people_message_maker(imp, source, _custom_check(sessions, imp))
    for chunk in _chunks(records, CHUNK_ROWS):
        messages, _lines_of, rejections = _build_messages(chunk, to_message)
        with sessions() as session, session.begin():
            classify = PERSON_CLASSIFIER[0](session, settings)
            for message in messages:
                outcome = classify(source.id, message)
                if outcome == "create":
                    stats.created += 1
                elif outcome == "update":
                    stats.updated += 1
                else:
                    stats.duplicates += 1
            rejections.sort()
            stats.rows_read += len(chunk)
            stats.rejected += len(rejections)
            stats.bytes_read = counter.read
            _save_chunk(session, imp.id, rejections, stats)
        report.writerows(rejections)
        out.flush()
        if progress is not None:
            progress(stats)


def _chunks(records: Iterator[_Record], size: int) -> Iterator[list[_Record]]:
    while chunk := list(islice(records, size)):
        yield chunk


def _build_messages(
    chunk: list[_Record], to_message: Callable[[_Record], dict[str, Any]]
) -> tuple[list[dict[str, Any]], list[int], list[Rejected]]:
    """The chunk's messages with their line numbers, and the rows that cannot be one."""
    messages: list[dict[str, Any]] = []
    lines: list[int] = []
    rejections: list[Rejected] = []
    for record in chunk:
        if record.error is not None:
            rejections.append((record.line, *record.error))
            continue
        try:
            messages.append(to_message(record))
            lines.append(record.line)
        except MessageError as exc:
            rejections.append((record.line, exc.code, exc.reason))
    return messages, lines, rejections


def _ingest_chunk(
    session: Session,
    source: Source,
    messages: list[dict[str, Any]],
    lines: list[int],
    skew: timedelta,
    stats: ImportProgress,
) -> list[Rejected]:
    """Ingest one chunk's messages; returns those validation refused, by line."""
    if not messages:
        return []
    result = ingest(
        session,
        source=source,
        envelope=Envelope(messages=messages),
        meta=RequestMeta(received_at=utcnow()),
        max_future_skew=skew,
    )
    stats.accepted += result.accepted - result.duplicates
    stats.duplicates += result.duplicates
    return [(lines[r.index or 0], r.code, r.reason) for r in result.rejected]


def _save_chunk(
    session: Session, import_id: uuid.UUID, rejections: list[Rejected], stats: ImportProgress
) -> None:
    if rejections:
        session.execute(
            insert(ImportRejection),
            [
                {"import_id": import_id, "line": line, "code": code, "reason": reason}
                for line, code, reason in rejections
            ],
        )
    session.execute(
        update(Import)
        .where(Import.id == import_id)
        .values(
            rows_read=stats.rows_read,
            accepted=stats.accepted,
            duplicates=stats.duplicates,
            rejected=stats.rejected,
            created=stats.created,
            updated=stats.updated,
            bytes_read=stats.bytes_read,
        )
    )


# --- reading files ---------------------------------------------------------------------


def _lines(handle: IO[bytes], counter: _Bytes) -> Iterator[tuple[int, bytes | None]]:
    """Yield (line number, bytes) per line, None for a line over the limit, never more."""
    number = 0
    while line := handle.readline(MAX_LINE_BYTES + 1):
        number += 1
        counter.read += len(line)
        if number == 1 and line.startswith(BOM):
            line = line[len(BOM) :]
        if len(line) > MAX_LINE_BYTES and not line.endswith(b"\n"):
            while line and not line.endswith(b"\n"):
                line = handle.readline(MAX_LINE_BYTES)
                counter.read += len(line)
            yield number, None
        else:
            yield number, line


def _too_long(line: int) -> _Record:
    return _Record(line, error=("line_too_long", f"the line is over {MAX_LINE_BYTES} bytes"))


def _jsonl_records(lines: Iterator[tuple[int, bytes | None]]) -> Iterator[_Record]:
    for number, line in lines:
        if line is None:
            yield _too_long(number)
        elif line.strip():
            yield _json_record(number, line.strip())


def _json_record(number: int, line: bytes) -> _Record:
    try:
        value = orjson.loads(line)
    except orjson.JSONDecodeError as exc:
        try:
            line.decode("utf-8")
        except UnicodeDecodeError as bad:
            reason = f"the line is not valid UTF-8 (byte {bad.start + 1})"
            return _Record(number, error=("invalid_utf8", reason))
        return _Record(number, error=("invalid_json", f"the line is not valid JSON: {exc}"))
    # Refused here line by line; at insert time it would fail the whole chunk.
    problem = unstorable(line, value)
    if problem is not None:
        code, reason, _path = problem
        return _Record(number, error=(code, reason))
    return _Record(number, value=value, digest=hashlib.sha256(line).hexdigest()[:40])


def _text_lines(
    lines: Iterator[tuple[int, bytes | None]], too_long: dict[int, bool]
) -> Iterator[str]:
    """Decoded lines for the csv module; bytes that are not UTF-8 survive as surrogates."""
    for number, line in lines:
        if line is None:
            too_long[number] = True
            yield "\n"
        else:
            yield line.decode("utf-8", "surrogateescape")


def _csv_records(lines: Iterator[tuple[int, bytes | None]]) -> Iterator[_Record]:
    too_long: dict[int, bool] = {}
    reader = csv.reader(_text_lines(lines, too_long))
    header = _csv_header(reader)
    while True:
        start = reader.line_num + 1
        try:
            row = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            yield _Record(start, error=("invalid_csv", f"the row cannot be read: {exc}"))
            continue
        if any(n <= reader.line_num for n in too_long):
            too_long.clear()
            yield _too_long(start)
        elif row:
            yield _csv_record(start, header, row)


def _csv_record(line: int, header: list[str], row: list[str]) -> _Record:
    if len(row) != len(header):
        reason = f"the row has {len(row)} fields, the header {len(header)}"
        return _Record(line, error=("wrong_field_count", reason))
    joined = "\x1f".join(row)
    try:
        joined.encode("utf-8")
    except UnicodeEncodeError:
        return _Record(line, error=("invalid_utf8", "the row is not valid UTF-8"))
    if "\0" in joined:
        return _Record(line, error=("invalid_character", "the row contains a NUL character"))
    return _Record(line, value={n: v for n, v in zip(header, row, strict=True) if n})


# --- building messages -----------------------------------------------------------------


def _events_message(record: _Record) -> dict[str, Any]:
    """The line's message; without a messageId it gets one derived from the line."""
    message = record.value
    if isinstance(message, dict):
        given = message.get("messageId")
        if given is None or (isinstance(given, str) and not given.strip()):
            message = {**message, "messageId": f"import-{record.digest}"}
    return message  # type: ignore[no-any-return]  # ingest refuses what is not an object


def _custom_check(sessions: sessionmaker[Session], imp: Import) -> CustomValues | None:
    targets = (imp.options.get("mapping") or {}).values()
    if not CUSTOM_VALUES or not any(t.startswith(CUSTOM) for t in targets):
        return None
    with sessions() as session:
        return CUSTOM_VALUES[0](session)


def _people_message_maker(
    imp: Import, source: Source, custom: CustomValues | None = None
) -> Callable[[_Record], dict[str, Any]]:
    plan = _PeoplePlan(
        source_id=source.id,
        slug=source_slug(source.name),
        import_id=imp.id,
        id_column=imp.options.get("id_column"),
        mapping=dict(imp.options.get("mapping") or {}),
        custom=custom,
    )
    return lambda record: _person_message(record, plan)


def source_slug(name: str) -> str:
    """A source name as an identifier part: ``Shop Export`` becomes ``shop_export``."""
    return re.sub(r"[^a-z0-9]+", "_", name.lower()).strip("_") or "source"


def _person_message(record: _Record, plan: _PeoplePlan) -> dict[str, Any]:
    """One row as an ``identify``; raises :class:`MessageError` when the row cannot be one."""
    row = record.value
    if not isinstance(row, dict):
        raise MessageError("invalid_type", "a person must be a JSON object")
    record_id = _record_id(row, plan.id_column)
    fields, traits, custom = _mapped(row, plan)
    if "userId" not in fields and "anonymousId" not in fields:
        fields["anonymousId"] = _anonymous_id(plan.slug, record_id, traits)
    content = orjson.dumps({**fields, "traits": traits}, option=orjson.OPT_SORT_KEYS)
    digest = hashlib.sha256(f"{plan.source_id}\x1f{record_id or ''}\x1f".encode() + content)
    context: dict[str, Any] = {
        "import": {"recordId": record_id, "line": record.line, "importId": str(plan.import_id)}
    }
    if custom:
        if plan.custom is None:
            raise MessageError("invalid_custom_field", "custom fields are not available here")
        context["crm"] = {"custom": plan.custom(custom)}
    if record_id is not None:
        context["externalIds"] = [
            {
                "id": record_id,
                "type": f"{plan.slug}_record_id",
                "collection": "users",
                "encoding": "none",
            }
        ]
    return {
        "type": "identify",
        "messageId": f"import-{digest.hexdigest()[:40]}",
        **fields,
        "traits": traits,
        "context": context,
    }


def _record_id(row: dict[str, Any], id_column: str | None) -> str | None:
    if id_column is None:
        return None
    value = row.get(id_column)
    if (
        isinstance(value, bool)
        or not isinstance(value, str | int | float)
        or not str(value).strip()
    ):
        raise MessageError(
            "missing_record_id", f"the row has no record id in column {id_column!r}", id_column
        )
    return str(value).strip()


def _mapped(
    row: dict[str, Any], plan: _PeoplePlan
) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
    """The row's message fields (userId, anonymousId, timestamp), traits and custom field
    values, by the mapping."""
    fields: dict[str, Any] = {}
    traits: dict[str, Any] = {}
    custom: dict[str, Any] = {}
    for column, value in row.items():
        if (
            value is None
            or value == ""
            or (column == plan.id_column and column not in plan.mapping)
        ):
            continue
        target = plan.mapping.get(column)
        if target == DROP:
            continue
        if target in MESSAGE_TARGETS:
            fields[MESSAGE_TARGETS[target]] = value
        elif target is not None and target.startswith(CUSTOM):
            custom[target.removeprefix(CUSTOM)] = value
        elif target is None:
            traits[column] = value
        else:
            _set_trait(traits, target.removeprefix("traits.").split("."), value)
    return fields, traits, custom


def _set_trait(traits: dict[str, Any], path: list[str], value: Any) -> None:
    node = traits
    for key in path[:-1]:
        child = node.get(key)
        if not isinstance(child, dict):
            child = node[key] = {}
        node = child
    node[path[-1]] = value


def _anonymous_id(slug: str, record_id: str | None, traits: dict[str, Any]) -> str:
    if record_id is not None:
        return f"import:{slug}:{record_id}"
    known = next((traits[k] for k in ("email", "phone") if traits.get(k)), None)
    if not isinstance(known, str | int | float) or isinstance(known, bool):
        raise MessageError(
            "missing_identifier",
            "the row has no user id, anonymous id, record id, email or phone",
            "userId",
        )
    digest = hashlib.sha256(str(known).strip().lower().encode()).hexdigest()[:32]
    return f"import:{slug}:{digest}"


# --- reading imports back --------------------------------------------------------------


def get_import(session: Session, import_id: uuid.UUID) -> Import:
    imp = session.get(Import, import_id)
    if imp is None:
        raise NotFound(f"no import with id {import_id}")
    return imp


def list_rejections(
    session: Session, import_id: uuid.UUID, *, limit: int = 50, cursor: str | None = None
) -> Page[ImportRejection]:
    """An import's refused rows in line order, with keyset pagination."""
    get_import(session, import_id)
    statement = select(ImportRejection).where(ImportRejection.import_id == import_id)
    after = decode_int_cursor(cursor)
    if after is not None:
        statement = statement.where(ImportRejection.id > after)
    rows = list(session.scalars(statement.order_by(ImportRejection.id).limit(limit + 1)))
    total = (
        session.scalar(
            select(func.count())
            .select_from(ImportRejection)
            .where(ImportRejection.import_id == import_id)
        )
        or 0
    )
    next_cursor = encode_cursor([rows[limit - 1].id]) if len(rows) > limit else None
    return Page[ImportRejection](items=rows[:limit], total=total, next_cursor=next_cursor)
