"""Fixtures shared by the whole suite.

Every test that touches the database runs twice: on SQLite and on PostgreSQL. PostgreSQL
runs when ``PATRON_TEST_POSTGRES_URL`` is set, and always in CI (where it must be reachable,
or the run fails). Each test starts from an empty, migrated schema.
"""

from __future__ import annotations

import itertools
import json
import os
import shutil
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session
from typer.testing import CliRunner

from patron.app import create_app
from patron.auth import service as auth_service
from patron.cli import app
from patron.collect import service as collect_service
from patron.collect.models import Source
from patron.core.db import create_db_engine, normalise_url
from patron.core.migrations import upgrade
from patron.core.runtime import Runtime
from patron.core.settings import Settings
from patron.models import metadata
from patron.pipeline import Processor

IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")
PG_URL = os.environ.get("PATRON_TEST_POSTGRES_URL") or (
    "postgresql://postgres@127.0.0.1:5432/postgres" if IN_CI else None
)
DIALECTS = ["sqlite", "postgresql"]


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "dialect" in metafunc.fixturenames:
        metafunc.parametrize("dialect", DIALECTS, scope="session")


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A migrated SQLite file; each test gets a copy, which is far faster than migrating."""
    path = tmp_path_factory.mktemp("template") / "template.db"
    engine = create_db_engine(Settings(), f"sqlite:///{path}")
    upgrade(engine)
    engine.dispose()  # the last connection to close checkpoints the WAL into the file
    return path


@pytest.fixture(scope="session")
def postgres_database() -> Iterator[str]:
    """A throwaway PostgreSQL database for this run, migrated once."""
    if PG_URL is None:
        pytest.skip("PostgreSQL tests need PATRON_TEST_POSTGRES_URL (CI always runs them)")
    admin_url = normalise_url(PG_URL)
    name = f"patron_test_{uuid.uuid4().hex[:12]}"
    admin = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as connection:
            connection.execute(text(f'CREATE DATABASE "{name}"'))
    except Exception as exc:
        if IN_CI:
            pytest.fail(f"CI requires PostgreSQL at {PG_URL}: {exc}")
        pytest.skip(f"PostgreSQL at {PG_URL} is not reachable: {exc}")
    url = make_url(admin_url).set(database=name).render_as_string(hide_password=False)
    engine = create_db_engine(Settings(), url)
    upgrade(engine)
    engine.dispose()
    yield url
    with admin.connect() as connection:
        connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


@pytest.fixture
def empty_database_url(dialect: str, tmp_path: Path) -> Iterator[str]:
    """A database with no schema at all, for tests of migrating."""
    if dialect == "sqlite":
        yield f"sqlite:///{tmp_path / 'empty.db'}"
        return
    if PG_URL is None:
        pytest.skip("PostgreSQL tests need PATRON_TEST_POSTGRES_URL (CI always runs them)")
    admin = create_engine(normalise_url(PG_URL), isolation_level="AUTOCOMMIT")
    name = f"patron_empty_{uuid.uuid4().hex[:12]}"
    with admin.connect() as connection:
        connection.execute(text(f'CREATE DATABASE "{name}"'))
    yield make_url(normalise_url(PG_URL)).set(database=name).render_as_string(hide_password=False)
    with admin.connect() as connection:
        connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


@pytest.fixture
def database_url(dialect: str, request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """An empty, migrated database of the given dialect for one test."""
    if dialect == "sqlite":
        template: Path = request.getfixturevalue("sqlite_template")
        target = tmp_path / "patron.db"
        shutil.copyfile(template, target)
        return f"sqlite:///{target}"
    url: str = request.getfixturevalue("postgres_database")
    _truncate_all(url)
    return url


# Tables whose rows the migrations seed: emptied of everything else, like a fresh database.
SEEDED = {"computed_traits": "NOT builtin"}


def _truncate_all(url: str) -> None:
    tables = ", ".join(f'"{t.name}"' for t in metadata.sorted_tables if t.name not in SEEDED)
    engine = create_engine(normalise_url(url))
    with engine.begin() as connection:
        connection.execute(text(f"TRUNCATE {tables} RESTART IDENTITY CASCADE"))
        for table, condition in SEEDED.items():
            connection.execute(text(f'DELETE FROM "{table}" WHERE {condition}'))
            connection.execute(
                text(
                    f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), "
                    f'(SELECT COALESCE(MAX(id), 0) + 1 FROM "{table}"), false)'
                )
            )
    engine.dispose()


@pytest.fixture
def settings(database_url: str, tmp_path: Path) -> Settings:
    return Settings(database_url=database_url, data_dir=tmp_path / "data", process_idle_ms=20)


@pytest.fixture
def runtime(settings: Settings) -> Iterator[Runtime]:
    rt = Runtime.start(settings)
    yield rt
    rt.close()


@pytest.fixture
def db(runtime: Runtime) -> Iterator[Session]:
    """A session for assertions and service calls; its reads never block the app's writes."""
    with runtime.readers() as session:
        yield session


@pytest.fixture
def client(runtime: Runtime) -> Iterator[TestClient]:
    """The real application in-process; processing is driven by tests that need it."""
    with TestClient(create_app(runtime, process=False)) as test_client:
        yield test_client


class Credentials:
    """Makes users of any role and hands back their bearer headers."""

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime

    def headers(self, role: str = "admin", email: str | None = None) -> dict[str, str]:
        with self.runtime.sessions() as session:
            user = auth_service.create_user(
                session, email=email or f"{role}-{uuid.uuid4().hex[:8]}@example.com", role=role
            )
            _, secret = auth_service.create_token(session, user=user)
            session.commit()
        return {"Authorization": f"Bearer {secret}"}


