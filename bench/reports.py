#!/usr/bin/env python3
"""CRM report latency at the CRM benchmark's scale, as an admin and as a sales rep.

For each dialect (``--dialect sqlite|postgresql|both``) this

1. seeds a fresh database with ``bench/crm.py``'s ``seed`` (``--persons`` persons,
   ``--companies`` companies, ``--deals`` deals, ``--activities`` activities; 20 sales
   reps and an admin), then gives the deals a history, which that seed leaves out: created
   over the last year, a stay in every stage up to their current one (1 to 20 days each, in
   ``deal_stage_history``), 35% closed from their stage (55% of those won, 45% lost), an
   expected close date within a year for the open ones, 10% in USD, and the tasks older
   than a month done. PostgreSQL is then VACUUMed and ANALYZEd, as autovacuum would have;
2. starts a real ``patron serve`` on it (one web worker, processing off) and times each
   report's endpoint (``GET /v1/reports/...``, JSON) over one keep-alive connection
   ``--repeat`` times, as the admin (no visibility filter) and as a sales rep (their own
   deals and the activities on their records): every report over all time and over the
   last ``--period-days`` (90; the forecast over the next 90), the grouped ones overall
   and per owner;
3. reports p50 and p99 per report and role, and lists the calls whose p99 is over
   ``--target-ms`` (200 ms; the issue's target for PostgreSQL).

Prints one JSON object with the machine. The seeds are fixed, so runs are comparable.
"""

from __future__ import annotations

import argparse
import os
import random
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from itertools import pairwise
from pathlib import Path
from typing import Any

import httpx
import orjson
from sqlalchemy import func, insert, select, update

from patron.core.db import analyze, create_db_engine
from patron.core.migrations import upgrade
from patron.core.runtime import Runtime
from patron.core.settings import Settings
from patron.crm.models import Activity, Deal, DealStageVisit, Stage

sys.path.insert(0, str(Path(__file__).resolve().parent))
from ingest import fresh_database, machine

from crm import CHUNK, read_only_server, seed, timed, tokens, vacuum

DEFAULT_PG = "postgresql://postgres@127.0.0.1:5432/postgres"
CLOSED, WON, USD = 0.35, 0.55, 0.10


