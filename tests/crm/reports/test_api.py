"""The reports over HTTP: the JSON shape, CSV equal to the JSON rows, and bad parameters."""

from __future__ import annotations

import csv
import io
import uuid
from typing import Any

import pytest
from fastapi.testclient import TestClient

from tests.conftest import assert_error
from tests.crm.reports.conftest import Sales

REPORTS = (
    "pipeline",
    "forecast",
    "win-rate",
    "deal-size",
    "sales-cycle",
    "stage-conversion",
    "activities",
)
GROUPED = ("win-rate", "deal-size", "sales-cycle")


def test_a_report_answers_its_rows_with_the_filters_it_used(
    client: TestClient, sales: Sales
) -> None:
    params = {
        "since": "2026-01-01T01:00:00+01:00",
        "pipeline_id": str(sales.pipelines["Sales"]),
        "currency": "eur",
        "group_by": "owner",
    }
    answer = client.get("/v1/reports/win-rate", params=params, headers=sales.headers["admin"])
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["report"] == "win-rate"
    assert body["filters"] == {
        "since": "2026-01-01T00:00:00Z",
        "until": None,
        "pipeline_id": str(sales.pipelines["Sales"]),
        "owner_id": None,
        "currency": "eur",
        "group_by": "owner",
    }
    assert body["rows"] == [
        {
            "key": sales.id("alice"),
            "label": "Alice Rep",
            "currency": "EUR",
            "won": 1,
            "lost": 1,
            "win_rate": 0.5,
            "won_amount": "1000.0000",
            "lost_amount": "3000.0000",
            "win_rate_by_amount": 0.25,
        }
    ]


def _csv_rows(text: str) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(text)))


def _as_csv(row: dict[str, Any]) -> dict[str, str]:
    return {k: "" if v is None else str(v) for k, v in row.items()}


@pytest.mark.parametrize("name", REPORTS)
def test_csv_says_what_the_json_says(client: TestClient, sales: Sales, name: str) -> None:
    h = sales.headers["admin"]
    params = {"group_by": "owner"} if name in GROUPED else {}
    json_rows = client.get(f"/v1/reports/{name}", params=params, headers=h).json()["rows"]
    assert json_rows, name
    by_path = client.get(f"/v1/reports/{name}.csv", params=params, headers=h)
    assert by_path.status_code == 200, by_path.text
    assert by_path.headers["content-type"].startswith("text/csv")
    assert by_path.headers["content-disposition"] == f'attachment; filename="{name}.csv"'
    assert _csv_rows(by_path.text) == [_as_csv(r) for r in json_rows]
    assert by_path.text.splitlines()[0] == ",".join(json_rows[0])
    by_param = client.get(f"/v1/reports/{name}", params={**params, "format": "csv"}, headers=h)
    assert by_param.text == by_path.text


def test_an_empty_report_is_a_csv_header(client: TestClient, sales: Sales) -> None:
    answer = client.get(
        "/v1/reports/sales-cycle.csv",
        params={"since": "2030-01-01"},
        headers=sales.headers["admin"],
    )
    assert answer.text.splitlines() == ["key,label,deals,average_days,median_days"]


@pytest.mark.parametrize("name", REPORTS)
def test_bad_parameters_name_the_field(client: TestClient, sales: Sales, name: str) -> None:
    h = sales.headers["admin"]
    url = f"/v1/reports/{name}"
    for params, status, field in [
        ({"pipeline_id": str(uuid.uuid4())}, 400, "pipeline_id"),
        ({"owner_id": str(uuid.uuid4())}, 400, "owner_id"),
        ({"since": "2026-02-01", "until": "2026-01-01"}, 400, "until"),
        ({"currency": "euro"}, 400, "currency"),
        ({"since": "last week"}, 422, "query.since"),
        ({"pipeline_id": "sales"}, 422, "query.pipeline_id"),
        ({"format": "xlsx"}, 422, "query.format"),
    ]:
        assert_error(client.get(url, params=params, headers=h), status, field)
        if status == 400:
            assert_error(client.get(f"{url}.csv", params=params, headers=h), status, field)
    assert_error(client.get(url), 401)


@pytest.mark.parametrize("name", GROUPED)
def test_an_unknown_group_is_a_400(client: TestClient, sales: Sales, name: str) -> None:
    answer = client.get(
        f"/v1/reports/{name}", params={"group_by": "colour"}, headers=sales.headers["admin"]
    )
    assert_error(answer, 400, "group_by")


def test_reports_are_in_the_openapi_document(client: TestClient) -> None:
    paths = client.get("/openapi.json").json()["paths"]
    for name in REPORTS:
        assert f"/v1/reports/{name}" in paths
        assert "text/csv" in paths[f"/v1/reports/{name}.csv"]["get"]["responses"]["200"]["content"]
