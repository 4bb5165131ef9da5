#!/usr/bin/env python3
"""Web form submissions per second through the public endpoint of a real ``patron serve``.

For each dialect (``--dialect sqlite|postgresql|both``) this

1. makes a fresh database (a temporary SQLite file, or a temporary PostgreSQL database on
   ``--postgres-url``, dropped afterwards), migrates it and makes an admin and an API token
   with the CLI (``patron migrate``, ``patron users create``, ``patron tokens create``);
2. starts ``python -m patron.cli serve`` like ``bench/ingest.py`` does (``--workers`` HTTP
   processes, processing in the server, SQLite ``synchronous=FULL``), with the rate limits
   raised far above what the benchmark sends (``PATRON_FORM_RATE_PER_IP_MINUTE`` and
   ``..._PER_FORM_MINUTE``): every client is 127.0.0.1, and the limits still count each
   post, so their cost is measured;
3. defines a form through ``POST /v1/forms`` (email, name, company, a select, a message,
   a hidden campaign field, a required consent);
4. posts submissions to ``POST /f/<slug>`` from another process: ``--concurrency``
   keep-alive connections, each sending one submission at a time as a browser does
   (``application/x-www-form-urlencoded``, or JSON with ``--content json``), every one
   with its own email and campaign; a warm-up, then ``--duration`` seconds (capped at
   ``--max-requests``);
5. stops the server and checks that the submissions stored as accepted equal those the
   server acknowledged, that each has its identify and track in the event log, and how many
   the processing loop had turned into leads (lead steps done) when the server stopped.

Prints one JSON object: submissions/s, p50 and p99 latency, the counts, the machine.
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import os
import statistics
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import httpx
import orjson
from sqlalchemy import func, select

from patron.collect.models import Event, Source
from patron.core.db import create_db_engine
from patron.core.settings import Settings
from patron.crm.forms.models import FormSubmission

sys.path.insert(0, str(Path(__file__).resolve().parent))
from ingest import (
    DEFAULT_PG,
    cpu_seconds,
    free_port,
    fresh_database,
    machine,
    patron_cli,
    percentile,
    process_tree,
    running_server,
    scratch_dir,
    server_env,
    server_version,
)

UNLIMITED = str(10**9)
FORM = {
    "name": "Request a demo",
    "slug": "bench-demo",
    "fields": [
        {"key": "email", "label": "Work email", "type": "email", "required": True,
         "identifier": "email"},
        {"key": "name", "label": "Name", "type": "text", "required": True, "trait": "name"},
        {"key": "company", "label": "Company", "type": "text", "trait": "company_name"},
        {"key": "team_size", "label": "Team size", "type": "select",
         "options": ["1-10", "11-50", "51-200", "201+"], "trait": "team_size"},
        {"key": "message", "label": "Message", "type": "textarea"},
        {"key": "campaign", "type": "hidden", "default": "organic", "trait": "campaign"},
    ],
    "consents": [{"purpose": "terms", "label": "I accept the terms", "required": True}],
}  # fmt: skip
SOURCES = ["google", "newsletter", "linkedin", "partner"]


def submission(index: int, run: str) -> dict[str, str]:
    """One visitor's answers with the inputs a page fills in, about 0.6 KB posted."""
    source = SOURCES[index % len(SOURCES)]
    return {
        "email": f"visitor-{run}-{index}@company{index % 97}.example",
        "name": f"Visitor {index}",
        "company": f"Company {index % 97}",
        "team_size": ["1-10", "11-50", "51-200", "201+"][index % 4],
        "message": "We would like to see how the pipeline reports work for a team of twelve.",
        "consent.terms": "true",
        "utm_source": source,
        "utm_medium": "cpc" if source == "google" else "email",
        "utm_campaign": "spring-launch",
        "patron_page_url": f"https://www.example.com/demo?utm_source={source}",
        "patron_referrer": "https://www.google.com/",
        "patron_anonymous_id": f"aid-{run}-{index}",
    }


# --- the client process ----------------------------------------------------------------


