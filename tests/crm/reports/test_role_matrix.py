"""Every report by every role: all may read reports, and the rows count only what the role
may see (the deals and activities of conftest.py's history)."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from tests.crm.reports.conftest import Sales
from tests.crm.reports.test_api import REPORTS

# role: (open deals, closed deals, activities) it sees. Managers see their team's (Alice's)
# and the unassigned; sales their own; support none (no tickets, nothing shared);
# marketing and analysts everything, like admins.
SEES = {
    "admin": (5, 5, 10),
    "manager": (3, 3, 8),
    "alice": (2, 3, 7),
    "bob": (2, 2, 2),
    "support": (0, 0, 0),
    "marketing": (5, 5, 10),
    "analyst": (5, 5, 10),
}


@pytest.mark.parametrize("who", SEES)
def test_every_report_by_role(client: TestClient, sales: Sales, who: str) -> None:
    h = sales.headers[who]
    for name in (*REPORTS, "leads", "tickets"):
        for url in (f"/v1/reports/{name}", f"/v1/reports/{name}.csv"):
            assert client.get(url, headers=h).status_code == 200, url
    open_deals, closed_deals, logged = SEES[who]
    pipeline = client.get("/v1/reports/pipeline", headers=h).json()["rows"]
    assert sum(r["deals"] for r in pipeline) == open_deals
    assert len(pipeline) >= 5  # every stage has its row, seen deals or not
    forecast = client.get("/v1/reports/forecast", headers=h).json()["rows"]
    assert sum(r["deals"] for r in forecast) == open_deals
    rates = client.get("/v1/reports/win-rate", headers=h).json()["rows"]
    assert sum(r["won"] + r["lost"] for r in rates) == closed_deals
    stages = client.get("/v1/reports/stage-conversion", headers=h).json()["rows"]
    assert sum(r["won"] + r["lost"] + r["still_open"] for r in stages) == open_deals + closed_deals
    owners = client.get("/v1/reports/activities", headers=h).json()["rows"]
    assert sum(r["total"] for r in owners) == logged
