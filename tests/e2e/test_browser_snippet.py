"""The browser snippet in a real Chromium, installed as documented on another site's page.

The site is a second HTTP server on ``localhost`` while Patron listens on ``127.0.0.1``, so
every message crosses origins the way it does on a customer's website.
"""

from __future__ import annotations

import json
import re
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.sync_api import Browser, BrowserContext, Page

from patron import __version__
from tests.e2e.conftest import LiveServer

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]
DOCUMENTED_HOST = "http://127.0.0.1:8000"
CONSENT = {"analytics": True, "marketing": False}
Events = list[dict[str, Any]]


def documented_install() -> tuple[str, str]:
    """The two-line install exactly as docs/snippet.md shows it (and the README repeats)."""
    block = re.search(r"```html\n(.*?)\n```", (ROOT / "docs" / "snippet.md").read_text(), re.S)
    assert block is not None, "docs/snippet.md has no html block"
    assert block.group(0) in (ROOT / "README.md").read_text(), "README and docs disagree"
    stub, tag = block.group(1).splitlines()
    assert DOCUMENTED_HOST in tag
    assert 'data-write-key="WRITE_KEY"' in tag
    return stub, tag


class Site:
    """A customer's website: pages by path, served from its own origin."""

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
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://localhost:{self.server.server_port}"

    def add(
        self,
        path: str,
        live: LiveServer,
        *,
        title: str,
        before_load: str = "",
        attributes: str = "",
        write_key: str | None = None,
    ) -> str:
        """A page with the documented install; ``before_load`` runs between its two lines."""
        stub, tag = documented_install()
        tag = tag.replace(DOCUMENTED_HOST, live.url).replace(
            'data-write-key="WRITE_KEY"',
            f'{attributes} data-write-key="{write_key or live.write_key}"',
        )
        between = f"<script>{before_load}</script>" if before_load else ""
        self.pages[path] = (
            f"<!doctype html><html><head><title>{title}</title>\n{stub}\n{between}\n{tag}\n"
            f'</head><body><h1>{title}</h1><a href="/next">next</a></body></html>'
        )
        return self.url + path

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def site() -> Iterator[Site]:
    served = Site()
    served.pages["/next"] = "<!doctype html><title>Elsewhere</title><p>no snippet here</p>"
    yield served
    served.close()


@pytest.fixture
def context(browser: Browser) -> Iterator[BrowserContext]:
    fresh = browser.new_context()
    yield fresh
    fresh.close()


def open_page(context: BrowserContext, url: str) -> tuple[Page, list[str]]:
    """Open ``url`` and wait until patron.js has replaced the stub; collects script errors."""
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.goto(url)
    page.wait_for_function("() => window.patron && window.patron.loaded === true")
    return page, errors


def stored(live: LiveServer) -> Events:
    answer = httpx.get(
        f"{live.url}/v1/events", params={"limit": 100}, headers=live.admin_headers, timeout=10
    )
    answer.raise_for_status()
    items: Events = answer.json()["items"]
    return items


def wait_for_events(
    live: LiveServer, done: Callable[[Events], bool], what: str, timeout: float = 30
) -> Events:
    """Poll the event debugger until ``done``; the deadline only bounds a failing test."""
    deadline = time.monotonic() + timeout
    while True:
        events = stored(live)
        if done(events):
            return events
        if time.monotonic() > deadline:
            seen = [(e["type"], e["event"]) for e in events]
            raise AssertionError(f"timed out waiting for {what}; stored: {seen}")
        time.sleep(0.1)


def one(events: Events, type: str, event: str | None = None) -> dict[str, Any]:
    matches = [e for e in events if e["type"] == type and (event is None or e["event"] == event)]
    assert len(matches) == 1, f"expected one {type} {event or ''}, got {len(matches)}"
    return matches[0]


def has(*wanted: tuple[str, str | None]) -> Callable[[Events], bool]:
    def check(events: Events) -> bool:
        kinds = {(e["type"], e["event"]) for e in events} | {(e["type"], None) for e in events}
        return all(w in kinds for w in wanted)

    return check


