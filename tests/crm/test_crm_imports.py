"""CSV imports of companies and deals, dry runs of people imports: upserts by natural key,
bad rows rejected with their line numbers while good rows land, dry runs write nothing."""

from __future__ import annotations

import csv
import io
import time
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from patron.cli import app
from tests.conftest import MakePerson, MakeUser, Tracker, User, run_json


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


# --- deals -----------------------------------------------------------------------------


@pytest.fixture
def pipelines(client: TestClient, admin: User) -> dict[str, dict[str, Any]]:
    made = {}
    for name, stages in (("Sales", ["Lead", "Proposal", "Won"]), ("Renewals", ["Due"])):
        answer = client.post(
            "/v1/pipelines",
            json={
                "name": name,
                "stages": [{"name": s, "probability": 10 * (i + 1)} for i, s in enumerate(stages)],
            },
            headers=admin.headers,
        )
        assert answer.status_code == 201, answer.text
        made[name] = answer.json()
    return made


def deals_of(client: TestClient, user: User) -> dict[str, dict[str, Any]]:
    answer = client.get("/v1/deals?limit=200", headers=user.headers)
    assert answer.status_code == 200, answer.text
    return {d["name"]: d for d in answer.json()["items"]}


def test_deals_are_created_then_updated_by_external_id(
    cli: CliRunner,
    client: TestClient,
    admin: User,
    make_user: MakeUser,
    make_person: MakePerson,
    pipelines: dict[str, dict[str, Any]],
    tracker: Tracker,
    tmp_path: Path,
) -> None:
    rep = make_user("sales")
    ann = make_person("ann@example.com")
    acme = client.post(
        "/v1/companies", json={"name": "Acme", "domain": "acme.com"}, headers=admin.headers
    ).json()
    header = ["id", "Deal", "amount", "currency", "stage", "contact", "company", "close"]
    path = write_csv(
        tmp_path / "deals.csv",
        [
            header,
            [
                "D-1",
                "Acme renewal",
                "1200.50",
                "eur",
                "Proposal",
                "Ann@Example.com",
                "www.acme.com",
                "2027-03-31",
            ],
            ["D-2", "Small one", "", "", "", "", "", ""],
        ],
    )
    args = ["import", "deals", str(path), "--pipeline", "Sales", "--id-column", "id"]
    maps = [
        "--map",
        "Deal=name",
        "--map",
        "contact=person_email",
        "--map",
        "company=company_domain",
    ]
    maps += ["--map", "close=expected_close_date", "--owner", rep.email]
    first = run_json(cli, *args, *maps)
    assert (first["created"], first["updated"], first["rejected"]) == (2, 0, 0), first
    found = deals_of(client, admin)
    deal = found["Acme renewal"]
    assert (deal["amount"], deal["currency"]) == ("1200.5000", "EUR")
    assert deal["stage_id"] == pipelines["Sales"]["stages"][1]["id"]
    assert (deal["person_id"], deal["company_id"]) == (ann, acme["id"])
    assert deal["expected_close_date"] == "2027-03-31"
    assert deal["owner_id"] == rep.id
    assert found["Small one"]["stage_id"] == pipelines["Sales"]["stages"][0]["id"]
    tracker.process()
    timeline = client.get(f"/v1/contacts/{ann}/timeline", headers=admin.headers).json()
    assert [i["title"] for i in timeline["items"]] == ["Deal Created", "identify"]

    again = run_json(cli, *args, *maps)
    assert (again["created"], again["updated"], again["duplicates"]) == (0, 0, 2)

    write_csv(
        path,
        [
            [*header, "status"],
            ["D-1", "Acme renewal", "1500", "EUR", "Won", "", "", "", "won"],
            ["D-2", "Small one", "", "", "", "", "", "", ""],
        ],
    )
    changed = run_json(cli, *args, *maps, "--map", "status=status")
    assert (changed["created"], changed["updated"], changed["duplicates"]) == (0, 1, 1)
    after = deals_of(client, admin)
    assert len(after) == 2
    won = after["Acme renewal"]
    assert (won["id"], won["amount"], won["status"]) == (deal["id"], "1500.0000", "won")
    history = client.get(f"/v1/deals/{deal['id']}/stages", headers=admin.headers).json()
    assert [h["stage"] for h in history] == ["Proposal", "Won"]


