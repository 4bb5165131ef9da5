"""Web forms in a real Chromium against ``patron serve``: markup in every field never runs
on the hosted page or its re-render, and the embeddable form, pasted into another site
beside the browser snippet, carries the campaign, referrer, page and the visitor's anonymous
id, so the visitor's browsing joins the lead."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from threading import Thread
from typing import Any

import httpx
import pytest
from playwright.sync_api import Browser, BrowserContext, Page, expect

from tests.e2e.conftest import LiveServer
from tests.e2e.test_browser_snippet import DOCUMENTED_HOST, documented_install

pytestmark = pytest.mark.e2e

# Each one would leave a mark on the window if it ever ran.
ATTACKS = [
    "<script>window.pwned = 'script'</script>",
    "<img src=x onerror=\"window.pwned = 'img'\">",
    '"><svg onload="window.pwned = \'svg\'">',
    "</textarea><script>window.pwned = 'textarea'</script>",
]
SCRIPTED = " ".join(ATTACKS)


def api(server: LiveServer, method: str, path: str, **kwargs: Any) -> httpx.Response:
    return httpx.request(
        method, f"{server.url}{path}", headers=server.admin_headers, timeout=10, **kwargs
    )


def create_form(server: LiveServer, **overrides: Any) -> dict[str, Any]:
    body = {
        "name": "Request a demo",
        "slug": "demo",
        "fields": [
            {"key": "email", "label": "Work email", "type": "email", "required": True,
             "identifier": "email"},
            {"key": "name", "label": "Name", "type": "text", "trait": "name"},
            {"key": "phone", "label": "Phone", "type": "phone", "identifier": "phone"},
            {"key": "message", "label": "Message", "type": "textarea"},
            {"key": "plan", "type": "hidden", "default": "basic", "trait": "plan"},
        ],
        "consents": [{"purpose": "terms", "label": "I accept the terms", "required": True}],
        "success_message": "Thanks! We will call you.",
        **overrides,
    }  # fmt: skip
    answer = api(server, "POST", "/v1/forms", json=body)
    assert answer.status_code == 201, answer.text
    form: dict[str, Any] = answer.json()
    return form


def wait_for(check: Callable[[], Any], what: str, timeout: float = 30) -> Any:
    """Poll until ``check`` returns something truthy; the deadline only bounds a failure."""
    deadline = time.monotonic() + timeout
    while True:
        found = check()
        if found:
            return found
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)


def nothing_ran(page: Page) -> None:
    assert page.evaluate("() => window.pwned") is None
    assert page.title() != "pwned"


def test_markup_in_every_field_never_runs_on_the_hosted_page_or_its_re_render(
    live_server: LiveServer, page: Page
) -> None:
    create_form(
        live_server,
        name=f"Demo {SCRIPTED}",
        description=SCRIPTED,
        submit_label="Send",
        fields=[
            {"key": "email", "label": f"Email {SCRIPTED}", "type": "email", "required": True,
             "identifier": "email", "placeholder": SCRIPTED},
            {"key": "phone", "label": f"Phone {SCRIPTED}", "type": "phone",
             "max_length": 500},
            {"key": "pick", "label": SCRIPTED, "type": "select", "options": [SCRIPTED, "plain"]},
            {"key": "message", "label": "Message", "type": "textarea"},
        ],
        consents=[{"purpose": "terms", "label": SCRIPTED, "required": True}],
    )  # fmt: skip
    dialogs: list[str] = []
    errors: list[str] = []
    page.on("dialog", lambda dialog: (dialogs.append(dialog.message), dialog.dismiss()))
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.goto(f"{live_server.url}/f/demo")
    nothing_ran(page)
    expect(page.get_by_role("heading", level=1)).to_have_text(f"Demo {SCRIPTED}")
    honeypot = page.locator("input[name=patron_website]").bounding_box()
    assert honeypot is not None
    assert honeypot["x"] < -1000  # out of sight, though bots still find it in the HTML

    field = page.locator
    field("input[name=email]").fill("ana@example.com")
    field("input[name=phone]").fill(SCRIPTED)  # not a phone number
    field("select[name=pick]").select_option(SCRIPTED)
    field("textarea[name=message]").fill(SCRIPTED)
    field("input[name='consent.terms']").check()
    with page.expect_response(f"{live_server.url}/f/demo") as posted:
        page.get_by_role("button", name="Send").click()
    assert posted.value.status == 400
    expect(page.get_by_text(f"Phone {SCRIPTED} is not a valid phone number")).to_be_visible()
    nothing_ran(page)
    # The answers come back as the visitor typed them, as text.
    assert field("input[name=phone]").input_value() == SCRIPTED
    assert field("textarea[name=message]").input_value() == SCRIPTED
    assert field("select[name=pick]").input_value() == SCRIPTED
    assert field("input[name='consent.terms']").is_checked()

    field("input[name=phone]").fill("+1 415 555 0100")
    page.get_by_role("button", name="Send").click()
    expect(page.get_by_role("status")).to_have_text("Thanks! We will call you.")
    nothing_ran(page)
    assert dialogs == []
    assert errors == []


class Site:
    """A customer's website on its own origin (localhost, while Patron is on 127.0.0.1)."""

    def __init__(self) -> None:
        self.pages: dict[str, str] = {}
        pages = self.pages

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                body = pages.get(self.path.partition("?")[0])
                if body is None:
                    self.send_error(404)
                    return
                data = body.encode()
                self.send_response(200)
                self.send_header("Content-Type", "text/html; charset=utf-8")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        Thread(target=self.server.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://localhost:{self.server.server_port}"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def site() -> Iterator[Site]:
    served = Site()
    yield served
    served.close()


@pytest.fixture
def context(browser: Browser) -> Iterator[BrowserContext]:
    fresh = browser.new_context()
    yield fresh
    fresh.close()


def test_an_embedded_form_brings_the_campaign_and_the_visitors_history_to_the_lead(
    live_server: LiveServer, context: BrowserContext, site: Site
) -> None:
    form = create_form(live_server)
    embed = api(live_server, "GET", f"/v1/forms/{form['id']}/embed")
    assert embed.status_code == 200
    stub, tag = documented_install()
    tag = tag.replace(DOCUMENTED_HOST, live_server.url).replace("WRITE_KEY", live_server.write_key)
    site.pages["/blog"] = (
        f"<!doctype html><title>Blog</title>{stub}{tag}"
        '<a href="/demo?utm_source=ads&utm_campaign=spring&plan=enterprise">Book a demo</a>'
    )
    site.pages["/demo"] = f"<!doctype html><title>Demo</title>{stub}{tag}<main>{embed.text}</main>"

    page = context.new_page()
    page.set_default_timeout(15_000)
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.goto(f"{site.url}/blog")
    page.wait_for_function("() => window.patron && window.patron.loaded === true")
    anonymous_id = page.evaluate("() => patron.anonymousId()")
    page.get_by_role("link", name="Book a demo").click()
    page.wait_for_function("() => window.patron && window.patron.loaded === true")
    page.get_by_label("Work email").fill("lena@example.com")
    page.get_by_label("Name").fill("Lena Weber")
    page.get_by_label("I accept the terms").check()
    page.get_by_role("button", name="Submit").click()
    expect(page.get_by_role("status")).to_have_text("Thanks! We will call you.")
    assert page.url == f"{live_server.url}/f/demo"
    assert errors == []

    def processed() -> dict[str, Any] | None:
        listed = api(live_server, "GET", f"/v1/forms/{form['id']}/submissions").json()
        done = [s for s in listed["items"] if s["processed_at"]]
        return done[0] if done else None

    submission = wait_for(processed, "the submission's lead steps")
    assert submission["anonymous_id"] == anonymous_id
    assert submission["answers"]["plan"] == "enterprise"  # from the page's link
    assert submission["attribution"] == {
        "utm_source": "ads",
        "utm_campaign": "spring",
        "referrer": f"{site.url}/blog",
        "landing_page": f"{site.url}/demo?utm_source=ads&utm_campaign=spring&plan=enterprise",
    }
    person = api(live_server, "GET", "/v1/persons", params={"email": "lena@example.com"}).json()
    assert person["id"] == submission["person_id"]
    by_anonymous_id = api(
        live_server, "GET", "/v1/persons", params={"anonymous_id": anonymous_id}
    ).json()
    assert by_anonymous_id["id"] == person["id"]

    def page_views() -> list[dict[str, Any]]:
        timeline = api(
            live_server, "GET", f"/v1/persons/{person['id']}/timeline", params={"type": "page"}
        ).json()["items"]
        return timeline if len(timeline) >= 2 else []

    assert len(wait_for(page_views, "the anonymous page views on the lead's timeline")) >= 2
    crm = api(live_server, "GET", f"/v1/contacts/{person['id']}").json()
    assert crm["lifecycle_stage"] == "lead"
    assert crm["first_touch"]["utm_campaign"] == "spring"
    assert crm["traits"]["plan"] == "enterprise"
