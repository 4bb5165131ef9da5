#!/usr/bin/env python3
"""The CRM at scale: list, filter, search and timeline latency, and what permissions cost.

For each dialect (``--dialect sqlite|postgresql|both``) this

1. makes a fresh, migrated database (PostgreSQL: a temporary database on
   ``--postgres-url``) and seeds it in bulk through SQLAlchemy Core, in chunks: ``--persons``
   persons (name, email identity, owner, lifecycle stage, a few traits), ``--companies``
   companies with domains, a link from most persons to a company, two pipelines,
   ``--deals`` deals and ``--activities`` activities (calls, notes, tasks) spread over
   persons, companies and deals; 20 sales users and an admin own the records;
2. times the CRM services the API calls (the first page of 50, as the API serves it),
   ``--repeat`` times each with varied arguments, as an admin and as a sales user:
   contacts by newest, contacts filtered by lifecycle stage and sorted by name, contacts
   searched by a name, companies searched by name, deals filtered by stage and sorted by
   amount, and a person's timeline (events, activities and changes interleaved);
3. reports p50 and p99 per query and role, and how much the sales user's permission
   filter adds over the admin's unfiltered query (p50 ratio).

Prints one JSON object with the machine. The seed is fixed, so runs are comparable.
"""

from __future__ import annotations

import argparse
import os
import random
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import orjson
from sqlalchemy import insert

from patron.auth.models import Role, User
from patron.auth.service import Actor
from patron.core.db import create_db_engine
from patron.core.migrations import upgrade
from patron.core.pagination import ListQuery
from patron.core.runtime import Runtime
from patron.core.settings import Settings
from patron.crm import companies, contacts, deals, timeline
from patron.crm.models import Activity, Company, Deal, PersonCompany, Pipeline, Stage
from patron.identity.models import Identity, Person

sys.path.insert(0, str(Path(__file__).resolve().parent))
from ingest import fresh_database, machine

DEFAULT_PG = "postgresql://postgres@127.0.0.1:5432/postgres"
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
    seconds = round(time.perf_counter() - started, 1)
    return {
        "seed_seconds": seconds,
        "admin": Actor(admin["id"], admin["email"], Role.admin),
        "sales": Actor(users[0]["id"], users[0]["email"], Role.sales),
        "person_ids": person_ids,
        "own_person_ids": [p for p in person_ids if owner_of[p] == users[0]["id"]],
        "stage_ids": stage_ids,
    }


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else 0.0


def timed(runtime: Runtime, repeat: int, call: Callable[[Any, int], Any]) -> dict[str, float]:
    latencies = []
    for i in range(repeat):
        with runtime.readers() as db:
            started = time.perf_counter()
            call(db, i)
            latencies.append((time.perf_counter() - started) * 1000)
    return {
        "p50_ms": round(percentile(latencies, 0.5), 2),
        "p99_ms": round(percentile(latencies, 0.99), 2),
    }


def measure(runtime: Runtime, args: argparse.Namespace) -> dict[str, Any]:
    seeded = seed(runtime, args)
    rng = random.Random(7)
    out: dict[str, Any] = {"seed_seconds": seeded["seed_seconds"]}
    for role in ("admin", "sales"):
        actor = seeded[role]
        people = seeded["person_ids"] if role == "admin" else seeded["own_person_ids"]
        queries: dict[str, Callable[[Any, int], Any]] = {
            "contacts_newest": lambda db, _i, a=actor: contacts.list_contacts(
                db, actor=a, query=ListQuery(limit=50)
            ),
            "contacts_by_stage_sorted_by_name": lambda db, i, a=actor: contacts.list_contacts(
                db,
                actor=a,
                query=ListQuery(filters=(f"lifecycle_stage:eq:{STAGES[i % 5]}",), sort="name"),
            ),
            "contacts_search_name": lambda db, _i, a=actor: contacts.list_contacts(
                db, actor=a, query=ListQuery(limit=50), search=rng.choice(LAST)
            ),
            "companies_search": lambda db, _i, a=actor: companies.list_companies(
                db, actor=a, query=ListQuery(limit=50), search=rng.choice(INDUSTRIES)
            ),
            "deals_by_stage_by_amount": lambda db, i, a=actor: deals.list_deals(
                db,
                actor=a,
                query=ListQuery(
                    filters=(f"stage_id:eq:{seeded['stage_ids'][i % 4]}",), sort="-amount"
                ),
            ),
            "person_timeline": lambda db, _i, a=actor, p=people: timeline.timeline(
                db, actor=a, scope=timeline.person_scope(db, a, rng.choice(p)), limit=50
            ),
        }
        out[role] = {name: timed(runtime, args.repeat, q) for name, q in queries.items()}
    out["permission_overhead_p50"] = {
        name: round(out["sales"][name]["p50_ms"] / max(out["admin"][name]["p50_ms"], 1e-3), 2)
        for name in out["admin"]
    }
    return out


def run_dialect(dialect: str, args: argparse.Namespace) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="patron-bench-crm-") as tmp:
        workdir = Path(tmp)
        with fresh_database(dialect, workdir, "crm", args.postgres_url) as url:
            settings = Settings(database_url=url, data_dir=workdir / "data")
            engine = create_db_engine(settings)
            upgrade(engine)
            engine.dispose()
            runtime = Runtime.start(settings)
            try:
                return measure(runtime, args)
            finally:
                runtime.close()


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
    args = parser.parse_known_args(argv)[0]
    dialects = ("sqlite", "postgresql") if args.dialect == "both" else (args.dialect,)
    report: dict[str, Any] = {
        "sizes": {
            "persons": args.persons,
            "companies": args.companies,
            "deals": args.deals,
            "activities": args.activities,
        }
    }
    for dialect in dialects:
        report[dialect] = run_dialect(dialect, args)
    report["machine"] = machine()
    print(orjson.dumps(report, option=orjson.OPT_INDENT_2).decode())
    return 0


if __name__ == "__main__":
    sys.exit(main())
