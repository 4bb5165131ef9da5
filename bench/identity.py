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

Then, on SQLite, **accuracy** against a known truth (``--accuracy-records``; 0 skips it):
labelled synthetic people (``identity._matching_synthetic``: 25% extra records of a
person with typos, nicknames, swapped names, email case or another email, phone formats,
moves, missing fields) each sent as one ``identify`` through ingestion and the live
pipeline. Every real person has one web account (``userId``) on one of their records;
the others come from systems without it (an anonymous id each). Traps: family members
(their own account) sharing a relative's email, and kiosks (one anonymous id) on which
several account holders sign in. Pairwise precision, recall and F1 over records are
reported for the deterministic graph alone, then after record linkage (automatic merges
only), and as an upper bound if a person accepted every pair queued for review; plus the
number of persons holding two different user ids (the target is none).

Prints one JSON object with the machine.
"""

from __future__ import annotations

import argparse
import os
import random
import sys
import tempfile
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import func, select

from patron.collect import service as collect_service
from patron.core.db import create_db_engine
from patron.core.migrations import upgrade
from patron.core.runtime import Runtime, tune_garbage_collector
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
            # As the processes that process in production do (serve, worker).
            tune_garbage_collector()
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


def pair_score(clusters: dict[Any, list[int]]) -> dict[str, float]:
    """Pairwise precision, recall and F1 of clusters of entity labels."""
    predicted = true_positive = 0
    by_entity: dict[int, int] = {}
    for members in clusters.values():
        predicted += len(members) * (len(members) - 1) // 2
        counts: dict[int, int] = {}
        for entity in members:
            counts[entity] = counts.get(entity, 0) + 1
            by_entity[entity] = by_entity.get(entity, 0) + 1
        true_positive += sum(c * (c - 1) // 2 for c in counts.values())
    truth = sum(c * (c - 1) // 2 for c in by_entity.values())
    precision = true_positive / predicted if predicted else 1.0
    recall = true_positive / truth if truth else 1.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {"precision": round(precision, 4), "recall": round(recall, 4), "f1": round(f1, 4)}


def accuracy_messages(records: int, seed: int) -> tuple[list[dict[str, Any]], list[int]]:
    """One identify per synthetic record, and the real person (entity) of each."""
    from patron.identity._matching_synthetic import generate_persons

    people = generate_persons(records, seed=seed)
    rng = random.Random(seed)
    messages: list[dict[str, Any]] = []
    entities: list[int] = []
    has_account: set[int] = set()
    for record in people.records:
        entity = people.entity_of[record.person_id]
        traits = {
            "firstName": record.first_name,
            "lastName": record.last_name,
            "email": record.email,
            "phone": record.phone,
            "birthday": record.birth_date,
            "address": {
                "street": record.street,
                "city": record.city,
                "postalCode": record.postcode,
            },
        }
        message: dict[str, Any] = {
            "type": "identify",
            "anonymousId": f"anon-{record.person_id}",
            "traits": {k: v for k, v in traits.items() if v is not None},
        }
        if entity not in has_account:
            has_account.add(entity)
            message["userId"] = f"user-{entity}"
        messages.append(message)
        entities.append(entity)
    next_entity = max(entities) + 1
    # Family members with their own account, sharing a relative's email.
    for source in rng.sample(range(len(messages)), len(messages) // 50):
        shared = messages[source]["traits"].get("email")
        if not shared:
            continue
        messages.append(
            {
                "type": "identify",
                "userId": f"user-{next_entity}",
                "anonymousId": f"anon-family-{next_entity}",
                "traits": {"firstName": rng.choice(("Sam", "Alex", "Jo")), "email": shared},
            }
        )
        entities.append(next_entity)
        next_entity += 1
    # Kiosks: several account holders sign in on one shared device.
    for kiosk in range(len(messages) // 500):
        for index in rng.sample(range(len(messages)), 5):
            if "userId" in messages[index]:
                messages.append(
                    {
                        "type": "identify",
                        "userId": messages[index]["userId"],
                        "anonymousId": f"kiosk-{kiosk}",
                    }
                )
                entities.append(entities[index])
    return messages, entities


def accuracy(args: argparse.Namespace) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="patron-bench-accuracy-") as tmp:
        workdir = Path(tmp)
        settings = Settings(data_dir=workdir / "data", phone_region="GB")
        runtime = Runtime.start(settings)
        try:
            return measure_accuracy(runtime, args)
        finally:
            runtime.close()


def measure_accuracy(runtime: Runtime, args: argparse.Namespace) -> dict[str, Any]:
    from patron.collect.messages import RequestMeta
    from patron.core.clock import utcnow
    from patron.identity.models import MatchCandidate, PersonEvent

    settings = runtime.settings
    messages, entities = accuracy_messages(args.accuracy_records, seed=20261123)
    with runtime.sessions() as db:
        source, _ = collect_service.create_source(db, name="Synthetic")
        db.commit()
        meta = RequestMeta(received_at=utcnow(), ip=None, user_agent=None)
        for start in range(0, len(messages), 2_000):
            collect_service.ingest(
                db,
                source=source,
                envelope=collect_service.Envelope(messages=messages[start : start + 2_000]),
                meta=meta,
                max_future_skew=timedelta(hours=1),
            )
            db.commit()
    Processor(runtime.sessions, settings=settings).drain()

    def clusters() -> dict[Any, list[int]]:
        with runtime.readers() as db:
            owners = list(db.execute(select(PersonEvent.person_id).order_by(PersonEvent.seq)))
        out: dict[Any, list[int]] = {}
        for (person_id,), entity in zip(owners, entities, strict=True):
            out.setdefault(person_id, []).append(entity)
        return out

    def two_accounts() -> int:
        with runtime.readers() as db:
            holders = (
                select(Identity.person_id)
                .where(Identity.kind == "user_id")
                .group_by(Identity.person_id)
                .having(func.count() > 1)
            )
            return len(list(db.scalars(holders)))

    out: dict[str, Any] = {"records": len(messages)}
    out["deterministic"] = {**pair_score(clusters()), "persons_with_two_user_ids": two_accounts()}
    started = time.perf_counter()
    run = linkage.run_matching(runtime.readers, runtime.sessions, settings=settings, actor=None)
    out["match_seconds"] = round(time.perf_counter() - started, 2)
    out["with_matching"] = {
        **pair_score(clusters()),
        "persons_with_two_user_ids": two_accounts(),
        "merged": run.run.merged,
        "queued": run.run.queued,
    }
    # Upper bound: a person accepts every queued pair (union of the clusters they join).
    with runtime.readers() as db:
        queued = list(
            db.execute(
                select(MatchCandidate.left_id, MatchCandidate.right_id).where(
                    MatchCandidate.status == "pending"
                )
            )
        )
    joined = clusters()
    parent = {key: key for key in joined}

    def root(key: Any) -> Any:
        while parent[key] != key:
            parent[key] = parent[parent[key]]
            key = parent[key]
        return key

    for left, right in queued:
        if left in parent and right in parent:
            parent[root(left)] = root(right)
    accepted: dict[Any, list[int]] = {}
    for key, members in joined.items():
        accepted.setdefault(root(key), []).extend(members)
    out["if_every_queued_pair_were_accepted"] = pair_score(accepted)
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
    parser.add_argument("--accuracy-records", type=int, default=20_000)
    return parser.parse_known_args(argv)[0]


def main(argv: list[str] | None = None) -> int:
    import orjson

    args = parse_args(argv)
    dialects = ("sqlite", "postgresql") if args.dialect == "both" else (args.dialect,)
    report: dict[str, Any] = {d: run_dialect(d, args) for d in dialects}
    if args.accuracy_records:
        report["accuracy"] = accuracy(args)
    report["machine"] = machine()
    print(orjson.dumps(report, option=orjson.OPT_INDENT_2).decode())
    ok = all(report[d]["rebuild_matches_live"] for d in dialects)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
