#!/usr/bin/env python3
"""Lead scoring and assignment at scale, and how well the predictive score ranks.

For each dialect (``--dialect sqlite|postgresql|both``) this

1. makes a fresh, migrated database and seeds it in bulk through SQLAlchemy Core:
   ``--leads`` new leads (lifecycle stage lead, no owner) and ``--history`` persons whose
   outcome is known (customers and unqualified leads, owned), each with an email identity,
   traits (country, plan, source, employees), a company for a third of them, and about
   ``--events`` track events each (pricing and product views, demo requests, webinars)
   in the last 60 days; outcomes follow the features (plan, country, demo requests), as
   they would. 30 sales reps in three teams (EMEA, Americas, APAC), a rule per region
   (country in ...), a default team, and 8 scoring rules (traits, companies, events with
   counts, recency, decay);
2. times training the naive Bayes model on the history, then the full rescore of everyone
   (rule score and predictive score, both stored with explanations:
   ``scoring_leads_per_second``), then assigning every new lead by the rules and weighted
   round robin, each owner change going through the contact service (audited, an event in
   the log) and logged with its reason (``assignment_leads_per_second``);
3. once (the result does not depend on the dialect), loads the demo shop
   (``--demo-people`` customers, ``patron demo``'s data) into a fresh SQLite database,
   splits its labelled persons 70/30 (seeded), trains on the 70 % and reports the AUC of
   the predictive score on the 30 % held out, beside the AUC of an Odoo-style
   frequency-based naive Bayes (raw frequencies with Odoo's 0.1 floor, categorical traits
   only) trained and tested on the same split.

Prints one JSON object with the machine. Run it small with e.g. ``--leads 2000 --history
500 --demo-people 300``.
"""

from __future__ import annotations

import argparse
import math
import os
import random
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
from sqlalchemy import insert, text

from patron.auth.models import Team, TeamMember, User
from patron.collect import service as collect_service
from patron.collect.models import Event
from patron.core.db import analyze, create_db_engine
from patron.core.migrations import upgrade
from patron.core.runtime import Runtime
from patron.core.settings import Settings
from patron.crm.leads import assignment, jobs, predictive, scoring
from patron.crm.models import Company, PersonCompany
from patron.identity.models import Identity, Person, PersonEvent

# The composition root: merge hooks and jobs.
import patron.pipeline  # noqa: F401  isort: skip

sys.path.insert(0, str(Path(__file__).resolve().parent))
from ingest import fresh_database, machine

DEFAULT_PG = "postgresql://postgres@127.0.0.1:5432/postgres"
CHUNK = 5_000
REGIONS = {
    "EMEA": ["DE", "FR", "GB", "NL", "ES", "IT"],
    "Americas": ["US", "CA", "BR", "MX"],
    "APAC": ["JP", "AU", "IN", "SG"],
}
COUNTRIES = [c for countries in REGIONS.values() for c in countries]
PLANS = ["free", "team", "business", "enterprise"]
SOURCES = ["google", "newsletter", "webinar", "partner", "direct"]
INDUSTRIES = ["Software", "Retail", "Energy", "Health", "Finance", "Manufacturing"]
EVENTS = ["Pricing Viewed", "Product Viewed", "Demo Requested", "Webinar Attended"]
RULES: list[dict[str, Any]] = [
    {
        "name": "Enterprise plan",
        "conditions": [
            {"kind": "trait", "name": "plan", "op": "in", "value": ["business", "enterprise"]}
        ],
        "points": 20,
    },
    {
        "name": "Pricing twice",
        "conditions": [
            {"kind": "event", "event": "Pricing Viewed", "within_days": 30, "min_count": 2}
        ],
        "points": 20,
        "half_life_days": 14,
    },
    {
        "name": "Demo requested",
        "conditions": [{"kind": "event", "event": "Demo Requested", "within_days": 60}],
        "points": 30,
        "half_life_days": 30,
    },
    {
        "name": "Webinar",
        "conditions": [
            {
                "kind": "event",
                "event": "Webinar Attended",
                "where": {"property": "live", "op": "eq", "value": True},
            }
        ],
        "points": 10,
    },
    {
        "name": "Big company",
        "conditions": [{"kind": "company", "name": "size", "op": "gte", "value": 500}],
        "points": 15,
    },
    {
        "name": "Software",
        "conditions": [{"kind": "company", "name": "industry", "op": "eq", "value": "Software"}],
        "points": 5,
    },
    {"name": "Active", "conditions": [{"kind": "recency", "within_days": 7}], "points": 10},
    {
        "name": "Free plan",
        "conditions": [{"kind": "trait", "name": "plan", "op": "eq", "value": "free"}],
        "points": -10,
    },
]


