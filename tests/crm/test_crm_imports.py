"""CSV imports of companies and deals, dry runs of people imports: upserts by natural key,
bad rows rejected with their line numbers while good rows land, dry runs write nothing."""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

from fastapi.testclient import TestClient
from typer.testing import CliRunner

from patron.cli import app
from tests.conftest import MakeUser, User, run_json


def write_csv(path: Path, rows: list[list[Any]]) -> Path:
    with path.open("w", newline="", encoding="utf-8") as handle:
        csv.writer(handle).writerows(rows)
    return path


def rejections(result: dict[str, Any]) -> dict[int, str]:
    """The report's rejected rows: line number -> code and reason."""
    with Path(result["report_path"]).open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    return {int(r["line"]): f"{r['code']} {r['reason']}" for r in rows}


def companies_of(client: TestClient, user: User) -> dict[str, dict[str, Any]]:
    answer = client.get("/v1/companies?limit=200", headers=user.headers)
    assert answer.status_code == 200, answer.text
    return {c["domain"]: c for c in answer.json()["items"]}


def audit_count(client: TestClient, admin: User, company_id: str) -> int:
    answer = client.get(
        f"/v1/audit?record_type=company&record_id={company_id}", headers=admin.headers
    )
    assert answer.status_code == 200, answer.text
    return int(answer.json()["total"])


# --- companies -------------------------------------------------------------------------


def test_companies_are_created_then_updated_by_domain(
    cli: CliRunner, client: TestClient, admin: User, make_user: MakeUser, tmp_path: Path
) -> None:
    rep = make_user("sales")
    made = client.post(
        "/v1/custom-fields",
        json={"record_type": "company", "key": "seats", "type": "number"},
        headers=admin.headers,
    )
    assert made.status_code == 201
    path = write_csv(
        tmp_path / "companies.csv",
        [
            ["Company", "Website", "industry", "size", "seats", "notes"],
            ["Acme", "https://www.Acme.com/about", "Tools", "120", "12", "x"],
            ["Globex", "globex.com", "", "", "", "y"],
        ],
    )
    args = ["import", "companies", str(path), "--map", "Company=name", "--map", "Website=domain"]
    first = run_json(cli, *args, "--map", "seats=custom.seats", "--owner", rep.email)
    assert first["status"] == "done"
    assert (first["created"], first["updated"], first["rejected"]) == (2, 0, 0)
    assert first["ignored_columns"] == ["notes"]
    found = companies_of(client, admin)
    assert set(found) == {"acme.com", "globex.com"}
    acme = found["acme.com"]
    assert (acme["name"], acme["industry"], acme["size"]) == ("Acme", "Tools", 120)
    assert acme["custom"] == {"seats": 12}
    assert acme["owner_id"] == rep.id  # --owner for rows without an owner column
    assert audit_count(client, admin, acme["id"]) == 1

    again = run_json(cli, *args, "--map", "seats=custom.seats")
    assert (again["created"], again["updated"], again["duplicates"]) == (0, 0, 2)
    assert audit_count(client, admin, acme["id"]) == 1  # a rerun writes nothing

    write_csv(
        path,
        [
            ["Company", "Website", "industry", "size", "seats", "notes"],
            ["Acme Inc", "acme.com", "Tools", "150", "12", ""],
            ["Globex", "globex.com", "", "", "", ""],
        ],
    )
    changed = run_json(cli, *args, "--map", "seats=custom.seats")
    assert (changed["created"], changed["updated"], changed["duplicates"]) == (0, 1, 1)
    after = companies_of(client, admin)
    assert len(after) == 2
    assert (after["acme.com"]["name"], after["acme.com"]["size"]) == ("Acme Inc", 150)
    assert after["acme.com"]["id"] == acme["id"]
    assert after["acme.com"]["owner_id"] == rep.id  # an update keeps the owner
    entries = client.get(
        f"/v1/audit?record_type=company&record_id={acme['id']}", headers=admin.headers
    ).json()["items"]
    assert any(e["action"] == "update" and e["after"].get("size") == 150 for e in entries)


