"""File imports: events and people through ingest, reruns, rejections, CLI, API, memory."""

from __future__ import annotations

import csv
import json
import time
import tracemalloc
from pathlib import Path
from typing import Any

import orjson
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select
from sqlalchemy.orm import Session
from typer.testing import CliRunner

from patron.cli import app
from patron.collect import imports
from patron.collect.models import Event, Import, ImportRejection, Source
from patron.core.errors import InvalidInput, NotFound
from patron.core.runtime import Runtime
from tests.conftest import run_json

# --- helpers ---------------------------------------------------------------------------


def run(
    runtime: Runtime, path: Path, *, kind: str, source: str = "Files", **options: Any
) -> Import:
    """Record and run an import the way the CLI does; returns the finished row."""
    with runtime.sessions() as session:
        found, _created = imports.source_for_import(session, source, create=True)
        imp = imports.create_import(session, source=found, kind=kind, path=path, **options)
        session.commit()
    return imports.run_import(runtime.sessions, imp.id, settings=runtime.settings)


def log_state(runtime: Runtime) -> tuple[int, int | None]:
    with runtime.readers() as session:
        count = session.scalar(select(func.count()).select_from(Event)) or 0
        return count, session.scalar(select(func.max(Event.seq)))


def identifies(runtime: Runtime) -> list[dict[str, Any]]:
    with runtime.readers() as session:
        statement = select(Event.payload).where(Event.type == "identify").order_by(Event.seq)
        return list(session.scalars(statement))


