"""Custom fields in people imports, and from the log: checked by type, bad rows rejected."""

from __future__ import annotations

import csv
from pathlib import Path

from fastapi.testclient import TestClient
from typer.testing import CliRunner

from tests.conftest import Lookup, Tracker, User, run_json


def test_import_people_maps_columns_to_custom_fields(
    cli: CliRunner,
    client: TestClient,
    admin: User,
    tracker: Tracker,
    lookup: Lookup,
    tmp_path: Path,
) -> None:
    for key, kind, extra in [
        ("seats", "number", {}),
        ("plan", "single_select", {"options": ["free", "pro"]}),
        ("renewal", "date", {}),
        ("addons", "multi_select", {"options": ["sso", "api"]}),
    ]:
        made = client.post(
            "/v1/custom-fields",
            json={"record_type": "person", "key": key, "type": kind, **extra},
            headers=admin.headers,
        )
        assert made.status_code == 201
    path = tmp_path / "people.csv"
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["id", "email", "seats", "tier", "renews", "addons"])
        writer.writerow(["1", "ann@example.com", "12", "pro", "2027-01-31", "sso;api"])
        writer.writerow(["2", "bob@example.com", "many", "pro", "2027-01-31", ""])
        writer.writerow(["3", "cy@example.com", "3", "gold", "", ""])
        writer.writerow(["4", "di@example.com", "3", "free", "9999-01-01", ""])
    args = ["import", "people", str(path), "--source", "Old CRM", "--id-column", "id"]
    maps = ["--map", "seats=custom.seats", "--map", "tier=custom.plan"]
    maps += ["--map", "renews=custom.renewal", "--map", "addons=custom.addons"]
    result = run_json(cli, *args, *maps)
    assert (result["accepted"], result["rejected"]) == (1, 3)
    report = Path(result["report_path"]).read_text()
    assert "line" in report
    assert "custom.seats" in report or "seats" in report
    tracker.process()
    ann = client.get(
        f"/v1/contacts/{lookup(email='ann@example.com')['id']}", headers=admin.headers
    ).json()
    assert ann["custom"] == {
        "seats": 12,
        "plan": "pro",
        "renewal": "2027-01-31",
        "addons": ["sso", "api"],
    }


def test_unknown_custom_target_rejects_rows(cli: CliRunner, tmp_path: Path) -> None:
    path = tmp_path / "people.csv"
    path.write_text("id,email,x\n1,a@example.com,1\n")
    args = ["import", "people", str(path), "--source", "S", "--id-column", "id"]
    result = run_json(cli, *args, "--map", "x=custom.nothing")
    assert (result["accepted"], result["rejected"]) == (0, 1)


def test_server_sources_set_custom_fields_browsers_do_not(
    client: TestClient, admin: User, tracker: Tracker, lookup: Lookup
) -> None:
    client.post(
        "/v1/custom-fields",
        json={"record_type": "person", "key": "seats", "type": "number"},
        headers=admin.headers,
    )
    tracker.send(
        {
            "type": "identify",
            "userId": "u1",
            "traits": {"email": "s@example.com"},
            "context": {"crm": {"custom": {"seats": 4}}},
        }
    )
    person = lookup(user_id="u1")["id"]
    assert client.get(f"/v1/contacts/{person}", headers=admin.headers).json()["custom"] == {
        "seats": 4
    }
    tracker.send(
        {"type": "identify", "userId": "u1", "context": {"crm": {"custom": {"seats": "x"}}}}
    )
    assert client.get(f"/v1/contacts/{person}", headers=admin.headers).json()["custom"] == {
        "seats": 4
    }
    browser = client.post(
        "/v1/sources", json={"name": "Web", "kind": "browser"}, headers=admin.headers
    ).json()
    key = browser.get("write_key") or browser.get("writeKey")
    answer = client.post(
        "/v1/identify",
        auth=(key, ""),
        json={"userId": "u1", "context": {"crm": {"custom": {"seats": 99}}}},
    )
    assert answer.status_code == 200, answer.text
    tracker.process()
    assert client.get(f"/v1/contacts/{person}", headers=admin.headers).json()["custom"] == {
        "seats": 4
    }