def stored_queue(page: Page) -> list[dict[str, Any]]:
    text = page.evaluate("() => localStorage.getItem('patron_queue')")
    return [] if text is None else list(json.loads(text))


def test_script_is_served_with_its_version_and_a_short_cache(live_server: LiveServer) -> None:
    answer = httpx.get(f"{live_server.url}/patron.js")
    assert answer.status_code == 200
    assert answer.headers["content-type"].startswith("application/javascript")
    assert answer.headers["cache-control"] == "public, max-age=300"
    assert f'var VERSION = "{__version__}";' in answer.text
    again = httpx.get(
        f"{live_server.url}/patron.js", headers={"If-None-Match": answer.headers["etag"]}
    )
    assert again.status_code == 304


def test_page_track_and_identify_share_the_cookie_id_and_carry_consent(
    live_server: LiveServer, browser: Browser, context: BrowserContext, site: Site
) -> None:
    url = site.add(
        "/shop",
        live_server,
        title="Shop home",
        before_load=f"patron.consent({json.dumps(CONSENT)});",
    )
    page, errors = open_page(context, url + "?utm_source=news")
    page.evaluate(
        "() => { patron.track('Product Viewed', {sku: 'p-1', price: 9.5});"
        " patron.identify('user-42', {plan: 'pro'}); }"
    )
    events = wait_for_events(
        live_server, has(("page", None), ("track", "Product Viewed"), ("identify", None)), "3"
    )
    cookie = next(c for c in context.cookies(site.url) if c["name"] == "patron_aid")
    assert cookie["sameSite"] == "Lax"
    assert cookie["path"] == "/"
    assert cookie["expires"] > time.time() + 364 * 24 * 3600
    anonymous_id = cookie["value"]

    view, identify = one(events, "page"), one(events, "identify")
    track = one(events, "track", "Product Viewed")
    for message in (view, track, identify):
        assert message["anonymous_id"] == anonymous_id
        context_ = message["payload"]["context"]
        assert context_["consent"] == {"categoryPreferences": CONSENT}
        assert context_["library"] == {"name": "patron.js", "version": __version__}
        assert context_["page"]["path"] == "/shop"
        assert context_["page"]["search"] == "?utm_source=news"
        assert context_["page"]["title"] == "Shop home"
        assert context_["page"]["url"] == url + "?utm_source=news"
        assert context_["locale"]
        assert "Chrome" in context_["userAgent"]
        assert re.fullmatch(r"[0-9a-f-]{36}", message["message_id"])
        assert "sentAt" in message["payload"]
    assert view["payload"]["properties"]["title"] == "Shop home"
    assert track["payload"]["properties"] == {"sku": "p-1", "price": 9.5}
    assert track["user_id"] is None
    assert identify["user_id"] == "user-42"
    assert identify["payload"]["traits"] == {"plan": "pro"}

    page.reload()
    page.wait_for_function("() => window.patron && window.patron.loaded === true")
    events = wait_for_events(
        live_server, lambda es: sum(e["type"] == "page" for e in es) == 2, "the second page view"
    )
    second = next(e for e in events if e["type"] == "page" and e["seq"] != view["seq"])
    assert second["anonymous_id"] == anonymous_id
    assert second["user_id"] == "user-42"
    assert second["payload"]["context"]["consent"] == {"categoryPreferences": CONSENT}
    assert page.evaluate("() => patron.anonymousId()") == anonymous_id

    page.evaluate("() => { patron.reset(); patron.track('Signed Out'); }")
    events = wait_for_events(live_server, has(("track", "Signed Out")), "the track after reset")
    signed_out = one(events, "track", "Signed Out")
    assert signed_out["user_id"] is None
    assert signed_out["anonymous_id"] not in (None, anonymous_id)
    cookie = next(c for c in context.cookies(site.url) if c["name"] == "patron_aid")
    assert cookie["value"] == signed_out["anonymous_id"]
    assert errors == []