@pytest.fixture
def credentials(runtime: Runtime) -> Credentials:
    return Credentials(runtime)


@pytest.fixture
def admin_headers(credentials: Credentials) -> dict[str, str]:
    return credentials.headers("admin")


@pytest.fixture
def source(runtime: Runtime) -> tuple[Source, str]:
    """A server source and its write key."""
    with runtime.sessions() as session:
        created, key = collect_service.create_source(session, name="Backend")
        session.commit()
    return created, key


@pytest.fixture
def write_key(source: tuple[Source, str]) -> str:
    return source[1]


def basic(write_key: str) -> Any:
    """HTTP Basic credentials the way Segment's clients send the write key."""
    return (write_key, "")


@pytest.fixture
def cli(runtime: Runtime, monkeypatch: pytest.MonkeyPatch) -> CliRunner:
    """A runner for ``patron`` commands against the test's database."""
    monkeypatch.setenv("PATRON_DATABASE_URL", str(runtime.settings.database_url))
    monkeypatch.setenv("PATRON_DATA_DIR", str(runtime.settings.data_dir))
    return CliRunner()


def run_json(cli: CliRunner, *args: str) -> dict[str, Any]:
    """Run a creating command with ``--json``; it must print exactly one JSON object."""
    result = cli.invoke(app, [*args, "--json"])
    assert result.exit_code == 0, result.output
    lines = [line for line in result.stdout.splitlines() if line.strip()]
    assert len(lines) == 1, result.stdout
    parsed = json.loads(lines[0])
    assert isinstance(parsed, dict)
    return parsed


# --- sending messages and looking persons up -------------------------------------------

_ids = itertools.count(1)


class Tracker:
    """Sends messages with the source's write key and runs the processor after each call."""

    def __init__(self, client: TestClient, write_key: str, runtime: Runtime) -> None:
        self.client, self.write_key, self.runtime = client, write_key, runtime

    def send(self, *messages: dict[str, Any], process: bool = True) -> None:
        batch = [{"messageId": f"m-{next(_ids)}", **m} for m in messages]
        answer = self.client.post("/v1/batch", auth=basic(self.write_key), json={"batch": batch})
        assert answer.status_code == 200, answer.text
        assert answer.json()["rejected"] == [], answer.text
        if process:
            self.process()

    def process(self) -> int:
        processor = Processor(self.runtime.sessions, settings=self.runtime.settings)
        return processor.drain()


@pytest.fixture
def tracker(client: TestClient, write_key: str, runtime: Runtime) -> Tracker:
    return Tracker(client, write_key, runtime)


Lookup = Callable[..., dict[str, Any]]


@pytest.fixture
def lookup(client: TestClient, admin_headers: dict[str, str]) -> Lookup:
    """Fetch a profile by one identifier (``lookup(email="...")``); asserts it exists."""

    def fetch(**query: str) -> dict[str, Any]:
        answer = client.get("/v1/persons", params=query, headers=admin_headers)
        assert answer.status_code == 200, answer.text
        body: dict[str, Any] = answer.json()
        return body

    return fetch


# --- users of every role and persons, for the CRM and access tests ---------------------


@dataclass
class User:
    id: str
    email: str
    headers: dict[str, str]


MakeUser = Callable[..., User]


@pytest.fixture
def make_user(client: TestClient, credentials: Credentials, runtime: Runtime) -> MakeUser:
    """A user of a role, with a token; ``make_user("sales")``."""

    def make(role: str, email: str | None = None) -> User:
        email = email or f"{role}-{uuid.uuid4().hex[:8]}@example.com"
        headers = credentials.headers(role, email=email)
        me = client.get("/v1/me", headers=headers).json()
        return User(id=me["id"], email=email, headers=headers)

    return make


@pytest.fixture
def admin(make_user: MakeUser) -> User:
    return make_user("admin")


MakePerson = Callable[..., str]


@pytest.fixture
def make_person(tracker: Tracker, lookup: Lookup) -> MakePerson:
    """A person from an identify call (processed); returns the person id."""

    def make(email: str, **traits: Any) -> str:
        user_id = f"u-{email}"
        tracker.send({"type": "identify", "userId": user_id, "traits": {"email": email, **traits}})
        return str(lookup(user_id=user_id)["id"])

    return make


def assert_error(answer: Any, status: int, field: str | None = None) -> dict[str, Any]:
    """A JSON error with the status, a code and message, naming ``field`` when given."""
    assert answer.status_code == status, answer.text
    body: dict[str, Any] = answer.json()
    assert body["code"]
    assert body["message"]
    if field is not None:
        assert body.get("field") == field, body
    return body


def search_pages(
    client: TestClient, path: str, user: User, q: str, *, limit: int, key: str
) -> tuple[list[Any], int]:
    """Every page of a searched list, ``limit`` rows at a time, followed by its cursors:
    each row's ``key``, and the total the first page gave."""
    found: list[Any] = []
    total, cursor = None, None
    while True:
        params = {"q": q, "limit": limit, **({"cursor": cursor} if cursor else {})}
        answer = client.get(path, params=params, headers=user.headers)
        assert answer.status_code == 200, answer.text
        body = answer.json()
        found += [row[key] for row in body["items"]]
        total = body["total"] if total is None else total
        if not (cursor := body.get("next_cursor")):
            return found, total
