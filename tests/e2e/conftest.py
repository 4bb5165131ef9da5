"""A real Patron server process for tests that drive it from outside.

``live_server`` runs ``patron serve`` in a subprocess on a free port, on the test's
database (SQLite or PostgreSQL, like every database test), with a source and an admin
API token made beforehand. It can be killed with SIGKILL and started again.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Browser, Page, sync_playwright

from patron.core.runtime import Runtime
from patron.core.settings import Settings
from tests.conftest import IN_CI, Credentials

CHROMIUM = Path("/usr/bin/chromium")
# As the machine's probe launched it: no sandbox as root, and nothing that phones home,
# because this machine's closed network refuses those connections.
CHROMIUM_ARGS = [
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class LiveServer:
    settings: Settings
    write_key: str
    admin_headers: dict[str, str]
    log_path: Path
    port: int = field(default_factory=free_port)
    workers: int = 1
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def environment(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("PATRON_")}
        env.update(
            PATRON_DATABASE_URL=str(self.settings.database_url),
            PATRON_DATA_DIR=str(self.settings.data_dir),
            PATRON_PORT=str(self.port),
            PATRON_PROCESS_IDLE_MS="20",
            PATRON_LOG_LEVEL="warning",
            PATRON_WEB_WORKERS=str(self.workers),
        )
        return env

    def start(self) -> None:
        log = self.log_path.open("ab")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "patron.cli", "serve"],
            env=self.environment(),
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        # Generous: a loaded two-core machine can take tens of seconds to start two
        # workers and the processor; this waits for readiness, it times nothing.
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"server exited: {self.log_path.read_text()[-2000:]}")
            try:
                if httpx.get(f"{self.url}/healthz", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                time.sleep(0.1)
        self.stop()  # a server that never answered must not outlive the test
        raise RuntimeError(f"server did not start: {self.log_path.read_text()[-2000:]}")

    def kill(self) -> None:
        """SIGKILL: no shutdown hooks, no flushing; what was committed must survive."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(timeout=10)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.kill()


@pytest.fixture
def live_server(
    runtime: Runtime,
    settings: Settings,
    credentials: Credentials,
    write_key: str,
    tmp_path: Path,
    request: pytest.FixtureRequest,
) -> Iterator[LiveServer]:
    """``patron serve``; a test parametrized indirectly with ``workers`` sets how many."""
    server = LiveServer(
        settings=settings,
        write_key=write_key,
        admin_headers=credentials.headers("admin"),
        log_path=tmp_path / "server.log",
        workers=getattr(request, "param", 1),
    )
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    """Debian's Chromium driven by Playwright; required in CI, skipped elsewhere if absent."""
    if not CHROMIUM.exists():
        reason = (
            f"the browser tests need Debian's chromium at {CHROMIUM} (apt-get install chromium)"
        )
        if IN_CI:
            pytest.fail(reason)
        pytest.skip(reason)
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield launched
        launched.close()


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    """A fresh browser context and page, at a desktop size."""
    context = browser.new_context(viewport={"width": 1360, "height": 820})
    opened = context.new_page()
    opened.set_default_timeout(15_000)
    yield opened
    context.close()
