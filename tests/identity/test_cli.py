"""The identity commands: merges, unmerge, rebuild, export people."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from patron.cli import app
from tests.conftest import Lookup, Tracker, run_json


def test_unmerge_rebuild_and_export_from_the_command_line(
    cli: CliRunner, tracker: Tracker, lookup: Lookup, tmp_path: Path
) -> None:
    tracker.send(
        {"type": "page", "anonymousId": "a-1", "name": "Home"},
        {"type": "identify", "userId": "u-1", "traits": {"email": "u1@example.com"}},
        {
            "type": "identify",
            "anonymousId": "imp-7",
            "traits": {"name": "Imported"},
            "context": {"externalIds": [{"id": "7", "type": "crm_record_id"}]},
        },
    )
    tracker.send({"type": "identify", "userId": "u-1", "anonymousId": "a-1"})
    person = lookup(user_id="u-1")
    history = run_json(cli, "identity", "merges", person["id"])
    [merge] = history["merges"]
    assert merge["reason"] == "message"

    undone = run_json(cli, "identity", "unmerge", str(merge["id"]))
    assert undone["undone_at"] is not None
    assert lookup(user_id="u-1")["id"] != lookup(anonymous_id="a-1")["id"]
    again = cli.invoke(app, ["identity", "unmerge", str(merge["id"])])
    assert again.exit_code == 1
    assert "already undone" in again.output

    rebuilt = run_json(cli, "rebuild")
    assert rebuilt["events"] == 4
    assert lookup(user_id="u-1")["id"] != lookup(anonymous_id="a-1")["id"]

    out = tmp_path / "people.jsonl"
    result = cli.invoke(app, ["export", "people", str(out)])
    assert result.exit_code == 0, result.output
    people = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(people) == 3
    imported = next(p for p in people if p["traits"].get("name") == "Imported")
    assert {"kind": "crm_record_id", "value": "7"} in imported["identities"]


def test_identity_commands_reject_bad_ids(cli: CliRunner) -> None:
    bad = cli.invoke(app, ["identity", "merges", "nope"])
    assert bad.exit_code == 1
    assert "not a person id" in bad.output
    missing = cli.invoke(app, ["identity", "unmerge", "999"])
    assert missing.exit_code == 1
    assert "no merge" in missing.output