def test_bad_company_rows_are_rejected_with_line_numbers(
    cli: CliRunner, client: TestClient, admin: User, tmp_path: Path
) -> None:
    client.post(
        "/v1/custom-fields",
        json={"record_type": "company", "key": "founded", "type": "date"},
        headers=admin.headers,
    )
    path = write_csv(
        tmp_path / "companies.csv",
        [
            ["name", "domain", "size", "founded", "owner"],
            ["Good", "good.com", "10", "1999-05-01", ""],  # line 2
            ["Bad domain", "not a domain", "", "", ""],  # 3
            ["Twice", "good.com", "", "", ""],  # 4: the domain of line 2
            ["Big", "big.com", "many", "", ""],  # 5
            ["Dated", "dated.com", "", "yesterday", ""],  # 6
            ["Owned", "owned.com", "", "", "nobody@example.com"],  # 7
            ["", "noname.com", "", "", ""],  # 8: a new company needs a name
            ["Negative", "neg.com", "-5", "", ""],  # 9
            ["Also good", "also.com", "", "", ""],  # 10
        ],
    )
    result = run_json(cli, "import", "companies", str(path), "--map", "founded=custom.founded")
    assert (result["created"], result["rejected"]) == (2, 7)
    refused = rejections(result)
    assert sorted(refused) == [3, 4, 5, 6, 7, 8, 9]
    assert "domain" in refused[3]
    assert refused[4].startswith("duplicate_in_file")
    assert "size" in refused[5]
    assert "custom.founded" in refused[6]
    assert "owner" in refused[7]
    assert "name" in refused[8]
    assert "size" in refused[9]
    assert set(companies_of(client, admin)) == {"good.com", "also.com"}
    listed = client.get(f"/v1/imports/{result['id']}/rejections", headers=admin.headers).json()
    assert [r["line"] for r in listed["items"]] == [3, 4, 5, 6, 7, 8, 9]


def test_company_dry_run_reports_and_writes_nothing(
    cli: CliRunner, client: TestClient, admin: User, tmp_path: Path
) -> None:
    made = client.post(
        "/v1/companies", json={"name": "Old", "domain": "old.com"}, headers=admin.headers
    )
    assert made.status_code == 201
    path = write_csv(
        tmp_path / "companies.csv",
        [
            ["name", "domain"],
            ["Old renamed", "old.com"],
            ["New", "new.com"],
            ["Newer", "newer.com"],
            ["Broken", "-"],
        ],
    )
    result = run_json(cli, "import", "companies", str(path), "--dry-run")
    assert result["dry_run"] is True
    assert (result["created"], result["updated"], result["rejected"]) == (2, 1, 1)
    assert list(rejections(result)) == [5]
    found = companies_of(client, admin)
    assert set(found) == {"old.com"}
    assert found["old.com"]["name"] == "Old"
    assert audit_count(client, admin, found["old.com"]["id"]) == 1
    real = run_json(cli, "import", "companies", str(path))
    assert (real["created"], real["updated"], real["rejected"]) == (2, 1, 1)


def test_company_import_refusals_before_any_row(
    cli: CliRunner, client: TestClient, admin: User, tmp_path: Path
) -> None:
    header_only = write_csv(tmp_path / "empty.csv", [["name", "domain"]])
    result = cli.invoke(app, ["import", "companies", str(header_only), "--json"])
    assert result.exit_code == 1
    assert "no rows" in result.output

    path = write_csv(tmp_path / "c.csv", [["name", "domain"], ["A", "a.com"]])
    unknown_column = cli.invoke(app, ["import", "companies", str(path), "--map", "site=domain"])
    assert unknown_column.exit_code == 1
    assert "no column 'site'" in unknown_column.output
    unknown_target = cli.invoke(app, ["import", "companies", str(path), "--map", "name=title"])
    assert unknown_target.exit_code == 1
    assert "title" in unknown_target.output
    no_domain = write_csv(tmp_path / "nodomain.csv", [["name"], ["A"]])
    refused = cli.invoke(app, ["import", "companies", str(no_domain)])
    assert refused.exit_code == 1
    assert "domain" in refused.output
    assert companies_of(client, admin) == {}


def test_non_utf8_rows_are_rejected_and_the_rest_land(
    cli: CliRunner, client: TestClient, admin: User, tmp_path: Path
) -> None:
    path = tmp_path / "latin1.csv"
    path.write_bytes(b"name,domain\nCaf\xe9,cafe.com\nPlain,plain.com\n")
    result = run_json(cli, "import", "companies", str(path))
    assert (result["created"], result["rejected"]) == (1, 1)
    assert rejections(result)[2].startswith("invalid_utf8")
    assert set(companies_of(client, admin)) == {"plain.com"}
