"""The UI in a real browser (Debian's Chromium, driven by Playwright) against a real server."""

from __future__ import annotations

import os
import re
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Page, expect

from patron.auth import service as auth_service
from patron.collect import service as collect_service
from patron.core.runtime import Runtime
from tests.e2e.conftest import LiveServer

pytestmark = pytest.mark.e2e
PASSWORD = "correct horse battery staple"
INJECTED = '<img src=x id="pwned" onerror="document.body.dataset.pwned=1">Sneaky'
SCREENSHOT = Path(os.environ.get("PATRON_SCREENSHOT", "/tmp/patron-events.png"))


@pytest.fixture
def analyst(runtime: Runtime) -> str:
    with runtime.sessions() as session:
        user = auth_service.create_user(
            session, email="ana@example.com", role="analyst", password=PASSWORD, name="Ana"
        )
        session.commit()
    return user.email


def track(server: LiveServer, **message: object) -> None:
    sent = httpx.post(f"{server.url}/v1/track", auth=(server.write_key, ""), json=message)
    assert sent.status_code == 200, sent.text


def sign_in(page: Page, server: LiveServer, email: str, password: str) -> None:
    page.goto(f"{server.url}/login")
    page.get_by_label("Email").fill(email)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Sign in").click()


def test_pages_need_a_session(page: Page, live_server: LiveServer, analyst: str) -> None:
    page.goto(f"{live_server.url}/events?userId=u-1")
    assert page.url.startswith(f"{live_server.url}/login")
    page.get_by_label("Email").fill(analyst)
    page.get_by_label("Password").fill("not the password")
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("alert")).to_have_text("wrong email or password")
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    # Back where the visitor wanted to go, with the filter kept.
    expect(page).to_have_url(f"{live_server.url}/events?userId=u-1")


def test_debugger_shows_live_events_filters_and_escapes(
    page: Page, live_server: LiveServer, analyst: str
) -> None:
    track(live_server, userId="u-earlier", event="Signed Up")
    sign_in(page, live_server, analyst, PASSWORD)
    expect(page).to_have_url(f"{live_server.url}/events")
    expect(page.locator("tr.event")).to_have_count(1)

    # Sent after the page loaded: the live refresh brings it in without a reload.
    track(live_server, userId="u-42", anonymousId="anon-42", event="Order Completed",
          properties={"revenue": 99.5, "note": "</pre><b>bold</b>"})  # fmt: skip
    track(live_server, userId="u-attacker", event=INJECTED)
    rows = page.locator("tr.event")
    wait_for(lambda: rows.count() == 3, "the two new events to appear")
    expect(page.locator("#total")).to_have_text("3")
    expect(rows.first.locator("td.name")).to_have_text(INJECTED)
    # Shown as text: no element was made from it and no handler ran.
    assert page.locator("#pwned").count() == 0
    assert page.evaluate("document.body.dataset.pwned") is None

    page.get_by_label("userId").fill("u-42")
    page.get_by_role("button", name="Filter").click()
    expect(page).to_have_url(re.compile(r"/events\?.*userId=u-42"))
    expect(rows).to_have_count(1)
    expect(page.locator("#total")).to_have_text("1")
    row = rows.first
    expect(row.locator("td.name")).to_have_text("Order Completed")

    payload = page.locator("tr.payload pre")
    expect(payload).to_be_hidden()
    row.click()
    expect(payload).to_be_visible()
    expect(payload).to_contain_text('"revenue": 99.5')
    expect(payload).to_contain_text("</pre><b>bold</b>")
    assert page.locator("tr.payload b").count() == 0

    page.screenshot(path=str(SCREENSHOT), full_page=True)

    page.get_by_role("button", name="Sign out").click()
    expect(page).to_have_url(f"{live_server.url}/login")
    page.goto(f"{live_server.url}/events")
    assert page.url.startswith(f"{live_server.url}/login")


def test_sources_page_lists_catalog_and_snippet(
    page: Page, live_server: LiveServer, runtime: Runtime, analyst: str
) -> None:
    with runtime.sessions() as session:
        collect_service.create_source(session, name="Website", kind="browser")
        session.commit()
    track(live_server, userId="u-1", event="Cart Viewed")
    sign_in(page, live_server, analyst, PASSWORD)
    page.get_by_role("link", name="Sources").click()
    expect(page).to_have_url(f"{live_server.url}/sources")
    website = page.locator("section.source", has=page.get_by_role("heading", name="Website"))
    expect(website.locator(".snippet")).to_have_text(
        f'<script async src="{live_server.url}/patron.js" data-write-key="YOUR_WRITE_KEY"></script>'
    )
    source = page.locator("section.source", has=page.get_by_role("heading", name="Backend"))
    expect(source.locator(".badge").first).to_have_text("server")
    expect(source.locator(".snippet")).to_have_count(0)
    # The catalog is derived by the processor inside the server; reload until it has caught up.
    deadline = time.monotonic() + 10
    while source.locator("table.catalog td.name").count() == 0 and time.monotonic() < deadline:
        page.reload()
    expect(source.locator("table.catalog td.name")).to_have_text("Cart Viewed")


