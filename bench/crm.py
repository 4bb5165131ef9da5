#!/usr/bin/env python3
"""The CRM at scale: endpoint latency, what permissions cost, and importing people.

For each dialect (``--dialect sqlite|postgresql|both``) this

1. makes a fresh, migrated database (PostgreSQL: a temporary database on
   ``--postgres-url``) and seeds it in bulk through SQLAlchemy Core, in chunks: ``--persons``
   persons (name, email identity, owner, lifecycle stage, a few traits), ``--companies``
   companies with domains, a link from most persons to a company, two pipelines,
   ``--deals`` deals and ``--activities`` activities (calls, notes, tasks) spread over
   persons, companies and deals; 20 sales users and an admin own the records; then builds
   the search documents and the planner's statistics (what processing and Patron's hourly
   ANALYZE job do for data that arrives the usual way), and on PostgreSQL VACUUMs, as
   autovacuum would after a bulk load;
2. starts a real ``patron serve`` on it (one web worker, processing off, production
   settings) and times the **HTTP endpoints** from this process over one keep-alive
   connection, ``--repeat`` times each with varied arguments, as an admin and as a sales user
   (API tokens): the contact list by newest, filtered by lifecycle stage and sorted by name,
   searched by a name; companies searched; deals filtered by stage and sorted by amount; a
   person's timeline (events, activities and changes interleaved); and a profile looked up
   by email (``GET /v1/persons?email=``). Every answer must be a 200;
3. reports p50 and p99 per endpoint and role, and how much the sales user's permission
   filter adds over the admin's unfiltered query (p50 ratio);
4. imports ``--import-rows`` people from a CSV file (id, names, email, phone, company,
   country) into another fresh database with ``patron import people --id-column id``, as a
   user would, and reports the wall time and rows/s until every row is committed to the event
   log; then processes up to ``--import-process`` of those rows (identity resolution,
   traits, computed traits) and reports persons/s.

Prints one JSON object with the machine. The seed is fixed, so runs are comparable.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import random
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import orjson
from sqlalchemy import Engine, insert, text

from patron.auth.models import Role, User
from patron.auth.service import Actor, create_token
from patron.core.db import analyze, create_db_engine
from patron.core.migrations import upgrade
from patron.core.runtime import Runtime
from patron.core.settings import Settings
from patron.crm.models import Activity, Company, Deal, PersonCompany, Pipeline, Stage
from patron.crm.search import reindex
from patron.identity import service as identity
from patron.identity.models import Identity, Person
from patron.pipeline import Processor
from patron.profiles.service import get_profile, timeline

sys.path.insert(0, str(Path(__file__).resolve().parent))
from ingest import free_port, fresh_database, machine, patron_cli, running_server, server_env

DEFAULT_PG = "postgresql://postgres@127.0.0.1:5432/postgres"
IMPORT_FLAGS = ("--source", "crm-import", "--id-column", "id", "--json")
CHUNK = 10_000
FIRST = [
    "ada",
    "alan",
    "grace",
    "linus",
    "margaret",
    "ken",
    "barbara",
    "dennis",
    "frances",
    "edsger",
    "radia",
    "tim",
]
LAST = [
    "lovelace",
    "turing",
    "hopper",
    "torvalds",
    "hamilton",
    "thompson",
    "liskov",
    "ritchie",
    "allen",
    "dijkstra",
]
LAST += ["perlman", "berners-lee"]
STAGES = ("subscriber", "lead", "marketingqualifiedlead", "salesqualifiedlead", "customer")
INDUSTRIES = ("Software", "Retail", "Energy", "Health", "Finance", "Manufacturing")


def chunks(rows: Iterator[dict[str, Any]]) -> Iterator[list[dict[str, Any]]]:
    batch: list[dict[str, Any]] = []
    for row in rows:
        batch.append(row)
        if len(batch) >= CHUNK:
            yield batch
            batch = []
    if batch:
        yield batch


def seed(runtime: Runtime, args: argparse.Namespace) -> dict[str, Any]:
    """Bulk-load the CRM; returns the ids the measurements pick from."""
    rng = random.Random(20261123)
    now = datetime.now(UTC)
    users = [
        {"id": uuid.uuid4(), "email": f"rep{i}@example.com", "name": f"Rep {i}", "role": "sales"}
        for i in range(20)
    ]
    admin = {"id": uuid.uuid4(), "email": "boss@example.com", "name": "Boss", "role": "admin"}
    person_ids = [uuid.uuid4() for _ in range(args.persons)]
    company_ids = [uuid.uuid4() for _ in range(args.companies)]
    pipeline_id = uuid.uuid4()
    stage_ids = [uuid.uuid4() for _ in range(4)]
    deal_ids = [uuid.uuid4() for _ in range(args.deals)]
    owner_of = {pid: users[rng.randrange(len(users))]["id"] for pid in person_ids}

    def persons() -> Iterator[dict[str, Any]]:
        for n, pid in enumerate(person_ids):
            first, last = rng.choice(FIRST), rng.choice(LAST)
            yield {
                "id": pid,
                "created_seq": n + 1,
                "traits": {
                    "name": f"{first.title()} {last.title()} {n}",
                    "email": f"{first}.{last}.{n}@example.com",
                    "plan": rng.choice(("free", "pro", "team")),
                },
                "computed": {},
                "owner_id": owner_of[pid],
                "lifecycle_stage": rng.choice(STAGES),
                "tags": [],
                "custom": {},
                "first_seen": now - timedelta(days=rng.uniform(0, 400)),
                "last_seen": now,
                "created_at": now - timedelta(seconds=args.persons - n),
                "updated_at": now,
            }

    def identities() -> Iterator[dict[str, Any]]:
        for n, pid in enumerate(person_ids):
            yield {"kind": "email", "value": f"p{n}@example.com", "person_id": pid, "first_seq": n}

    def firms() -> Iterator[dict[str, Any]]:
        for n, cid in enumerate(company_ids):
            yield {
                "id": cid,
                "name": f"{rng.choice(LAST).title()} {rng.choice(INDUSTRIES)} {n}",
                "domain": f"company{n}.example.com",
                "industry": rng.choice(INDUSTRIES),
                "size": rng.randrange(1, 5000),
                "owner_id": users[n % len(users)]["id"],
                "traits": {},
                "tags": [],
                "custom": {},
            }

    def links() -> Iterator[dict[str, Any]]:
        for pid in person_ids:
            if company_ids and rng.random() < 0.8:
                yield {"person_id": pid, "company_id": rng.choice(company_ids), "role": "Buyer"}

    def sales() -> Iterator[dict[str, Any]]:
        for n, did in enumerate(deal_ids):
            pid = rng.choice(person_ids)
            yield {
                "id": did,
                "name": f"Deal {n}",
                "amount": Decimal(rng.randrange(100, 100_000)),
                "currency": "EUR",
                "owner_id": owner_of[pid],
                "person_id": pid,
                "company_id": rng.choice(company_ids) if company_ids else None,
                "pipeline_id": pipeline_id,
                "stage_id": rng.choice(stage_ids),
                "status": "open",
                "custom": {},
                "last_activity_at": now - timedelta(days=rng.uniform(0, 60)),
            }

    def work() -> Iterator[dict[str, Any]]:
        for n in range(args.activities):
            pid = rng.choice(person_ids)
            kind = rng.choice(("call", "note", "task"))
            yield {
                "id": uuid.uuid4(),
                "kind": kind,
                "subject": f"{kind} {n}",
                "body": "",
                "person_id": pid,
                "deal_id": rng.choice(deal_ids) if deal_ids and rng.random() < 0.3 else None,
                "owner_id": owner_of[pid],
                "created_by": "bench",
                "occurred_at": now - timedelta(minutes=rng.uniform(0, 500_000)),
                "details": {},
                "priority": "normal" if kind == "task" else None,
            }

    started = time.perf_counter()
    with runtime.sessions() as session, session.begin():
        session.execute(insert(User), [{**u, "password_hash": None} for u in [*users, admin]])
        session.execute(insert(Pipeline), [{"id": pipeline_id, "name": "New business"}])
        session.execute(
            insert(Stage),
            [
                {
                    "id": sid,
                    "pipeline_id": pipeline_id,
                    "name": f"S{i}",
                    "position": i,
                    "probability": 20 * (i + 1),
                }
                for i, sid in enumerate(stage_ids)
            ],
        )
    for table, rows in (
        (Person, persons()),
        (Identity, identities()),
        (Company, firms()),
        (PersonCompany, links()),
        (Deal, sales()),
        (Activity, work()),
    ):
        for batch in chunks(rows):
            with runtime.sessions() as session, session.begin():
                session.execute(insert(table), batch)
    # The bulk load went around processing: build the search documents and the planner's
    # statistics as processing and Patron's hourly ANALYZE job would have.
    indexed = time.perf_counter()
    analyze(runtime.engine)
    with runtime.sessions() as session, session.begin():
        reindex(session)
    analyze(runtime.engine)
    vacuum(runtime.engine)
    seconds = round(time.perf_counter() - started, 1)
    return {
        "seed_seconds": seconds,
        "index_seconds": round(time.perf_counter() - indexed, 1),
        "admin": Actor(admin["id"], admin["email"], Role.admin),
        "sales": Actor(users[0]["id"], users[0]["email"], Role.sales),
        "person_ids": person_ids,
        "own_person_ids": [p for p in person_ids if owner_of[p] == users[0]["id"]],
        "index_of": {pid: n for n, pid in enumerate(person_ids)},
        "stage_ids": stage_ids,
    }


def vacuum(engine: Engine) -> None:
    """VACUUM ANALYZE on PostgreSQL, as autovacuum would after a bulk load: it marks pages
    all-visible, which index-only scans need (without it they read every row's page)."""
    if engine.dialect.name == "postgresql":
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
            connection.execute(text("VACUUM ANALYZE"))


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else 0.0


def timed(
    client: httpx.Client, repeat: int, request: Callable[[int], tuple[str, dict[str, Any]]]
) -> dict[str, float]:
    latencies, timeouts = [], 0
    for i in range(repeat):
        path, params = request(i)
        started = time.perf_counter()
        try:
            answer = client.get(path, params=params)
        except httpx.TimeoutException:
            # Counted at the client's timeout, and the endpoint's remaining calls skipped:
            # one pathological query must not cost the run, nor hide the others' numbers.
            timeouts += 1
            latencies.append((time.perf_counter() - started) * 1000)
            break
        latencies.append((time.perf_counter() - started) * 1000)
        if answer.status_code != 200:
            raise RuntimeError(f"GET {path} {params}: {answer.status_code} {answer.text[:300]}")
    out = {
        "p50_ms": round(percentile(latencies, 0.5), 2),
        "p99_ms": round(percentile(latencies, 0.99), 2),
    }
    if timeouts:
        out["timed_out"] = timeouts
    return out


def tokens(runtime: Runtime, seeded: dict[str, Any]) -> dict[str, str]:
    """API tokens of the seeded admin and sales user."""
    out: dict[str, str] = {}
    with runtime.sessions() as session:
        for role in ("admin", "sales"):
            user = session.get(User, seeded[role].user_id)
            assert user is not None
            _, out[role] = create_token(session, user=user, name="bench")
        session.commit()
    return out


@contextmanager
def read_only_server(runtime: Runtime, workdir: Path) -> Iterator[str]:
    """A real ``patron serve`` on the seeded database (one web worker, processing off);
    yields its URL."""
    env = server_env(
        str(runtime.settings.database_url),
        workdir / "data",
        free_port(),
        1,
        {"PATRON_PROCESS_IN_SERVER": "false"},
    )
    with running_server(env, workdir / "server.log") as (url, _pid):
        yield url


def measure(runtime: Runtime, args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    seeded = seed(runtime, args)
    out: dict[str, Any] = {
        "seed_seconds": seeded["seed_seconds"],
        "index_seconds": seeded["index_seconds"],
    }
    out.update(measure_endpoints(runtime, seeded, args, workdir))
    print(orjson.dumps({"partial": out}).decode(), file=sys.stderr, flush=True)
    if args.reports:
        # The reports' benchmark on this same data, which saves seeding it a second time.
        import reports

        settings = argparse.Namespace(repeat=args.reports_repeat, period_days=90, target_ms=200.0)
        out["reports"] = reports.measure_seeded(runtime, seeded, settings, workdir)
    return out


def measure_endpoints(
    runtime: Runtime, seeded: dict[str, Any], args: argparse.Namespace, workdir: Path
) -> dict[str, Any]:
    """Step 2 and 3 on a seeded database: each endpoint's p50 and p99 per role, and the
    permission filter's cost."""
    secrets = tokens(runtime, seeded)
    rng = random.Random(7)
    out: dict[str, Any] = {}
    with read_only_server(runtime, workdir) as url:
        for role in ("admin", "sales"):
            people = seeded["person_ids"] if role == "admin" else seeded["own_person_ids"]
            stages = seeded["stage_ids"]
            queries: dict[str, Callable[[int], tuple[str, dict[str, Any]]]] = {
                "contacts_newest": lambda _i: ("/v1/contacts", {"limit": 50}),
                "contacts_by_stage_sorted_by_name": lambda i: (
                    "/v1/contacts",
                    {"filter": f"lifecycle_stage:eq:{STAGES[i % 5]}", "sort": "name"},
                ),
                "contacts_search_name": lambda _i: ("/v1/contacts", {"q": rng.choice(LAST)}),
                "companies_search": lambda _i: ("/v1/companies", {"q": rng.choice(INDUSTRIES)}),
                "deals_by_stage_by_amount": lambda i, s=stages: (
                    "/v1/deals",
                    {"filter": f"stage_id:eq:{s[i % 4]}", "sort": "-amount"},
                ),
                "person_timeline": lambda _i, p=people: (
                    f"/v1/contacts/{rng.choice(p)}/timeline",
                    {"limit": 50},
                ),
                "profile_by_email": lambda _i, p=people: (
                    "/v1/persons",
                    {"email": f"p{seeded['index_of'][rng.choice(p)]}@example.com"},
                ),
            }
            headers = {"Authorization": f"Bearer {secrets[role]}"}
            with httpx.Client(base_url=url, headers=headers, timeout=60) as client:
                for q in queries.values():  # warm the caches and the connection
                    timed(client, 3, q)
                out[role] = {name: timed(client, args.repeat, q) for name, q in queries.items()}
    out["permission_overhead_p50"] = {
        name: round(out["sales"][name]["p50_ms"] / max(out["admin"][name]["p50_ms"], 1e-3), 2)
        for name in out["admin"]
    }
    out["profile_lookup_service"] = profile_lookups(runtime, seeded, args.repeat * 5)
    return out


def profile_lookups(runtime: Runtime, seeded: dict[str, Any], count: int) -> dict[str, float]:
    """Issue 3's profile lookup as service calls, without HTTP: a person found by email,
    their profile and the first 20 items of their timeline (what ``bench/identity.py``
    times on its smaller database), for ``count`` random persons."""
    rng = random.Random(13)
    latencies = []
    for person_id in rng.sample(seeded["person_ids"], count):
        email = f"p{seeded['index_of'][person_id]}@example.com"
        started = time.perf_counter()
        with runtime.readers() as db:
            found = identity.find_by_identifier(
                db, kind="email", value=email, settings=runtime.settings
            )
            get_profile(db, found.id)
            timeline(db, found.id, limit=20, cursor=None)
        latencies.append((time.perf_counter() - started) * 1000)
    return {
        "lookups": count,
        "p50_ms": round(percentile(latencies, 0.5), 2),
        "p99_ms": round(percentile(latencies, 0.99), 2),
    }


def write_people_csv(path: Path, rows: int) -> None:
    rng = random.Random(3)
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["id", "first_name", "last_name", "email", "phone", "company", "country"])
        for n in range(rows):
            first, last = rng.choice(FIRST), rng.choice(LAST)
            writer.writerow(
                [
                    f"CRM-{n}",
                    first.title(),
                    last.title(),
                    f"{first}.{last}.{n}@example.com",
                    f"+1 212 {(n // 10000) % 1000:03d} {n % 10000:04d}",
                    f"{rng.choice(LAST).title()} {rng.choice(INDUSTRIES)}",
                    rng.choice(("US", "GB", "DE", "FR", "JP")),
                ]
            )


def measure_import(dialect: str, args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    """``patron import people`` of a large CSV, then processing some of it."""
    path = workdir / "people.csv"
    write_people_csv(path, args.import_rows)
    with fresh_database(dialect, workdir, "crm_import", args.postgres_url) as url:
        env = server_env(url, workdir / "import-data", 0, 1, {})
        patron_cli(env, "migrate")
        started = time.perf_counter()
        done = subprocess.run(
            [sys.executable, "-m", "patron.cli", "import", "people", str(path), *IMPORT_FLAGS],
            env=env,
            capture_output=True,
            text=True,
            check=False,
        )
        seconds = time.perf_counter() - started
        if done.returncode != 0:
            raise RuntimeError(f"import failed: {done.stderr[-2000:]}")
        report = json.loads(done.stdout.strip().splitlines()[-1])
        settings = Settings(database_url=url, data_dir=workdir / "import-data")
        runtime = Runtime.start(settings)
        try:
            processor = Processor(runtime.sessions, settings=settings, batch_size=500)
            processed, began, cpu = 0, time.perf_counter(), time.process_time()
            while processed < args.import_process and (handled := processor.step()):
                processed += handled
            process_seconds = time.perf_counter() - began
            process_cpu = time.process_time() - cpu
        finally:
            runtime.close()
    return {
        "rows": args.import_rows,
        "accepted": report["accepted"],
        "rejected": report["rejected"],
        "import_seconds": round(seconds, 1),
        "import_rows_per_second": round(report["accepted"] / seconds),
        "processed_rows": processed,
        "process_seconds": round(process_seconds, 1),
        "processed_per_second": round(processed / process_seconds) if processed else 0,
        "process_cpu_us_per_row": round(process_cpu / processed * 1e6) if processed else 0,
    }


def run_dialect(dialect: str, args: argparse.Namespace) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="patron-bench-crm-") as tmp:
        workdir = Path(tmp)
        out: dict[str, Any] = {}
        if args.persons:
            with fresh_database(dialect, workdir, "crm", args.postgres_url) as url:
                settings = Settings(database_url=url, data_dir=workdir / "data")
                engine = create_db_engine(settings)
                upgrade(engine)
                engine.dispose()
                runtime = Runtime.start(settings)
                try:
                    out.update(measure(runtime, args, workdir))
                finally:
                    runtime.close()
        if args.import_rows:
            out["people_import"] = measure_import(dialect, args, workdir)
        return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dialect", choices=("sqlite", "postgresql", "both"), default="both")
    parser.add_argument(
        "--postgres-url", default=os.environ.get("PATRON_BENCH_POSTGRES_URL", DEFAULT_PG)
    )
    parser.add_argument("--persons", type=int, default=1_000_000)
    parser.add_argument("--companies", type=int, default=100_000)
    parser.add_argument("--deals", type=int, default=200_000)
    parser.add_argument("--activities", type=int, default=2_000_000)
    parser.add_argument("--repeat", type=int, default=100)
    parser.add_argument("--import-rows", type=int, default=1_000_000)
    parser.add_argument("--import-process", type=int, default=100_000)
    parser.add_argument(
        "--reports",
        action="store_true",
        help="then run bench/reports.py's measurements on the same database",
    )
    parser.add_argument("--reports-repeat", type=int, default=30)
    args = parser.parse_known_args(argv)[0]
    dialects = ("sqlite", "postgresql") if args.dialect == "both" else (args.dialect,)
    report: dict[str, Any] = {
        "sizes": {
            "persons": args.persons,
            "companies": args.companies,
            "deals": args.deals,
            "activities": args.activities,
            "import_rows": args.import_rows,
        }
    }
    for dialect in dialects:
        report[dialect] = run_dialect(dialect, args)
    report["machine"] = machine()
    print(orjson.dumps(report, option=orjson.OPT_INDENT_2).decode())
    return 0


if __name__ == "__main__":
    sys.exit(main())
