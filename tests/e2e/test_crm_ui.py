"""A sales rep's day in a real browser: her pipeline, a deal moved, a call logged, a task."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import httpx
import pytest
from playwright.sync_api import Page, expect

from patron.auth import service as auth_service
from patron.core.runtime import Runtime
from tests.e2e.conftest import LiveServer
from tests.e2e.test_ui import PASSWORD, SCREENSHOT, batch, sign_in, wait_for

pytestmark = pytest.mark.e2e


def api(server: LiveServer, method: str, path: str, **body: object) -> dict[str, object]:
    answer = httpx.request(
        method, f"{server.url}{path}", json=body or None, headers=server.admin_headers
    )
    assert answer.is_success, answer.text
    result: dict[str, object] = answer.json()
    return result


def test_a_sales_rep_moves_a_deal_logs_a_call_and_completes_a_task(
    page: Page, live_server: LiveServer, runtime: Runtime
) -> None:
    with runtime.sessions() as session:
        rep = auth_service.create_user(
            session, email="sara@example.com", role="sales", password=PASSWORD, name="Sara"
        )
        session.commit()
    batch(
        live_server,
        {
            "type": "identify",
            "userId": "c-7",
            "traits": {"name": "Lena Ortiz", "email": "lena@example.com"},
        },
    )

    def lena() -> str | None:
        found = httpx.get(
            f"{live_server.url}/v1/persons",
            params={"user_id": "c-7"},
            headers=live_server.admin_headers,
        )
        return str(found.json()["id"]) if found.status_code == 200 else None

    wait_for(lambda: lena() is not None, "Lena to be a person")
    person_id = lena()
    api(live_server, "PATCH", f"/v1/contacts/{person_id}", owner_id=str(rep.id))
    pipeline = api(
        live_server,
        "POST",
        "/v1/pipelines",
        name="New business",
        stages=[
            {"name": "Qualified", "probability": 20},
            {"name": "Proposal", "probability": 50},
            {"name": "Negotiation", "probability": 80},
        ],
    )
    api(
        live_server,
        "POST",
        "/v1/deals",
        name="Ortiz & Co renewal",
        pipeline_id=pipeline["id"],
        amount=12000,
        currency="EUR",
        owner_id=str(rep.id),
        person_id=person_id,
    )

    sign_in(page, live_server, "sara@example.com", PASSWORD)
    page.get_by_role("link", name="Pipeline").click()
    qualified = page.locator("section.column[data-stage='Qualified']")
    proposal = page.locator("section.column[data-stage='Proposal']")
    expect(qualified.locator("article.deal")).to_have_count(1)
    expect(qualified).to_contain_text("12,000")
    expect(qualified).to_contain_text("weighted 2,400")
    card = qualified.locator("article.deal[data-deal='Ortiz & Co renewal']")
    card.get_by_label("Move Ortiz & Co renewal to").select_option(label="Proposal")
    card.get_by_role("button", name="Move").click()
    expect(proposal.locator("article.deal")).to_have_count(1)
    expect(qualified.locator("article.deal")).to_have_count(0)
    page.screenshot(path=str(SCREENSHOT.with_name("patron-pipeline.png")), full_page=True)

    proposal.get_by_role("link", name="Ortiz & Co renewal").click()
    expect(page.locator("td.stage")).to_contain_text("Proposal (50 %)")
    page.get_by_text("Log a call, a note or a task").click()
    page.get_by_label("Subject").fill("Walked Lena through the proposal")
    page.get_by_label("Call outcome").select_option("connected")
    page.get_by_label("Call minutes").fill("12")
    page.get_by_role("button", name="Save").click()
    expect(page.locator("tr.entry-call")).to_contain_text("Walked Lena through the proposal")
    expect(page.locator("tr.entry-call")).to_contain_text("connected")

    page.get_by_text("Log a call, a note or a task").click()
    page.get_by_label("Kind").select_option("task")
    page.get_by_label("Subject").fill("Send the revised quote")
    due = (datetime.now(UTC) - timedelta(hours=2)).strftime("%Y-%m-%dT%H:%M")
    page.get_by_label("Task due").fill(due)
    page.get_by_role("button", name="Save").click()
    page.get_by_role("link", name="My tasks").click()
    overdue = page.locator("table.tasks[data-group='Overdue']")
    expect(overdue).to_contain_text("Send the revised quote")
    expect(overdue).to_contain_text("Ortiz & Co renewal")
    overdue.get_by_role("button", name="Done: Send the revised quote").click()
    expect(page.locator("table.tasks[data-group='Overdue']")).not_to_contain_text("revised quote")

    # Her person page has it all: the deal and the call, beside the collected events.
    def call_processed() -> bool:
        found = httpx.get(
            f"{live_server.url}/v1/contacts/{person_id}/timeline",
            params={"kind": "event"},
            headers=live_server.admin_headers,
        )
        return "Call Logged" in found.text

    wait_for(call_processed, "the logged call to reach her timeline")
    page.goto(f"{live_server.url}/people/{person_id}")
    expect(page.locator("table.crm")).to_contain_text("sara@example.com")
    expect(page.get_by_role("link", name="Ortiz & Co renewal")).to_be_visible()
    # CRM work is behaviour like any other: events on her timeline, through the log.
    events = page.locator("tr.entry-event")
    for name in ("Contact Owner Changed", "Deal Created", "Deal Stage Changed", "Call Logged"):
        expect(events.filter(has_text=name)).to_have_count(1)
    expect(events.filter(has_text="identify")).to_have_count(1)
    [deal] = api(live_server, "GET", "/v1/deals")["items"]  # type: ignore[misc]
    history = httpx.get(
        f"{live_server.url}/v1/deals/{deal['id']}/stages", headers=live_server.admin_headers
    ).json()
    assert [h["stage"] for h in history] == ["Qualified", "Proposal"]