def wait_for(condition: Callable[[], bool], what: str, seconds: float = 10) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def batch(server: LiveServer, *messages: dict[str, object]) -> None:
    sent = httpx.post(
        f"{server.url}/v1/batch", auth=(server.write_key, ""), json={"batch": list(messages)}
    )
    assert sent.status_code == 200, sent.text


def test_a_person_shows_everything_and_a_manager_can_undo_a_merge(
    page: Page, live_server: LiveServer, runtime: Runtime
) -> None:
    with runtime.sessions() as session:
        auth_service.create_user(
            session, email="max@example.com", role="manager", password=PASSWORD, name="Max"
        )
        session.commit()
    batch(
        live_server,
        {"type": "page", "anonymousId": "tablet", "name": "Shoes"},
        {
            "type": "identify",
            "userId": "c-1",
            "traits": {"email": "lea@example.com", "name": "Léa Martin"},
        },
        {
            "type": "track",
            "userId": "c-1",
            "event": "Order Completed",
            "properties": {"revenue": 80},
        },
    )
    wait_for(lambda: _processed(live_server, "tablet"), "the tablet visitor to be a person")
    batch(live_server, {"type": "identify", "userId": "c-1", "anonymousId": "tablet"})
    sign_in(page, live_server, "max@example.com", PASSWORD)
    page.get_by_role("link", name="People").click()
    page.get_by_label("Value").fill("LEA@example.com")
    deadline = time.monotonic() + 10
    while True:  # the processor inside the server merges within moments
        page.get_by_role("button", name="Open").click()
        if page.locator("li.merge").count() or time.monotonic() > deadline:
            break
        page.goto(f"{live_server.url}/people")
        page.get_by_label("Value").fill("LEA@example.com")
    expect(page.get_by_role("heading", name="Léa Martin")).to_be_visible()
    expect(page.locator("ul.identities")).to_contain_text("anonymous_id tablet")
    expect(page.locator("table.traits").last).to_contain_text("lifetime_value")
    expect(page.locator("table.timeline tr.entry-event")).to_have_count(4)
    page.get_by_role("button", name="Undo merge").click()
    # The tablet visitor came first, so the merged profile had its id; it is alone again.
    expect(page.locator("li.merge")).to_contain_text("undone")
    expect(page.get_by_role("heading", name="Anonymous visitor")).to_be_visible()
    expect(page.locator("ul.identities")).not_to_contain_text("c-1")
    expect(page.locator("table.timeline tr.entry-event")).to_have_count(1)
    page.get_by_role("link", name="the other person →").click()
    expect(page.get_by_role("heading", name="Léa Martin")).to_be_visible()
    expect(page.locator("ul.identities")).not_to_contain_text("tablet")
    expect(page.locator("table.timeline tr.entry-event")).to_have_count(3)
    page.screenshot(path=str(SCREENSHOT.with_name("patron-person.png")), full_page=True)


def _processed(server: LiveServer, anonymous_id: str) -> bool:
    found = httpx.get(
        f"{server.url}/v1/persons",
        params={"anonymous_id": anonymous_id},
        headers=server.admin_headers,
    )
    return found.status_code == 200


def test_a_manager_reviews_possible_duplicates_in_the_browser(
    page: Page, live_server: LiveServer, runtime: Runtime
) -> None:
    with runtime.sessions() as session:
        auth_service.create_user(
            session, email="mo@example.com", role="manager", password=PASSWORD, name="Mo"
        )
        session.commit()
    jonathan = {"firstName": "Jonathan", "lastName": "Quennell", "city": "Ashford"}
    batch(
        live_server,
        {
            "type": "identify",
            "userId": "web-1",
            "traits": {"email": "jo@example.com", **jonathan, "birthday": "1984-03-02"},
        },
        {"type": "identify", "userId": "shop-1", "traits": {"email": "jq@hotel.com", **jonathan}},
        {"type": "identify", "userId": "x-1", "traits": {"name": "Ada Lovelace"}},
    )
    wait_for(lambda: _processed_user(live_server, "x-1"), "the three persons to exist")
    sign_in(page, live_server, "mo@example.com", PASSWORD)
    page.goto(f"{live_server.url}/people")
    page.get_by_role("link", name="Possible duplicates →").click()
    expect(page.get_by_text("Nothing to review.")).to_be_visible()
    page.get_by_role("button", name="Look for duplicates now").click()
    pair = page.locator("section.candidate")
    expect(pair).to_have_count(1)
    expect(pair.locator("h2")).to_contain_text("Jonathan Quennell")
    expect(pair.locator("table.evidence")).to_contain_text("quennell")
    pair.get_by_role("button", name="Same person: merge").click()
    expect(page.get_by_text("Nothing to review.")).to_be_visible()
    web = httpx.get(
        f"{live_server.url}/v1/persons",
        params={"user_id": "web-1"},
        headers=live_server.admin_headers,
    ).json()
    assert {"user_id:web-1", "user_id:shop-1"} <= {
        f"{i['kind']}:{i['value']}" for i in web["identities"]
    }
    page.goto(f"{live_server.url}/people/{web['id']}")
    expect(page.locator("li.merge")).to_contain_text("alike on")


def _processed_user(server: LiveServer, user_id: str) -> bool:
    found = httpx.get(
        f"{server.url}/v1/persons", params={"user_id": user_id}, headers=server.admin_headers
    )
    return found.status_code == 200