def test_bad_deal_rows_are_rejected_with_line_numbers(
    cli: CliRunner,
    client: TestClient,
    admin: User,
    pipelines: dict[str, dict[str, Any]],
    tmp_path: Path,
) -> None:
    client.post(
        "/v1/custom-fields",
        json={"record_type": "deal", "key": "seats", "type": "number"},
        headers=admin.headers,
    )
    path = write_csv(
        tmp_path / "deals.csv",
        [
            ["id", "name", "amount", "currency", "stage", "seats", "company_domain"],
            ["1", "Good", "10", "USD", "Lead", "3", ""],  # line 2
            ["2", "Unknown stage", "", "", "Nowhere", "", ""],  # 3
            ["3", "Other pipeline", "", "", "Due", "", ""],  # 4
            ["4", "Text amount", "ten", "USD", "", "", ""],  # 5
            ["5", "Negative", "-5", "USD", "", "", ""],  # 6
            ["6", "Bad currency", "5", "XYZ", "", "", ""],  # 7
            ["7", "Bad seats", "", "", "", "many", ""],  # 8
            ["1", "Twice", "", "", "", "", ""],  # 9: the id of line 2
            ["", "No id", "", "", "", "", ""],  # 10
            ["8", "No company", "", "", "", "", "nowhere.com"],  # 11
            ["9", "Also good", "", "", "", "", ""],  # 12
        ],
    )
    args = ["import", "deals", str(path), "--pipeline", "Sales", "--id-column", "id"]
    result = run_json(cli, *args, "--map", "seats=custom.seats")
    assert (result["created"], result["rejected"]) == (2, 9), result
    refused = rejections(result)
    assert sorted(refused) == [3, 4, 5, 6, 7, 8, 9, 10, 11]
    assert "stage" in refused[3]
    assert "Nowhere" in refused[3]
    assert "Renewals" in refused[4]
    assert "amount" in refused[5]
    assert "amount" in refused[6]
    assert "currency" in refused[7]
    assert "custom.seats" in refused[8]
    assert refused[9].startswith("duplicate_in_file")
    assert refused[10].startswith("missing_record_id")
    assert "company_domain" in refused[11]
    assert set(deals_of(client, admin)) == {"Good", "Also good"}
    assert deals_of(client, admin)["Good"]["custom"] == {"seats": 3}


def test_deal_dry_run_and_refusals(
    cli: CliRunner,
    client: TestClient,
    admin: User,
    pipelines: dict[str, dict[str, Any]],
    tmp_path: Path,
) -> None:
    path = write_csv(
        tmp_path / "deals.csv", [["id", "name", "stage"], ["1", "A", "Lead"], ["2", "B", "?"]]
    )
    args = ["import", "deals", str(path), "--pipeline", "Sales", "--id-column", "id"]
    dry = run_json(cli, *args, "--dry-run")
    assert (dry["created"], dry["updated"], dry["rejected"], dry["dry_run"]) == (1, 0, 1, True)
    assert deals_of(client, admin) == {}
    no_pipeline = cli.invoke(
        app, ["import", "deals", str(path), "--pipeline", "X", "--id-column", "id"]
    )
    assert no_pipeline.exit_code == 1
    assert "no pipeline named 'X'" in no_pipeline.output
    no_id = cli.invoke(
        app, ["import", "deals", str(path), "--pipeline", "Sales", "--id-column", "ref"]
    )
    assert no_id.exit_code == 1
    assert "no column 'ref'" in no_id.output
    real = run_json(cli, *args)
    assert (real["created"], real["rejected"]) == (1, 1)
    assert set(deals_of(client, admin)) == {"A"}


# --- people dry runs -------------------------------------------------------------------


def test_people_dry_run_counts_creates_and_updates_without_writing(
    cli: CliRunner,
    client: TestClient,
    admin: User,
    make_person: MakePerson,
    tracker: Tracker,
    tmp_path: Path,
) -> None:
    make_person("known@example.com")
    path = write_csv(
        tmp_path / "people.csv",
        [
            ["id", "email", "name"],
            ["1", "known@example.com", "Known"],
            ["2", "new@example.com", "New"],
            ["", "", "Nobody"],
            # The new person again, under another record id: the first row creates them.
            ["5", "new@example.com", "New Again"],
        ],
    )
    args = ["import", "people", str(path), "--source", "Old CRM", "--id-column", "id"]
    dry = run_json(cli, *args, "--dry-run")
    assert dry["dry_run"] is True
    assert (dry["created"], dry["updated"], dry["rejected"], dry["accepted"]) == (1, 2, 1, 0)
    assert list(rejections(dry)) == [4]
    events = client.get("/v1/events?source=Old CRM", headers=admin.headers)
    assert events.status_code == 200
    assert events.json()["total"] == 0
    real = run_json(cli, *args)
    assert (real["accepted"], real["rejected"]) == (3, 1)
    tracker.process()
    rerun = run_json(cli, *args, "--dry-run")
    assert (rerun["created"], rerun["updated"], rerun["duplicates"]) == (0, 0, 3)


# --- through the API -------------------------------------------------------------------


def upload(client: TestClient, user: User, content: bytes, **form: str) -> dict[str, Any]:
    """Upload a CSV to ``POST /v1/imports`` and wait for the background run to end."""
    files = {"file": ("upload.csv", content, "text/csv")}
    made = client.post("/v1/imports", files=files, data=form, headers=user.headers)
    assert made.status_code == 202, made.text
    status: dict[str, Any] = {}
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        status = client.get(f"/v1/imports/{made.json()['id']}", headers=user.headers).json()
        if status["status"] in ("done", "failed"):
            break
        time.sleep(0.05)
    return status