def client_main(url: str, slug: str, args: dict[str, Any], results: Any) -> None:
    """Runs in its own process: post submissions and put one summary dict on ``results``."""
    results.put(asyncio.run(_drive(url, slug, args)))


async def _drive(url: str, slug: str, args: dict[str, Any]) -> dict[str, Any]:
    run = os.urandom(4).hex()
    as_json = args["content"] == "json"
    ok_status = 201 if as_json else 200
    issued = acknowledged = measured = 0
    latencies: list[float] = []
    errors: list[str] = []
    started = time.perf_counter()
    measure_from = started + args["warmup"]
    stop_at = measure_from + args["duration"]
    last_end = measure_from
    limits = httpx.Limits(
        max_connections=args["concurrency"], max_keepalive_connections=args["concurrency"]
    )
    async with httpx.AsyncClient(base_url=url, limits=limits, timeout=60) as client:

        async def worker() -> None:
            nonlocal issued, acknowledged, measured, last_end
            while issued < args["max_requests"] and time.perf_counter() < stop_at:
                answers = submission(issued, run)
                issued += 1
                if as_json:
                    body = orjson.dumps(answers)
                    headers = {"Content-Type": "application/json"}
                else:
                    body = urlencode(answers).encode()
                    headers = {"Content-Type": "application/x-www-form-urlencoded"}
                begin = time.perf_counter()
                try:
                    response = await client.post(f"/f/{slug}", content=body, headers=headers)
                except httpx.HTTPError as exc:
                    errors.append(f"{type(exc).__name__}: {exc}")
                    continue
                end = time.perf_counter()
                if response.status_code != ok_status:
                    errors.append(f"HTTP {response.status_code}: {response.text[:200]}")
                    continue
                acknowledged += 1
                if begin >= measure_from and end <= stop_at:
                    latencies.append(end - begin)
                    measured += 1
                    last_end = max(last_end, end)

        await asyncio.gather(*(worker() for _ in range(args["concurrency"])))
    return {
        "requests": issued,
        "measured_submissions": measured,
        "measured_seconds": round(max(last_end - measure_from, 1e-9), 3),
        "acknowledged": acknowledged,
        "errors": len(errors),
        "first_errors": errors[:5],
        "latencies": sorted(latencies),
    }


# --- one dialect -----------------------------------------------------------------------


def stored_counts(database_url: str) -> dict[str, int]:
    """Accepted submissions, their events in the log, and how many have had their lead
    steps done."""
    engine = create_db_engine(Settings(), database_url)
    try:
        with engine.connect() as connection:
            accepted = FormSubmission.status == "accepted"

            def count(*where: Any, table: Any = FormSubmission) -> int:
                statement = select(func.count()).select_from(table).where(*where)
                return int(connection.scalar(statement) or 0)

            forms = select(Source.id).where(Source.kind == "form")
            return {
                "stored": count(accepted),
                "rejected": count(FormSubmission.status == "rejected"),
                "events": count(Event.source_id.in_(forms), table=Event),
                "processed": count(accepted, FormSubmission.processed_at.is_not(None)),
            }
    finally:
        engine.dispose()