def chunks(rows: Iterator[dict[str, Any]]) -> Iterator[list[dict[str, Any]]]:
    batch: list[dict[str, Any]] = []
    for row in rows:
        batch.append(row)
        if len(batch) >= CHUNK:
            yield batch
            batch = []
    if batch:
        yield batch


def propensity(traits: dict[str, Any], events: list[str], rng: random.Random) -> bool:
    """Whether a person of the history won: more likely on a bigger plan, in some
    countries, after demo requests."""
    odds = -0.6 + 0.7 * PLANS.index(traits["plan"]) - 0.5
    odds += 0.6 * (traits["country"] in ("DE", "US", "GB")) - 0.6 * (traits["country"] == "IN")
    odds += 0.8 * min(events.count("Demo Requested"), 2)
    return rng.random() < 1 / (1 + math.exp(-odds))


def seed(runtime: Runtime, args: argparse.Namespace) -> dict[str, Any]:
    """Bulk-load leads, history, companies, events, users, teams and rules."""
    rng = random.Random(20261124)
    now = datetime.now(UTC)
    started = time.perf_counter()
    with runtime.sessions() as session:
        source, _ = collect_service.create_source(session, name="bench", kind="server")
        source_id = source.id
        session.commit()
    reps = [
        {"id": uuid.uuid4(), "email": f"rep{i}@example.com", "name": f"Rep {i}", "role": "sales"}
        for i in range(30)
    ]
    teams = {name: uuid.uuid4() for name in REGIONS}
    total = args.leads + args.history
    person_ids = [uuid.uuid4() for _ in range(total)]
    stories: list[tuple[dict[str, Any], list[str]]] = []
    for _ in range(total):
        traits = {
            "country": rng.choice(COUNTRIES),
            "plan": rng.choice(PLANS),
            "source": rng.choice(SOURCES),
            "employees": rng.randrange(1, 5000),
        }
        events = [rng.choice(EVENTS) for _ in range(rng.randrange(0, 2 * args.events + 1))]
        stories.append((traits, events))
    seq = [0]

    def persons() -> Iterator[dict[str, Any]]:
        for n, pid in enumerate(person_ids):
            traits, events = stories[n]
            history = n >= args.leads
            won = history and propensity(traits, events, rng)
            yield {
                "id": pid,
                "created_seq": n + 1,
                "traits": {"name": f"Lead {n}", "email": f"lead{n}@example.com", **traits},
                "computed": {},
                "owner_id": reps[n % len(reps)]["id"] if history else None,
                "lifecycle_stage": ("customer" if won else "lead"),
                "lead_status": ("unqualified" if history and not won else "new"),
                "tags": [],
                "custom": {},
                "first_seen": now - timedelta(days=rng.uniform(1, 90)),
                "last_seen": now - timedelta(days=rng.uniform(0, 30)),
                "created_at": now - timedelta(seconds=total - n),
                "updated_at": now,
            }

    def identities() -> Iterator[dict[str, Any]]:
        for n, pid in enumerate(person_ids):
            yield {
                "kind": "email",
                "value": f"lead{n}@example.com",
                "person_id": pid,
                "first_seq": 0,
            }

    company_ids = [uuid.uuid4() for _ in range(max(1, total // 20))]

    def firms() -> Iterator[dict[str, Any]]:
        for n, cid in enumerate(company_ids):
            yield {
                "id": cid,
                "name": f"Company {n}",
                "domain": f"company{n}.example.com",
                "industry": rng.choice(INDUSTRIES),
                "size": rng.choice([5, 40, 200, 800, 3000]),
                "traits": {},
                "tags": [],
                "custom": {},
            }

    def links() -> Iterator[dict[str, Any]]:
        for pid in person_ids:
            if rng.random() < 0.33:
                yield {"person_id": pid, "company_id": rng.choice(company_ids)}

    def log() -> Iterator[dict[str, Any]]:
        for n in range(total):
            for name in stories[n][1]:
                seq[0] += 1
                at = now - timedelta(days=rng.uniform(0, 60))
                properties = {"live": rng.random() < 0.5} if name == "Webinar Attended" else {}
                yield {
                    "seq": seq[0],
                    "source_id": source_id,
                    "message_id": f"bench-{seq[0]}",
                    "type": "track",
                    "event": name,
                    "user_id": None,
                    "anonymous_id": f"anon-{n}",
                    "timestamp": at,
                    "received_at": at,
                    "flags": [],
                    "payload": {"type": "track", "event": name, "properties": properties},
                }

    def owned() -> Iterator[dict[str, Any]]:
        number = 0
        for n, pid in enumerate(person_ids):
            for _ in stories[n][1]:
                number += 1
                yield {"seq": number, "person_id": pid}

    with runtime.sessions() as session, session.begin():
        session.execute(insert(User), [{**r, "password_hash": None} for r in reps])
        session.execute(insert(Team), [{"id": tid, "name": name} for name, tid in teams.items()])
        session.execute(
            insert(TeamMember),
            [
                {"team_id": teams[list(REGIONS)[i % 3]], "user_id": rep["id"]}
                for i, rep in enumerate(reps)
            ],
        )
    for table, rows in (
        (Person, persons()),
        (Identity, identities()),
        (Company, firms()),
        (PersonCompany, links()),
        (Event, log()),
        (PersonEvent, owned()),
    ):
        for batch in chunks(rows):
            with runtime.sessions() as session, session.begin():
                session.execute(insert(table), batch)
    with runtime.sessions() as session, session.begin():
        if session.get_bind().dialect.name == "postgresql":
            session.execute(
                text("SELECT setval(pg_get_serial_sequence('events', 'seq'), :n)"),
                {"n": max(seq[0], 1)},
            )
        for rule in RULES:
            scoring.create_rule(session, actor=None, values=rule)
        for name, team_id in teams.items():
            conditions = [{"kind": "field", "name": "country", "op": "in", "value": REGIONS[name]}]
            assignment.create_rule(
                session,
                actor=None,
                values={"name": name, "team_id": team_id, "conditions": conditions},
            )
        assignment.set_default_team(session, actor=None, team_id=teams["Americas"])
    return {"seed_seconds": round(time.perf_counter() - started, 1), "events": seq[0]}


def measure(runtime: Runtime, args: argparse.Namespace) -> dict[str, Any]:
    out = seed(runtime, args)
    # The bulk load went around processing: give the planner the statistics that
    # autovacuum or Patron's hourly ANALYZE job would have (without them PostgreSQL scored
    # each batch by scanning every event, and the full-size run took over 20 minutes).
    analyze(runtime.engine)
    started = time.perf_counter()
    with runtime.sessions() as session, session.begin():
        model = predictive.train(session)
    out["train_seconds"] = round(time.perf_counter() - started, 2)
    out["model"] = {"status": model.status, "won": model.won, "lost": model.lost}
    started = time.perf_counter()
    scored = jobs.refresh_scores(runtime.sessions, runtime.settings, full=True)
    seconds = time.perf_counter() - started
    out["scored"] = scored
    out["scoring_seconds"] = round(seconds, 2)
    out["scoring_leads_per_second"] = round(scored / seconds, 1)
    started = time.perf_counter()
    summary = jobs.assign_waiting(runtime.sessions)
    seconds = time.perf_counter() - started
    out["assigned"] = summary.assigned
    out["waiting"] = summary.waiting
    out["by_team"] = summary.by_team
    out["assignment_seconds"] = round(seconds, 2)
    out["assignment_leads_per_second"] = round(summary.assigned / max(seconds, 1e-9), 1)
    return out


def odoo_style_auc(
    raws: dict[uuid.UUID, dict[str, Any]],
    labels: dict[uuid.UUID, bool],
    train: Sequence[uuid.UUID],
    test: Sequence[uuid.UUID],
) -> float | None:
    """Odoo's predictive lead scoring, as published: per categorical field value, the
    frequency among won and among lost (counts start at 0.1, Odoo's floor), multiplied
    naively with the prior. Only categorical traits, the kind of fields Odoo looks at."""
    spec = {
        name: how
        for name, how in predictive.learn_spec([raws[p] for p in train]).items()
        if name.startswith("trait:") and how["type"] == "category"
    }
    counts: dict[tuple[str, str], list[float]] = {}
    won = sum(labels[p] for p in train)
    lost = len(train) - won
    for p in train:
        for name, value in predictive.encode(spec, raws[p]).items():
            slot = counts.setdefault((name, value), [0.1, 0.1])
            slot[0 if labels[p] else 1] += 1

    def score(p: uuid.UUID) -> float:
        total = math.log(won / lost)
        for name, value in predictive.encode(spec, raws[p]).items():
            w, lo = counts.get((name, value), [0.1, 0.1])
            total += math.log(w / won) - math.log(lo / lost)
        return total

    return predictive.auc([score(p) for p in test], [labels[p] for p in test])


def demo_auc(args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    from patron.demo import load_or_create

    settings = Settings(database_url=f"sqlite:///{workdir / 'demo.db'}", data_dir=workdir / "demo")
    engine = create_db_engine(settings)
    upgrade(engine)
    engine.dispose()
    runtime = Runtime.start(settings)
    try:
        started = time.perf_counter()
        load_or_create(runtime, people=args.demo_people, seed=7, url="")
        load_seconds = round(time.perf_counter() - started, 1)
        with runtime.sessions() as session:
            labels = predictive.labelled(session)
            ordered = sorted(labels, key=str)
            random.Random(70).shuffle(ordered)
            cut = int(len(ordered) * 0.7)
            train, test = ordered[:cut], ordered[cut:]
            row = predictive.train(session, persons=train)
            result: dict[str, Any] = {
                "demo_people": args.demo_people,
                "demo_load_seconds": load_seconds,
                "labelled": len(labels),
                "won": sum(labels.values()),
                "train": len(train),
                "held_out": len(test),
                "model": row.status,
            }
            if row.status == "trained":
                model = predictive.Model.from_row(row)
                probabilities = predictive.predict(session, model, test)
                result["auc"] = round(
                    predictive.auc([probabilities[p] for p in test], [labels[p] for p in test])
                    or 0,
                    4,
                )
                raws = dict(predictive.gather(session, ordered))
                result["odoo_style_auc"] = round(odoo_style_auc(raws, labels, train, test) or 0, 4)
            session.rollback()
        return result
    finally:
        runtime.close()


def run_dialect(dialect: str, args: argparse.Namespace) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="patron-bench-leads-") as tmp:
        workdir = Path(tmp)
        with fresh_database(dialect, workdir, "leads", args.postgres_url) as url:
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
    parser.add_argument("--leads", type=int, default=100_000)
    parser.add_argument("--history", type=int, default=10_000)
    parser.add_argument("--events", type=int, default=3, help="Average track events a person.")
    parser.add_argument("--demo-people", type=int, default=3000)
    args = parser.parse_known_args(argv)[0]
    dialects = ("sqlite", "postgresql") if args.dialect == "both" else (args.dialect,)
    report: dict[str, Any] = {
        "sizes": {"leads": args.leads, "history": args.history, "events_per_person": args.events}
    }
    for dialect in dialects:
        report[dialect] = run_dialect(dialect, args)
    with tempfile.TemporaryDirectory(prefix="patron-bench-leads-demo-") as tmp:
        report["predictive_quality"] = demo_auc(args, Path(tmp))
    report["machine"] = machine()
    print(orjson.dumps(report, option=orjson.OPT_INDENT_2).decode())
    return 0


if __name__ == "__main__":
    sys.exit(main())
