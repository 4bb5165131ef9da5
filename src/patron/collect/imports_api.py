"""File imports over HTTP: upload a file, poll its progress, read the refused rows."""

from __future__ import annotations

import uuid
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any, BinaryIO

import orjson
from fastapi import APIRouter, BackgroundTasks, Depends, File, Form, UploadFile, status
from pydantic import BaseModel, ConfigDict, Field

from patron.auth.deps import require
from patron.auth.models import Role
from patron.auth.service import Actor
from patron.collect import imports
from patron.collect.service import get_source_by_name
from patron.core.errors import InvalidInput, PayloadTooLarge
from patron.core.ids import new_id
from patron.core.runtime import Runtime
from patron.core.web import DB, Cursor, Limit, RuntimeDep

router = APIRouter(prefix="/v1", tags=["imports"])
Importer = Annotated[Actor, Depends(require(Role.manager, Role.marketing))]
# Starlette has already spooled the upload to a temporary file; this caps our copy of it.
MAX_UPLOAD_BYTES = 4 * 1024**3
COPY_BLOCK = 1024 * 1024


class ImportOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    id: uuid.UUID
    source_id: uuid.UUID
    kind: str
    filename: str
    status: str = Field(description="pending, running, done or failed.")
    rows_read: int
    accepted: int = Field(
        description="Events and people: messages newly stored. Companies and deals: records "
        "created or updated."
    )
    duplicates: int = Field(
        description="Messages the log already had, or records the row would not change (a rerun)."
    )
    rejected: int
    created: int = Field(description="Records created (companies, deals; people dry runs).")
    updated: int = Field(description="Records updated (companies, deals; people dry runs).")
    dry_run: bool = Field(description="Rows checked and counted; nothing written.")
    bytes_total: int
    bytes_read: int
    error: str | None
    created_at: datetime
    finished_at: datetime | None


class ImportRejectionOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    id: int
    line: int
    code: str
    reason: str


class ImportRejectionPage(BaseModel):
    items: list[ImportRejectionOut]
    total: int
    total_exact: bool = Field(
        True, description="False when total is only a lower bound: lists count up to 1,000."
    )
    next_cursor: str | None


@router.post("/imports", response_model=ImportOut, status_code=status.HTTP_202_ACCEPTED)
def upload_import(
    db: DB,
    runtime: RuntimeDep,
    actor: Importer,
    background: BackgroundTasks,
    file: Annotated[UploadFile | None, File(description="The CSV or JSONL file.")] = None,
    kind: Annotated[str, Form(description="events, people, companies or deals.")] = "",
    source: Annotated[
        str, Form(description="Name of the source the rows come from (events and people).")
    ] = "",
    id_column: Annotated[str | None, Form(description="Column of the record id.")] = None,
    dry_run: Annotated[bool, Form(description="Check and count the rows; write none.")] = False,
    pipeline: Annotated[str | None, Form(description="Deals: the pipeline's name.")] = None,
    owner: Annotated[
        str | None, Form(description="Companies and deals: email of new records' owner.")
    ] = None,
    mapping: Annotated[
        str | None, Form(description='JSON object {"column": "target"}; see the docs.')
    ] = None,
    file_format: Annotated[
        str | None, Form(alias="format", description="csv or jsonl; default: extension.")
    ] = None,
) -> Any:
    """Upload a file to import; answers 202 at once and imports in the background.

    Companies and deals are written as the caller (their permissions, their name in the
    audit log)."""
    if kind not in imports.import_kinds():
        kinds = ", ".join(imports.import_kinds())
        raise InvalidInput(f"kind must be one of {kinds}, got {kind!r}", field="kind")
    if file is None:
        raise InvalidInput("send the file as the multipart field `file`", field="file")
    record_kind = imports.RECORD_KINDS.get(kind)
    extra: dict[str, Any] = {}
    if record_kind is not None:
        found = record_kind.source(db)
        extra = {"pipeline": pipeline, "owner": owner, "actor": _actor_option(actor)}
    elif not source.strip():
        raise InvalidInput("name the source the rows come from", field="source")
    else:
        found = get_source_by_name(db, source.strip())
    parsed_mapping = _mapping(mapping)
    filename = Path(file.filename or "upload").name[-200:]
    path = _store_upload(file.file, runtime.settings.data_dir / "imports" / "uploads")
    try:
        imp = imports.create_import(
            db,
            source=found,
            kind=kind,
            path=path,
            filename=filename,
            file_format=file_format or None,
            id_column=id_column,
            mapping=parsed_mapping,
            actor=actor,
            dry_run=dry_run,
            extra=extra,
        )
        db.commit()
    except Exception:
        path.unlink(missing_ok=True)
        raise
    background.add_task(_run_upload, runtime, imp.id, path)
    return imp


def _run_upload(runtime: Runtime, import_id: uuid.UUID, path: Path) -> None:
    # The upload is our copy: once imported (the report keeps what was refused) it goes.
    try:
        imports.run_import(runtime.sessions, import_id, settings=runtime.settings)
    finally:
        path.unlink(missing_ok=True)


def _actor_option(actor: Actor) -> dict[str, Any]:
    return {"user_id": str(actor.user_id), "email": actor.email, "role": actor.role.value}


def _mapping(text: str | None) -> dict[str, str] | None:
    if not text:
        return None
    try:
        value = orjson.loads(text)
    except orjson.JSONDecodeError:
        value = None
    if not isinstance(value, dict) or not all(isinstance(v, str) for v in value.values()):
        raise InvalidInput(
            'mapping must be a JSON object of column to target, like {"mail": "email"}',
            field="mapping",
        )
    return {str(k): v for k, v in value.items()}


def _store_upload(upload: BinaryIO, folder: Path) -> Path:
    """Copy the upload to our folder block by block, never holding it in memory."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{new_id().hex}.upload"  # the original name is kept on the import
    copied = 0
    with path.open("wb") as out:
        while block := upload.read(COPY_BLOCK):
            copied += len(block)
            if copied > MAX_UPLOAD_BYTES:
                out.close()
                path.unlink(missing_ok=True)
                raise PayloadTooLarge(f"the file is over {MAX_UPLOAD_BYTES} bytes", field="file")
            out.write(block)
    return path


@router.get("/imports/{import_id}", response_model=ImportOut)
def get_import(import_id: uuid.UUID, db: DB, _actor: Importer) -> Any:
    """An import's status and progress: rows and bytes read so far, and the counts."""
    return imports.get_import(db, import_id)


@router.get("/imports/{import_id}/rejections", response_model=ImportRejectionPage)
def list_rejections(
    import_id: uuid.UUID, db: DB, _actor: Importer, limit: Limit = 50, cursor: Cursor = None
) -> ImportRejectionPage:
    """The rows an import refused, in line order, each with its reason."""
    page = imports.list_rejections(db, import_id, limit=limit, cursor=cursor)
    return ImportRejectionPage(
        items=[ImportRejectionOut.model_validate(r) for r in page.items],
        total=page.total,
        total_exact=page.total_exact,
        next_cursor=page.next_cursor,
    )
