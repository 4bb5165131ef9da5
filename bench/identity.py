#!/usr/bin/env python3
"""Identity resolution and profiles at scale: processing rate, lookups, unmerge, rebuild.

For each dialect (``--dialect sqlite|postgresql|both``) this

1. makes a fresh, migrated database (PostgreSQL: a temporary database on ``--postgres-url``);
2. loads the demo shop (``patron.demo.load_shop``: ``--people`` customers browsing
   anonymously on one or two devices, signing up and in, ordering from the backend under a
   second email now and then, joining companies) into the event log through the real
   ingestion service, with processing off;
3. times ``Processor.drain()``: every event resolved to its person, traits with lineage,
   computed traits (``lifetime_value`` built in), companies; reports events/s;
4. times ``--lookups`` profile fetches by email (the profile API's service calls: person,
   identities, companies, merges, first timeline page) and reports p50/p99;
5. times ``--unmerges`` unmerges of merges the demo produced (each replays the person's
   events) and reports p50/p99;
6. times ``patron rebuild`` (``pipeline.rebuild``) of the whole base and checks that it
   reaches the same persons, identities and traits as the live run.

Prints one JSON object with the machine.
"""

from __future__ import annotations

import argparse
import os
import random
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from sqlalchemy import func, select

from patron.collect import service as collect_service
from patron.core.db import create_db_engine
from patron.core.migrations import upgrade
from patron.core.runtime import Runtime
from patron.core.settings import Settings
from patron.demo import load_shop
from patron.identity import linkage
from patron.identity import service as identity
from patron.identity.models import Identity, Merge, Person
from patron.pipeline import Processor, rebuild
from patron.profiles.service import get_profile, timeline

sys.path.insert(0, str(Path(__file__).resolve().parent))
from ingest import fresh_database, machine

DEFAULT_PG = "postgresql://postgres@127.0.0.1:5432/postgres"


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else 0.0


def state(runtime: Runtime) -> dict[str, Any]:
    with runtime.readers() as db:
        persons = {
            str(p.id): p.traits
            for p in db.scalars(select(Person).where(Person.merged_into.is_(None)))
        }
        identities = {(i.kind, i.value, str(i.person_id)) for i in db.scalars(select(Identity))}
    return {"persons": persons, "identities": identities}


def run_dialect(dialect: str, args: argparse.Namespace) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="patron-bench-identity-") as tmp:
        workdir = Path(tmp)
        with fresh_database(dialect, workdir, "identity", args.postgres_url) as url:
            settings = Settings(database_url=url, data_dir=workdir / "data")
            engine = create_db_engine(settings)
            upgrade(engine)
            engine.dispose()
            runtime = Runtime.start(settings)
            try:
                return measure(runtime, args)
            finally:
                runtime.close()


def measure(runtime: Runtime, args: argparse.Namespace) -> dict[str, Any]:
    settings = runtime.settings
    with runtime.sessions() as db:
        web, _ = collect_service.create_source(db, name="Website", kind="browser")
        server, _ = collect_service.create_source(db, name="Shop backend")
        db.commit()
    loaded = load_shop(
        runtime,
        people=args.people,
        seed=7,
        sources={"web": web.id, "server": server.id},
        process=False,
    )
    started = time.perf_counter()
    events = Processor(runtime.sessions, settings=settings).drain()
    processing = time.perf_counter() - started
    out: dict[str, Any] = {
        "people": args.people,
        "events": events,
        "messages_loaded": loaded.messages,
        "processing_seconds": round(processing, 2),
        "processing_events_per_second": round(events / processing),
    }
    with runtime.readers() as db:
        out["persons"] = db.scalar(
            select(func.count()).select_from(Person).where(Person.merged_into.is_(None))
        )
        out["merges"] = db.scalar(select(func.count()).select_from(Merge))
        emails = list(db.scalars(select(Identity.value).where(Identity.kind == "email")))
        merge_ids = list(db.scalars(select(Merge.id).order_by(Merge.id)))
    started = time.perf_counter()
    full = linkage.run_matching(
        runtime.readers, runtime.sessions, settings=settings, actor=None, full=True
    )
    out["match_full_seconds"] = round(time.perf_counter() - started, 2)
    out["match_full"] = {
        "compared": full.run.compared,
        "pairs": full.run.pairs,
        "merged": full.run.merged,
        "queued": full.run.queued,
    }
    started = time.perf_counter()
    nothing_new = linkage.run_matching(
        runtime.readers, runtime.sessions, settings=settings, actor=None
    )
    out["match_incremental_nothing_new_seconds"] = round(time.perf_counter() - started, 2)
    out["match_incremental_compared"] = nothing_new.run.compared
    rng = random.Random(11)
    latencies = []
    for email in rng.sample(emails, min(args.lookups, len(emails))):
        started = time.perf_counter()
        with runtime.readers() as db:
            person = identity.find_by_identifier(db, kind="email", value=email, settings=settings)
            get_profile(db, person.id)
            timeline(db, person.id, limit=20, cursor=None)
        latencies.append((time.perf_counter() - started) * 1000)
    out["lookup_p50_ms"] = round(percentile(latencies, 0.5), 2)
    out["lookup_p99_ms"] = round(percentile(latencies, 0.99), 2)
    unmerges = []
    for merge_id in rng.sample(merge_ids, min(args.unmerges, len(merge_ids))):
        started = time.perf_counter()
        with runtime.sessions() as db:
            identity.unmerge(db, merge_id=merge_id, settings=settings, actor=None)
            db.commit()
        unmerges.append((time.perf_counter() - started) * 1000)
    out["unmerges"] = len(unmerges)
    out["unmerge_p50_ms"] = round(percentile(unmerges, 0.5), 2)
    out["unmerge_p99_ms"] = round(percentile(unmerges, 0.99), 2)
    live = state(runtime)
    started = time.perf_counter()
    rebuild(runtime.sessions, settings)
    out["rebuild_seconds"] = round(time.perf_counter() - started, 2)
    out["rebuild_matches_live"] = state(runtime) == live
    return out


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dialect", choices=("sqlite", "postgresql", "both"), default="both")
    parser.add_argument(
        "--postgres-url", default=os.environ.get("PATRON_BENCH_POSTGRES_URL", DEFAULT_PG)
    )
    parser.add_argument("--people", type=int, default=10_000)
    parser.add_argument("--lookups", type=int, default=500)
    parser.add_argument("--unmerges", type=int, default=50)
    return parser.parse_known_args(argv)[0]


def main(argv: list[str] | None = None) -> int:
    import orjson

    args = parse_args(argv)
    dialects = ("sqlite", "postgresql") if args.dialect == "both" else (args.dialect,)
    report = {d: run_dialect(d, args) for d in dialects}
    report["machine"] = machine()
    print(orjson.dumps(report, option=orjson.OPT_INDENT_2).decode())
    return 0 if all(r["rebuild_matches_live"] for k, r in report.items() if k != "machine") else 1


if __name__ == "__main__":
    sys.exit(main())