def test_calls_made_before_the_script_loads_are_replayed_in_order(
    live_server: LiveServer, browser: Browser, context: BrowserContext, site: Site
) -> None:
    url = site.add(
        "/signup",
        live_server,
        title="Sign up",
        before_load=(
            "patron.identify('user-7', {email: 'ana@example.com'});"
            "patron.track('Signed Up', {plan: 'pro'});"
            "patron.group('acme', {name: 'Acme'});"
            "patron.alias('user-7-new');"
            "window.queuedByStub = Array.isArray(window.patron) ? window.patron.length : -1;"
        ),
    )
    page, errors = open_page(context, url)
    # page() from the install line and the four calls above, all held by the stub.
    assert page.evaluate("() => window.queuedByStub") == 5
    events = wait_for_events(
        live_server,
        has(("page", None), ("identify", None), ("track", "Signed Up"), ("group", None)),
        "the replayed calls",
    )
    events = wait_for_events(live_server, has(("alias", None)), "the alias")
    anonymous_id = page.evaluate("() => patron.anonymousId()")
    assert one(events, "page")["user_id"] is None
    assert one(events, "identify")["user_id"] == "user-7"
    assert one(events, "track")["user_id"] == "user-7"
    assert one(events, "group")["payload"]["groupId"] == "acme"
    alias = one(events, "alias")
    assert (alias["user_id"], alias["payload"]["previousId"]) == ("user-7-new", "user-7")
    assert {e["anonymous_id"] for e in events} == {anonymous_id}
    assert all("consent" not in e["payload"]["context"] for e in events)
    assert errors == []


def test_send_beacon_delivers_what_is_queued_when_the_page_is_left(
    live_server: LiveServer, browser: Browser, context: BrowserContext, site: Site
) -> None:
    # With a minute between flushes and 20 messages a batch, only the beacon can send these.
    url = site.add("/cart", live_server, title="Cart", attributes='data-flush-interval="60000"')
    page, errors = open_page(context, url)
    assert len(stored_queue(page)) == 1  # the page view, waiting
    page.evaluate(
        "() => { patron.track('Checkout Started', {items: 2});"
        " setTimeout(() => { location.href = '/next'; }, 0); }"
    )
    page.wait_for_url(site.url + "/next")
    events = wait_for_events(
        live_server, has(("page", None), ("track", "Checkout Started")), "the beacon"
    )
    assert one(events, "track")["payload"]["properties"] == {"items": 2}
    assert stored_queue(page) == []  # the beacon took them off the stored queue
    assert errors == []


def test_messages_tracked_during_an_outage_wait_in_storage_for_the_next_page(
    live_server: LiveServer, browser: Browser, context: BrowserContext, site: Site
) -> None:
    url = site.add("/blog", live_server, title="Blog")
    page, _ = open_page(context, url)
    wait_for_events(live_server, has(("page", None)), "the first page view")

    live_server.stop()
    failed = threading.Event()
    page.on("requestfailed", lambda request: failed.set() if "/v1/batch" in request.url else None)
    page.evaluate("() => { patron.track('Read While Offline'); patron.flush(); }")
    deadline = time.monotonic() + 30
    while not failed.is_set():
        assert time.monotonic() < deadline, "the send to the stopped server never failed"
        page.wait_for_timeout(50)  # lets Playwright deliver the browser's events
    assert [m["event"] for m in stored_queue(page)] == ["Read While Offline"]
    page.close()

    live_server.start()
    open_page(context, url)
    events = wait_for_events(
        live_server, has(("track", "Read While Offline")), "the message kept in storage"
    )
    assert one(events, "track", "Read While Offline")["payload"]["context"]["page"]["path"] == (
        "/blog"
    )


def test_a_refused_batch_is_dropped_not_retried(
    live_server: LiveServer, browser: Browser, context: BrowserContext, site: Site
) -> None:
    url = site.add("/wrong-key", live_server, title="Wrong key", write_key="not-a-write-key")
    page, _ = open_page(context, url)
    deadline = time.monotonic() + 30
    # A 401 empties the stored queue; a retryable failure would keep the page view in it.
    while stored_queue(page):
        assert time.monotonic() < deadline, "the refused page view stayed queued"
        page.wait_for_timeout(50)
    assert stored(live_server) == []