def report_rows(imp: Import) -> list[dict[str, str]]:
    assert imp.report_path is not None
    with Path(imp.report_path).open(newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def jsonl(*messages: Any) -> bytes:
    return b"".join((m if isinstance(m, bytes) else orjson.dumps(m)) + b"\n" for m in messages)


EVENTS = jsonl(
    {"type": "track", "event": "Order Completed", "userId": "u1", "messageId": "m-1"},
    b"{not json",
    {"type": "identify", "userId": "u2", "traits": {"plan": "pro"}},
    b"",
    {"type": "page", "anonymousId": "a1", "name": "Home"},
    b'{"type": "track", "event": "Caf\xe9", "userId": "u3"}',
    {"type": "fax", "userId": "u4"},
    {"type": "track", "event": "No One"},
)


# --- events ----------------------------------------------------------------------------


def test_events_import_stores_each_message_once_and_a_rerun_changes_nothing(
    runtime: Runtime, tmp_path: Path, db: Session
) -> None:
    path = tmp_path / "events.jsonl"
    path.write_bytes(EVENTS)

    first = run(runtime, path, kind="events")
    assert first.status == "done"
    assert (first.rows_read, first.accepted, first.duplicates, first.rejected) == (7, 3, 0, 4)
    assert first.bytes_read == first.bytes_total == len(EVENTS)
    count, max_seq = log_state(runtime)
    assert count == 3
    generated = db.scalar(select(Event.message_id).where(Event.user_id == "u2"))
    assert generated is not None
    assert generated.startswith("import-")

    again = run(runtime, path, kind="events")
    assert (again.accepted, again.duplicates, again.rejected) == (0, 3, 4)
    assert log_state(runtime) == (count, max_seq)


def test_bad_event_lines_are_reported_with_line_numbers(
    runtime: Runtime, tmp_path: Path, db: Session
) -> None:
    path = tmp_path / "events.jsonl"
    path.write_bytes(EVENTS)
    imp = run(runtime, path, kind="events")

    expected = [
        ("2", "invalid_json"),
        ("6", "invalid_utf8"),
        ("7", "invalid_type"),
        ("8", "missing_identity"),
    ]
    rows = report_rows(imp)
    assert [(r["line"], r["code"]) for r in rows] == expected
    assert "byte" in rows[1]["reason"]
    assert Path(str(imp.report_path)).parent == runtime.settings.data_dir / "imports"
    stored = db.execute(
        select(ImportRejection.line, ImportRejection.code)
        .where(ImportRejection.import_id == imp.id)
        .order_by(ImportRejection.line)
    ).all()
    assert [(str(line), code) for line, code in stored] == expected


def test_lines_no_database_can_store_are_rejected_not_fatal(
    runtime: Runtime, tmp_path: Path
) -> None:
    deep = b'{"type": "track", "event": "D", "userId": "u", "x": ' + b"[" * 300 + b"]" * 300
    path = tmp_path / "events.jsonl"
    path.write_bytes(
        jsonl(
            {"type": "track", "event": "Nul\u0000", "userId": "u"},
            deep + b"}",
            {"type": "track", "event": "Fine", "userId": "u", "note": "a \\u0000 b"},
        )
    )
    imp = run(runtime, path, kind="events")
    assert (imp.status, imp.accepted) == ("done", 1)
    assert [(r["line"], r["code"]) for r in report_rows(imp)] == [
        ("1", "invalid_character"),
        ("2", "too_deep"),
    ]
    people = tmp_path / "people.csv"
    people.write_bytes(b"id,name\n1,a\x00b\n2,ok\n")
    imp = run(runtime, people, kind="people", id_column="id")
    assert (imp.status, imp.accepted, imp.rejected) == ("done", 1, 1)
    assert report_rows(imp)[0]["code"] == "invalid_character"


def test_an_empty_file_is_refused_before_anything_starts(runtime: Runtime, tmp_path: Path) -> None:
    for content in (b"", b"\xef\xbb\xbf\n  \n"):
        path = tmp_path / "empty.jsonl"
        path.write_bytes(content)
        with pytest.raises(InvalidInput) as caught:
            run(runtime, path, kind="events")
        assert caught.value.code == "empty_file"


# --- people ----------------------------------------------------------------------------

PEOPLE_HEADER = "crm_id,email,first_name,customer_no,notes\n"
PEOPLE_ROWS = [
    "1,ann@example.com,Ann,C-1,likes tea\n",
    "2,bob@example.com,Bob,,\n",
]
PEOPLE_OPTIONS: dict[str, Any] = {
    "id_column": "crm_id",
    "mapping": {"first_name": "traits.firstName", "customer_no": "user_id", "email": "email"},
}


def write_people(path: Path, rows: list[str], *, bom: bool = True) -> None:
    text = PEOPLE_HEADER + "".join(rows)
    path.write_bytes((b"\xef\xbb\xbf" if bom else b"") + text.encode())


def test_people_csv_becomes_identifies_by_the_mapping(runtime: Runtime, tmp_path: Path) -> None:
    path = tmp_path / "people.csv"
    write_people(path, PEOPLE_ROWS)
    imp = run(runtime, path, kind="people", source="Old CRM", **PEOPLE_OPTIONS)
    assert (imp.status, imp.accepted, imp.rejected) == ("done", 2, 0)

    ann, bob = identifies(runtime)
    assert ann["userId"] == "C-1"
    assert "anonymousId" not in ann
    assert ann["traits"] == {"email": "ann@example.com", "firstName": "Ann", "notes": "likes tea"}
    assert ann["context"]["externalIds"] == [
        {"id": "1", "type": "old_crm_record_id", "collection": "users", "encoding": "none"}
    ]
    assert ann["context"]["import"]["recordId"] == "1"
    assert ann["context"]["import"]["line"] == 2
    # No user id mapped for Bob: the anonymous id is derived from the record id.
    assert bob["anonymousId"] == "import:old_crm:2"
    assert bob["traits"] == {"email": "bob@example.com", "firstName": "Bob"}


def test_people_rerun_changes_nothing_and_a_changed_row_adds_one_identify(
    runtime: Runtime, tmp_path: Path
) -> None:
    path = tmp_path / "people.csv"
    write_people(path, PEOPLE_ROWS)
    run(runtime, path, kind="people", **PEOPLE_OPTIONS)
    state = log_state(runtime)

    again = run(runtime, path, kind="people", **PEOPLE_OPTIONS)
    assert (again.accepted, again.duplicates) == (0, 2)
    assert log_state(runtime) == state

    # Bob's first name changes and the rows swap places: only Bob is new.
    write_people(path, ["2,bob@example.com,Robert,,\n", PEOPLE_ROWS[0]])
    changed = run(runtime, path, kind="people", **PEOPLE_OPTIONS)
    assert (changed.accepted, changed.duplicates) == (1, 1)
    assert log_state(runtime)[0] == state[0] + 1
    latest = identifies(runtime)[-1]
    assert latest["anonymousId"] == "import:files:2"
    assert latest["traits"]["firstName"] == "Robert"


def test_people_rows_without_record_id_or_valid_utf8_are_rejected_by_line(
    runtime: Runtime, tmp_path: Path
) -> None:
    path = tmp_path / "people.csv"
    rows = (
        PEOPLE_HEADER.encode()
        + b"1,ann@example.com,Ann,C-1,\n"
        + b",nobody@example.com,No,C-2,\n"
        + b"3,caf\xe9@example.com,Cafe,C-3,\n"
        + b'4,dan@example.com,"Dan\nthe man",C-4,\n'
        + b"5,too,many,fields,here,really\n"
        + b"6,eve@example.com,Eve,C-6,\n"
    )
    path.write_bytes(rows)
    imp = run(runtime, path, kind="people", **PEOPLE_OPTIONS)
    assert (imp.accepted, imp.rejected) == (3, 3)
    assert [(r["line"], r["code"]) for r in report_rows(imp)] == [
        ("3", "missing_record_id"),
        ("4", "invalid_utf8"),
        ("7", "wrong_field_count"),
    ]
    assert identifies(runtime)[1]["traits"]["firstName"] == "Dan\nthe man"


def test_people_jsonl_without_id_column(runtime: Runtime, tmp_path: Path) -> None:
    path = tmp_path / "people.jsonl"
    path.write_bytes(
        jsonl(
            {"uid": 7, "mail": "Gail@Example.com", "address": {"city": "Oslo"}},
            {"mail": "hal@example.com", "secret": "x"},
            {"nickname": "ghost"},
            ["not", "an", "object"],
        )
    )
    mapping = {"uid": "user_id", "mail": "email", "secret": "-"}
    imp = run(runtime, path, kind="people", mapping=mapping)
    assert (imp.accepted, imp.rejected) == (2, 2)
    assert [(r["line"], r["code"]) for r in report_rows(imp)] == [
        ("3", "missing_identifier"),
        ("4", "invalid_type"),
    ]
    gail, hal = identifies(runtime)
    assert gail["userId"] == "7"
    assert gail["traits"] == {"email": "Gail@Example.com", "address": {"city": "Oslo"}}
    assert "externalIds" not in gail["context"]
    assert hal["anonymousId"].startswith("import:files:")
    assert hal["traits"] == {"email": "hal@example.com"}


def test_people_options_are_checked_before_the_import_starts(
    runtime: Runtime, tmp_path: Path, db: Session
) -> None:
    path = tmp_path / "people.csv"
    write_people(path, PEOPLE_ROWS)
    cases: list[tuple[dict[str, Any], str]] = [
        ({"id_column": "nope"}, "id_column"),
        ({"mapping": {"missing": "email"}}, "mapping"),
        ({"mapping": {"email": "traits..x"}}, "mapping"),
        ({"file_format": "xml"}, "format"),
    ]
    for options, field in cases:
        with pytest.raises(InvalidInput) as caught:
            run(runtime, path, kind="people", **options)
        assert caught.value.field == field
    with pytest.raises(InvalidInput):
        run(runtime, path, kind="contacts")
    assert db.scalar(select(func.count()).select_from(Import)) == 0

    header_only = tmp_path / "header.csv"
    header_only.write_text(PEOPLE_HEADER)
    failed = run(runtime, header_only, kind="people")
    assert (failed.status, failed.error) == ("failed", "the file has no rows")


def test_import_into_a_missing_source_is_refused_unless_asked_to_create(
    runtime: Runtime,
) -> None:
    with runtime.sessions() as session:
        with pytest.raises(NotFound):
            imports.source_for_import(session, "Nowhere", create=False)
        made, created = imports.source_for_import(session, "Nowhere", create=True)
        assert (made.kind, created) == ("import", True)


# --- constant memory -------------------------------------------------------------------


def test_memory_stays_flat_whatever_the_file_size(runtime: Runtime, tmp_path: Path) -> None:
    # 20,000 lines of about 2 kB: enough rows for 40 chunks, small enough to stay quick.
    path = tmp_path / "big.jsonl"
    padding = "x" * 2000
    with path.open("wb") as handle:
        for n in range(20_000):
            message = {"type": "track", "event": "Viewed", "userId": f"u{n % 997}"}
            handle.write(orjson.dumps({**message, "properties": {"n": n, "pad": padding}}))
            handle.write(b"\n")
    size = path.stat().st_size
    assert size > 40_000_000

    tracemalloc.start()
    try:
        imp = run(runtime, path, kind="events")
        _current, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert (imp.status, imp.accepted, imp.rows_read) == ("done", 20_000, 20_000)
    # Measured: about 4 MB on SQLite and 7 MB on PostgreSQL, a tenth of the file or less.
    assert peak < size / 4, f"peak {peak} bytes for a file of {size} bytes"


# --- CLI -------------------------------------------------------------------------------


def test_cli_imports_print_one_json_object(
    cli: CliRunner, runtime: Runtime, tmp_path: Path, db: Session
) -> None:
    events = tmp_path / "events.jsonl"
    events.write_bytes(EVENTS)
    first = run_json(cli, "import", "events", str(events), "--source", "Backfill")
    assert first["source_created"] is True
    assert (first["status"], first["accepted"], first["duplicates"], first["rejected"]) == (
        "done",
        3,
        0,
        4,
    )
    assert Path(first["report_path"]).is_file()
    again = run_json(cli, "import", "events", str(events), "--source", "Backfill")
    assert (again["source_created"], again["accepted"], again["duplicates"]) == (False, 0, 3)
    assert db.scalar(select(Source.kind).where(Source.name == "Backfill")) == "import"

    people = tmp_path / "people.txt"
    write_people(people, PEOPLE_ROWS)
    args = ["import", "people", str(people), "--source", "Old CRM", "--id-column", "crm_id"]
    mapped = [*args, "--format", "csv", "--map", "customer_no=user_id", "--map", "notes=-"]
    result = run_json(cli, *mapped)
    assert (result["accepted"], result["rejected"]) == (2, 0)
    ann, bob = identifies(runtime)[-2:]
    assert (ann["userId"], bob.get("userId")) == ("C-1", None)
    assert "notes" not in ann["traits"]


def test_cli_reports_bad_options_clearly(cli: CliRunner, tmp_path: Path) -> None:
    people = tmp_path / "people.csv"
    write_people(people, PEOPLE_ROWS)
    bad_map = cli.invoke(app, ["import", "people", str(people), "--source", "S", "--map", "x"])
    assert bad_map.exit_code == 1
    assert "COLUMN=TARGET" in bad_map.output
    empty = tmp_path / "empty.jsonl"
    empty.write_bytes(b"")
    refused = cli.invoke(app, ["import", "events", str(empty), "--source", "S"])
    assert refused.exit_code == 1
    assert "empty" in refused.output


# --- API -------------------------------------------------------------------------------


def upload(
    client: TestClient, headers: dict[str, str], content: bytes, name: str, **form: str
) -> Any:
    files = {"file": (name, content, "application/octet-stream")}
    return client.post("/v1/imports", files=files, data=form, headers=headers)


def test_api_upload_runs_in_the_background_and_reports_progress(
    client: TestClient, admin_headers: dict[str, str], source: tuple[Source, str]
) -> None:
    people = (PEOPLE_HEADER + "".join(PEOPLE_ROWS) + ",x@example.com,X,,\n").encode()
    mapping = json.dumps({"customer_no": "user_id", "first_name": "firstName"})
    made = upload(
        client,
        admin_headers,
        people,
        "people.csv",
        kind="people",
        source="Backend",
        id_column="crm_id",
        mapping=mapping,
    )
    assert made.status_code == 202, made.text
    import_id = made.json()["id"]

    status: dict[str, Any] = {}
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        status = client.get(f"/v1/imports/{import_id}", headers=admin_headers).json()
        if status["status"] in ("done", "failed"):
            break
        time.sleep(0.05)
    assert status["status"] == "done", status
    assert (status["rows_read"], status["accepted"], status["rejected"]) == (3, 2, 1)
    assert status["bytes_read"] == status["bytes_total"] == len(people)

    page = client.get(
        f"/v1/imports/{import_id}/rejections", params={"limit": 1}, headers=admin_headers
    ).json()
    assert page["total"] == 1
    assert (page["items"][0]["line"], page["items"][0]["code"]) == (4, "missing_record_id")
    assert page["next_cursor"] is None


def test_api_rejections_are_keyset_paginated(
    client: TestClient, admin_headers: dict[str, str], source: tuple[Source, str]
) -> None:
    bad = b"".join(b"nope %d\n" % n for n in range(5))
    made = upload(client, admin_headers, bad, "x.jsonl", kind="events", source="Backend")
    assert made.status_code == 202
    url = f"/v1/imports/{made.json()['id']}/rejections"
    lines: list[int] = []
    cursor = None
    while True:
        params: dict[str, Any] = {"limit": 2, **({"cursor": cursor} if cursor else {})}
        page = client.get(url, params=params, headers=admin_headers).json()
        lines += [item["line"] for item in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert lines == [1, 2, 3, 4, 5]


def test_api_errors_are_clear_4xx(
    client: TestClient,
    admin_headers: dict[str, str],
    credentials: Any,
    source: tuple[Source, str],
) -> None:
    content = jsonl({"type": "track", "event": "E", "userId": "u"})
    wrong_kind = upload(client, admin_headers, content, "e.jsonl", kind="orders", source="Backend")
    assert (wrong_kind.status_code, wrong_kind.json()["field"]) == (400, "kind")
    no_file = client.post(
        "/v1/imports", data={"kind": "events", "source": "Backend"}, headers=admin_headers
    )
    assert (no_file.status_code, no_file.json()["field"]) == (400, "file")
    unknown = upload(client, admin_headers, content, "e.jsonl", kind="events", source="Nope")
    assert (unknown.status_code, unknown.json()["field"]) == (404, "source")
    empty = upload(client, admin_headers, b"", "e.jsonl", kind="events", source="Backend")
    assert (empty.status_code, empty.json()["code"]) == (400, "empty_file")
    bad_map = upload(
        client, admin_headers, b"a\n1\n", "p.csv", kind="people", source="Backend", mapping="[1]"
    )
    assert (bad_map.status_code, bad_map.json()["field"]) == (400, "mapping")
    no_format = upload(client, admin_headers, b"a\n1\n", "p.txt", kind="people", source="Backend")
    assert (no_format.status_code, no_format.json()["field"]) == (400, "format")
    told = upload(
        client, admin_headers, b"a\n1\n", "p.txt", kind="people", source="Backend", format="csv"
    )
    assert told.status_code == 202, told.text
    missing = client.get("/v1/imports/00000000-0000-0000-0000-000000000000", headers=admin_headers)
    assert missing.status_code == 404

    analyst = credentials.headers("analyst")
    refused = upload(client, analyst, content, "e.jsonl", kind="events", source="Backend")
    assert refused.status_code == 403
    marketing = credentials.headers("marketing")
    allowed = upload(client, marketing, content, "e.jsonl", kind="events", source="Backend")
    assert allowed.status_code == 202