def run_dialect(dialect: str, args: argparse.Namespace) -> dict[str, Any]:
    with scratch_dir(dialect) as workdir:
        out: dict[str, Any] = {}
        with fresh_database(dialect, workdir, "forms", args.postgres_url) as url:
            limits = {
                "PATRON_FORM_RATE_PER_IP_MINUTE": UNLIMITED,
                "PATRON_FORM_RATE_PER_FORM_MINUTE": UNLIMITED,
            }
            env = server_env(url, workdir, free_port(), args.workers, limits)
            patron_cli(env, "migrate")
            patron_cli(env, "users", "create", "bench@example.com", "--role", "admin")
            token = orjson.loads(patron_cli(env, "tokens", "create", "bench@example.com", "--json"))
            if dialect == "postgresql":
                out["postgres_server_version"] = server_version(url)
            with running_server(env, workdir / "server.log") as (base_url, pid):
                created = httpx.post(
                    f"{base_url}/v1/forms",
                    json=FORM,
                    headers={"Authorization": f"Bearer {token['token']}"},
                    timeout=30,
                )
                created.raise_for_status()
                summary = drive(base_url, FORM["slug"], args, pid)
            counts = stored_counts(url)
            log_tail = (workdir / "server.log").read_text()[-1500:]
        latencies = summary.pop("latencies")
        server_cpu = summary.pop("server_cpu_seconds")
        rate = summary["measured_submissions"] / summary["measured_seconds"]
        out.update(
            submissions_per_second=round(rate, 1),
            p50_ms=round(1000 * statistics.median(latencies), 2) if latencies else None,
            p99_ms=round(1000 * percentile(latencies, 0.99), 2) if latencies else None,
            **summary,
            stored=counts["stored"],
            nothing_lost=counts["stored"] == summary["acknowledged"],
            events_in_log=counts["events"],
            both_messages_logged=counts["events"] == 2 * counts["stored"],
            rejected=counts["rejected"],
            lead_steps_done=counts["processed"],
            # CPU time of the server's processes (web workers and processor) over the run.
            server_cpu_ms_per_submission=round(
                1000 * server_cpu / max(summary["acknowledged"], 1), 2
            ),
        )
        if summary["errors"] or not out["nothing_lost"]:
            out["server_log_tail"] = log_tail
        return out


def drive(base_url: str, slug: str, args: argparse.Namespace, server_pid: int) -> dict[str, Any]:
    """Run the client in another process; measure the server's CPU over the window."""
    context = multiprocessing.get_context("spawn")
    results = context.Queue()
    options = {
        "content": args.content,
        "concurrency": args.concurrency,
        "warmup": args.warmup,
        "duration": args.duration,
        "max_requests": args.max_requests,
    }
    client = context.Process(target=client_main, args=(base_url, slug, options, results))
    tree = process_tree(server_pid)
    before = cpu_seconds(tree)
    client.start()
    summary: dict[str, Any] = results.get(timeout=args.warmup + args.duration + 300)
    client.join(timeout=30)
    # Everything the server did for the run (warm-up included), per acknowledged post.
    summary["server_cpu_seconds"] = cpu_seconds(tree) - before
    return summary


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dialect", choices=("sqlite", "postgresql", "both"), default="both")
    parser.add_argument(
        "--postgres-url", default=os.environ.get("PATRON_BENCH_POSTGRES_URL", DEFAULT_PG)
    )
    parser.add_argument("--concurrency", type=int, default=16, help="keep-alive connections")
    parser.add_argument("--workers", type=int, default=2, help="server processes")
    parser.add_argument("--content", choices=("form", "json"), default="form")
    parser.add_argument("--warmup", type=float, default=3.0, help="seconds not measured")
    parser.add_argument("--duration", type=float, default=20.0, help="seconds measured")
    parser.add_argument("--max-requests", type=int, default=200_000, help="cap on posts")
    # bench/run.py passes the same arguments to every benchmark: ignore the others'.
    args, _unknown = parser.parse_known_args(argv)
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    dialects = ("sqlite", "postgresql") if args.dialect == "both" else (args.dialect,)
    report: dict[str, Any] = {
        "benchmark": "forms",
        "date": datetime.now(UTC).date().isoformat(),
        "machine": machine(),
        "config": {
            "endpoint": "POST /f/{slug}",
            "content": args.content,
            "concurrency": args.concurrency,
            "web_workers": args.workers,
            "warmup_seconds": args.warmup,
            "duration_seconds": args.duration,
            "sqlite_synchronous": "FULL",
            "process_in_server": True,
            "rate_limits": "counted, raised to 1e9 a minute",
        },
        "results": {},
    }
    ok = True
    for dialect in dialects:
        result = run_dialect(dialect, args)
        report["results"][dialect] = result
        if dialect == "postgresql":
            report["machine"]["postgres"] = result.pop("postgres_server_version", None)
        ok = ok and result["nothing_lost"] and result["errors"] == 0
        ok = ok and result["both_messages_logged"]
    print(orjson.dumps(report, option=orjson.OPT_INDENT_2).decode())
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