def test_api_imports_companies_and_deals_as_the_caller_with_dry_runs(
    client: TestClient,
    admin: User,
    make_user: MakeUser,
    pipelines: dict[str, dict[str, Any]],
) -> None:
    manager = make_user("manager")
    content = b"name,domain,size\nAcme,acme.com,10\nBroken,,\n"
    dry = upload(client, manager, content, kind="companies", dry_run="true")
    assert dry["status"] == "done", dry
    assert (dry["dry_run"], dry["created"], dry["rejected"], dry["rows_read"]) == (
        True,
        1,
        1,
        2,
    )
    assert dry["bytes_read"] == dry["bytes_total"] == len(content)
    assert companies_of(client, admin) == {}
    done = upload(client, manager, content, kind="companies")
    assert (done["dry_run"], done["created"], done["accepted"]) == (False, 1, 1)
    acme = companies_of(client, admin)["acme.com"]
    assert acme["owner_id"] == manager.id  # written as the caller
    page = client.get(f"/v1/imports/{done['id']}/rejections", headers=manager.headers).json()
    assert [(r["line"], r["code"]) for r in page["items"]] == [(3, "invalid_input")]

    deals = b"ref,name,stage,company_domain\nR1,Big,Proposal,acme.com\n"
    made = upload(client, manager, deals, kind="deals", pipeline="Sales", id_column="ref")
    assert (made["status"], made["created"]) == ("done", 1), made
    assert deals_of(client, admin)["Big"]["company_id"] == acme["id"]

    marketing = make_user("marketing")  # may import people, may not change deals
    files = {"file": ("d.csv", deals, "text/csv")}
    form = {"kind": "deals", "pipeline": "Sales", "id_column": "ref"}
    refused = client.post("/v1/imports", files=files, data=form, headers=marketing.headers)
    assert refused.status_code == 403, refused.text
    no_pipeline = client.post(
        "/v1/imports", files=files, data={**form, "pipeline": ""}, headers=manager.headers
    )
    assert no_pipeline.status_code == 400
    assert no_pipeline.json()["field"] == "pipeline"


# --- exports ---------------------------------------------------------------------------


def test_deal_export_honours_filters_and_a_sales_users_visibility(
    cli: CliRunner,
    client: TestClient,
    admin: User,
    make_user: MakeUser,
    pipelines: dict[str, dict[str, Any]],
    tmp_path: Path,
) -> None:
    rep = make_user("sales")
    sales = pipelines["Sales"]["id"]
    for user, name, amount in ((rep, "Mine", 10), (rep, "Mine too", 500), (admin, "Theirs", 90)):
        made = client.post(
            "/v1/deals",
            json={"name": name, "pipeline_id": sales, "amount": amount, "currency": "EUR"},
            headers=user.headers,
        )
        assert made.status_code == 201, made.text
    answer = client.get("/v1/deals/export.csv?sort=name", headers=rep.headers)
    assert answer.status_code == 200
    assert answer.headers["content-type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(answer.text)))
    assert [r["name"] for r in rows] == ["Mine", "Mine too"]  # not the admin's deal
    assert rows[0]["amount"] == "10"  # exact, normalised as in the audit log
    big = client.get("/v1/deals/export.csv?filter=amount:gt:50&sort=name", headers=admin.headers)
    assert [r["name"] for r in csv.DictReader(io.StringIO(big.text))] == ["Mine too", "Theirs"]
    bad = client.get("/v1/deals/export.csv?filter=nope:eq:1", headers=admin.headers)
    assert bad.status_code == 400

    out = tmp_path / "deals.csv"
    result = cli.invoke(
        app, ["export", "deals", str(out), "--filter", "amount:lt:100", "--sort", "-name"]
    )
    assert result.exit_code == 0, result.output
    with out.open(newline="") as handle:
        assert [r["name"] for r in csv.DictReader(handle)] == ["Theirs", "Mine"]
    companies = tmp_path / "companies.csv"
    client.post("/v1/companies", json={"name": "A", "domain": "a.com"}, headers=admin.headers)
    result = cli.invoke(app, ["export", "companies", str(companies), "--q", "a.com"])
    assert result.exit_code == 0, result.output
    with companies.open(newline="") as handle:
        assert [r["domain"] for r in csv.DictReader(handle)] == ["a.com"]


def test_an_exported_company_list_imports_back_unchanged(
    cli: CliRunner, client: TestClient, admin: User, tmp_path: Path
) -> None:
    for name, domain in (("A", "a.com"), ("B", "b.com")):
        client.post("/v1/companies", json={"name": name, "domain": domain}, headers=admin.headers)
    out = tmp_path / "companies.csv"
    assert cli.invoke(app, ["export", "companies", str(out)]).exit_code == 0
    result = run_json(cli, "import", "companies", str(out), "--map", "id=-", "--dry-run")
    assert (result["created"], result["updated"], result["duplicates"]) == (0, 0, 2), result