def _history_of(
    deal_id: uuid.UUID,
    position: int,
    stage_at: list[uuid.UUID],
    where: dict[uuid.UUID, tuple[uuid.UUID, int]],
    rng: random.Random,
    now: datetime,
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """One deal's changes and its stays, from its first stage to its current one."""
    created = now - timedelta(days=rng.uniform(10, 365))
    entered, stays = created, []
    for pos in range(position + 1):
        stays.append({"deal_id": deal_id, "stage_id": stage_at[pos], "entered_at": entered})
        if pos < position:
            entered = min(entered + timedelta(days=rng.uniform(1, 20)), now)
            stays[-1]["left_at"] = entered
    for stay, after in pairwise(stays):
        # What the deal service records when a deal moves (the report reads it).
        (pipeline, at), (next_pipeline, next_at) = where[stay["stage_id"]], where[after["stage_id"]]
        forward = pipeline == next_pipeline and next_at > at
        _settle(stay, "moved_on" if forward else "moved_back", stay["left_at"])
    change: dict[str, Any] = {"id": deal_id, "created_at": created}
    if rng.random() < USD:
        change["currency"] = "USD"
    if rng.random() < CLOSED:
        change["status"] = "won" if rng.random() < WON else "lost"
        change["closed_at"] = min(entered + timedelta(days=rng.uniform(1, 15)), now)
        change["lost_reason"] = "price" if change["status"] == "lost" else None
        _settle(stays[-1], change["status"], change["closed_at"])  # it ended with the deal
    else:
        change["expected_close_date"] = (now + timedelta(days=rng.uniform(0, 365))).date()
    return change, stays


def _settle(stay: dict[str, Any], outcome: str, ended_at: datetime) -> None:
    """What the deal service stores on a stay when it ends."""
    stay["outcome"], stay["ended_at"] = outcome, max(ended_at, stay["entered_at"])
    stay["seconds"] = round((stay["ended_at"] - stay["entered_at"]).total_seconds())


def add_history(runtime: Runtime) -> float:
    """Stage history, closings, close dates and currencies for the seeded deals."""
    rng, now, started = random.Random(20261124), datetime.now(UTC), time.perf_counter()
    with runtime.readers() as session:
        stages = session.execute(
            select(Stage.id, Stage.position, Stage.pipeline_id).order_by(Stage.position)
        ).all()
        deals = session.execute(select(Deal.id, Deal.stage_id).order_by(Deal.id)).all()
    stage_at = [sid for sid, _, _ in stages]
    where = {sid: (pipeline, at) for sid, at, pipeline in stages}
    for start in range(0, len(deals), CHUNK):
        changes, visits = [], []
        for deal_id, stage_id in deals[start : start + CHUNK]:
            change, stays = _history_of(deal_id, where[stage_id][1], stage_at, where, rng, now)
            changes.append(change)
            visits.extend(stays)
        with runtime.sessions() as session, session.begin():
            # Rows of one shape per statement, so the driver can batch each.
            for keys in {tuple(sorted(c)) for c in changes}:
                same = [c for c in changes if tuple(sorted(c)) == keys]
                session.execute(
                    update(Deal), same, execution_options={"synchronize_session": False}
                )
            blank = {"left_at": None, "outcome": None, "ended_at": None, "seconds": None}
            session.execute(insert(DealStageVisit), [{**blank, **v} for v in visits])
    with runtime.sessions() as session, session.begin():
        session.execute(
            update(Activity)
            .where(Activity.kind == "task", Activity.occurred_at < now - timedelta(days=30))
            .values(done_at=Activity.occurred_at)
        )
    vacuum(runtime.engine)
    return round(time.perf_counter() - started, 1)


# The reports, each with its path and the group it is measured by (None: it takes none).
REPORTS: dict[str, tuple[str, str | None]] = {
    "pipeline": ("/v1/reports/pipeline", None),
    "forecast": ("/v1/reports/forecast", None),
    "win_rate": ("/v1/reports/win-rate", "none"),
    "win_rate_by_owner": ("/v1/reports/win-rate", "owner"),
    "deal_size_by_owner": ("/v1/reports/deal-size", "owner"),
    "sales_cycle": ("/v1/reports/sales-cycle", "none"),
    "sales_cycle_by_owner": ("/v1/reports/sales-cycle", "owner"),
    "stage_conversion": ("/v1/reports/stage-conversion", None),
    "activities": ("/v1/reports/activities", None),
}


def queries(now: datetime, days: int) -> dict[str, tuple[str, dict[str, str]]]:
    """Each report over all time, and over the last ``days`` (the forecast: the next)."""
    periods: dict[str, dict[str, str]] = {
        "all_time": {},
        f"last_{days}_days": {"since": (now - timedelta(days=days)).isoformat()},
    }
    ahead = {"since": now.isoformat(), "until": (now + timedelta(days=days)).isoformat()}
    out: dict[str, tuple[str, dict[str, str]]] = {}
    for name, (path, group_by) in REPORTS.items():
        grouped = {} if group_by is None else {"group_by": group_by}
        for period, params in periods.items():
            if name == "forecast" and period != "all_time":
                period, params = f"next_{days}_days", ahead
            out[f"{name}/{period}"] = (path, {**params, **grouped})
    return out


def measure(runtime: Runtime, args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    seeded = seed(runtime, args)
    measured = measure_seeded(runtime, seeded, args, workdir)
    return {"seed_seconds": seeded["seed_seconds"], **measured}


def measure_seeded(
    runtime: Runtime, seeded: dict[str, Any], args: argparse.Namespace, workdir: Path
) -> dict[str, Any]:
    """Give the seeded deals their history, then time every report as admin and rep
    (``bench/crm.py --reports`` calls this on the database it measured)."""
    out: dict[str, Any] = {"history_seconds": add_history(runtime)}
    analyze(runtime.engine)  # the history changed the deals the statistics describe
    with runtime.readers() as session:
        out["stage_history_rows"] = session.scalar(select(func.count(DealStageVisit.id)))
    out.update(measure_reports(runtime, seeded, args, workdir))
    return out


def measure_reports(
    runtime: Runtime, seeded: dict[str, Any], args: argparse.Namespace, workdir: Path
) -> dict[str, Any]:
    """Step 2 and 3 on a database with deal history: every report's p50 and p99 per role,
    and the calls over the target."""
    out: dict[str, Any] = {}
    secrets = tokens(runtime, seeded)
    calls = queries(datetime.now(UTC), args.period_days)
    with read_only_server(runtime, workdir) as url:
        for role in ("admin", "sales"):
            headers = {"Authorization": f"Bearer {secrets[role]}"}
            with httpx.Client(base_url=url, headers=headers, timeout=120) as client:
                out[role] = {}
                for name, call in calls.items():
                    timed(client, 2, lambda _i, c=call: c)  # warm caches and connection
                    out[role][name] = timed(client, args.repeat, lambda _i, c=call: c)
    out["over_target"] = [
        f"{role} {name}"
        for role in ("admin", "sales")
        for name, latency in out[role].items()
        if latency["p99_ms"] > args.target_ms
    ]
    return out


def run_dialect(dialect: str, args: argparse.Namespace) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="patron-bench-reports-") as tmp:
        workdir = Path(tmp)
        with fresh_database(dialect, workdir, "reports", args.postgres_url) as url:
            settings = Settings(database_url=url, data_dir=workdir / "data")
            engine = create_db_engine(settings)
            upgrade(engine)
            engine.dispose()
            runtime = Runtime.start(settings)
            try:
                return measure(runtime, args, workdir)
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
    parser.add_argument("--repeat", type=int, default=30)
    parser.add_argument("--target-ms", type=float, default=200.0)
    parser.add_argument("--period-days", type=int, default=90)
    args = parser.parse_known_args(argv)[0]
    dialects = ("sqlite", "postgresql") if args.dialect == "both" else (args.dialect,)
    report: dict[str, Any] = {
        "sizes": {
            "persons": args.persons,
            "companies": args.companies,
            "deals": args.deals,
            "activities": args.activities,
        },
        "repeat": args.repeat,
        "target_p99_ms": args.target_ms,
    }
    for dialect in dialects:
        report[dialect] = run_dialect(dialect, args)
    report["machine"] = machine()
    print(orjson.dumps(report, option=orjson.OPT_INDENT_2).decode())
    return 0


if __name__ == "__main__":
    sys.exit(main())
