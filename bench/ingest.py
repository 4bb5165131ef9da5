#!/usr/bin/env python3
"""Ingest throughput of a real ``patron serve`` process, and how it compares to the database.

For each dialect (``--dialect sqlite|postgresql|both``) this

1. makes a fresh database (a temporary SQLite file, or a temporary PostgreSQL database on
   ``--postgres-url``, dropped afterwards), migrates it and creates a source with
   ``patron sources create bench --json``, all through the CLI;
2. starts ``python -m patron.cli serve`` in production topology: ``--workers`` HTTP worker
   processes (``PATRON_WEB_WORKERS``, default 2, one per core) and the processing loop in
   the server (a process of its own beside the workers), SQLite ``synchronous=FULL`` (every
   acknowledged commit is durable), log level warning;
3. drives ``POST /v1/batch`` from another process: ``--concurrency`` keep-alive aiohttp
   connections, each sending batches of ``--batch`` realistic Segment messages (0.6-0.9
   KB: a track/page/identify mix with library, page, userAgent and ip in the context) with
   unique messageIds; a warm-up, then ``--duration`` seconds (capped at ``--max-requests``).
   The client prepares its request bodies before the clock starts and stamps fresh
   messageIds into each, and uses aiohttp rather than httpx (about 0.24 against 3 ms of
   CPU to post a 72 KB body), because it shares the machine's cores with the server;
4. stops the server and checks that the events stored equal the events acknowledged, and
   reads how far the processing loop got; the server's CPU time (all its processes) over
   the measured window is reported per event;
5. measures the *raw baseline*: the same kind of rows, normalised beforehand exactly as the
   server stores them, inserted by one process into the ``events`` table (same schema and
   indexes) of another fresh, migrated database of the same dialect, through the same
   engine (``create_db_engine``: same driver, same pragmas, same durability), with a plain
   ``INSERT`` through the driver's ``executemany``, ``--baseline-batch`` rows (1,000) per
   transaction. No HTTP, no validation, no ``ON CONFLICT``, no savepoints, no lock.

``ratio`` is server events/s divided by baseline events/s. Prints one JSON object. Only
ever talks to 127.0.0.1.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import multiprocessing
import os
import platform
import random
import shutil
import signal
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import httpx
import orjson
from sqlalchemy import create_engine, func, insert, select, text
from sqlalchemy.engine import make_url

from patron.collect.messages import RequestMeta, normalise
from patron.collect.models import Event, ProcessingCursor, Source
from patron.collect.service import EVENT_COLUMNS
from patron.core.db import create_db_engine, json_dumps, normalise_url
from patron.core.dialect import POSTGRES_VALUES, SQLITE_VALUES
from patron.core.ids import hash_secret
from patron.core.migrations import upgrade
from patron.core.settings import Settings

ROOT = Path(__file__).resolve().parent.parent
TEMPLATES = 50  # distinct request bodies each client process prepares
DEFAULT_PG = "postgresql://postgres@127.0.0.1:5432/postgres"


# --- realistic messages ----------------------------------------------------------------

PAGES = [
    ("/", "Home - Acme Outfitters"),
    ("/products/trail-runner-2", "Trail Runner 2 - Acme Outfitters"),
    ("/collections/jackets", "Jackets - Acme Outfitters"),
    ("/cart", "Your cart - Acme Outfitters"),
    ("/checkout/shipping", "Checkout - Acme Outfitters"),
    ("/blog/how-to-layer-for-winter", "How to layer for winter - Acme Journal"),
]
EVENTS = [
    "Product Viewed",
    "Product Added",
    "Cart Viewed",
    "Checkout Started",
    "Order Completed",
    "Products Searched",
]
AGENTS = [
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/130.0.0.0 Safari/537.36",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 18_1 like Mac OS X) AppleWebKit/605.1.15 "
    "(KHTML, like Gecko) Version/18.1 Mobile/15E148 Safari/604.1",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_7) AppleWebKit/605.1.15 (KHTML, like Gecko) "
    "Version/18.0 Safari/605.1.15",
]


def make_message(rng: random.Random, message_id: str, now: datetime) -> dict[str, Any]:
    """One Segment message as analytics.js would send it (roughly 0.5 to 1 KB of JSON)."""
    path, title = rng.choice(PAGES)
    person = rng.randrange(50_000)
    context = {
        "library": {"name": "analytics.js", "version": "next-1.72.0"},
        "page": {
            "path": path,
            "referrer": rng.choice(
                ["https://www.google.com/", "", "https://news.ycombinator.com/"]
            ),
            "search": rng.choice(["", "?utm_source=newsletter&utm_medium=email"]),
            "title": title,
            "url": f"https://shop.example.com{path}",
        },
        "userAgent": rng.choice(AGENTS),
        "ip": f"203.0.113.{rng.randrange(1, 255)}",
        "locale": rng.choice(["en-US", "de-DE", "fr-FR"]),
    }
    stamp = (now - timedelta(milliseconds=rng.randrange(5000))).isoformat()
    message: dict[str, Any] = {
        "messageId": message_id,
        "anonymousId": f"anon-{person:08d}-{uuid.UUID(int=person).hex[:12]}",
        "timestamp": stamp,
        "context": context,
    }
    if rng.random() < 0.6:
        message["userId"] = f"user-{person}"
    kind = rng.choices(("track", "page", "identify"), weights=(6, 3, 1))[0]
    message["type"] = kind
    if kind == "track":
        message["event"] = rng.choice(EVENTS)
        message["properties"] = {
            "product_id": f"sku-{rng.randrange(10_000):05d}",
            "name": "Trail Runner 2",
            "category": rng.choice(["Shoes", "Jackets", "Accessories"]),
            "price": round(rng.uniform(5, 300), 2),
            "quantity": rng.randrange(1, 4),
            "currency": "USD",
            "position": rng.randrange(1, 24),
        }
    elif kind == "page":
        message["name"] = title.split(" - ")[0]
        message["properties"] = {
            "path": path,
            "title": title,
            "url": f"https://shop.example.com{path}",
        }
    else:
        message["traits"] = {
            "email": f"customer{person}@example.com",
            "first_name": rng.choice(["Ada", "Grace", "Linus", "Margaret"]),
            "last_name": rng.choice(["Lovelace", "Hopper", "Torvalds", "Hamilton"]),
            "plan": rng.choice(["free", "pro"]),
            "created_at": "2025-03-14T09:26:53Z",
        }
    return message


# --- the client process ----------------------------------------------------------------


def client_main(
    url: str,
    write_key: str,
    concurrency: int,
    batch: int,
    warmup: float,
    duration: float,
    max_requests: int,
    seed: int,
    results: Any,
) -> None:
    """Runs in its own process: drive the server and put one summary dict on ``results``."""
    results.put(
        asyncio.run(
            _drive(url, write_key, concurrency, batch, warmup, duration, max_requests, seed)
        )
    )


async def _drive(
    url: str,
    write_key: str,
    concurrency: int,
    batch: int,
    warmup: float,
    duration: float,
    max_requests: int,
    seed: int,
) -> dict[str, Any]:
    rng = random.Random(seed)
    run = uuid.uuid4().hex[:8]
    counter = 0
    issued = 0
    latencies: list[float] = []
    measured_events = 0
    acknowledged = 0  # events the server said it accepted, warm-up included
    sent = 0
    errors: list[str] = []

    # Generating realistic messages costs the client about as much CPU as the server
    # spends storing them, and both share this machine's cores. So the client prepares
    # TEMPLATES distinct batches before it starts the clock, and each request copies one
    # and stamps fresh messageIds into fixed-width slots: unique ids, realistic bodies.
    blank = b"#" * 12
    templates: list[tuple[bytes, list[int]]] = []
    now = datetime.now(UTC)
    for _ in range(TEMPLATES):
        messages = [make_message(rng, f"bench-{run}-{blank.decode()}", now) for _ in range(batch)]
        body = orjson.dumps({"batch": messages, "sentAt": now.isoformat()})
        slots, at = [], body.find(blank)
        while at >= 0:
            slots.append(at)
            at = body.find(blank, at + len(blank))
        templates.append((body, slots))
    started = time.perf_counter()
    measure_from = started + warmup
    stop_at = measure_from + duration
    last_end = measure_from

    def next_body() -> bytes:
        nonlocal counter
        template, slots = templates[counter // batch % len(templates)]
        body = bytearray(template)
        for at in slots:
            counter += 1
            body[at : at + 12] = b"%012d" % counter
        return bytes(body)

    async with aiohttp.ClientSession(
        url,
        auth=aiohttp.BasicAuth(write_key, ""),
        connector=aiohttp.TCPConnector(limit=concurrency),
        timeout=aiohttp.ClientTimeout(total=60),
    ) as client:

        async def worker() -> None:
            nonlocal issued, measured_events, acknowledged, sent, last_end
            while issued < max_requests and time.perf_counter() < stop_at:
                issued += 1
                body = next_body()
                sent += batch
                begin = time.perf_counter()
                try:
                    async with client.post(
                        "/v1/batch", data=body, headers={"Content-Type": "application/json"}
                    ) as response:
                        status, raw = response.status, await response.read()
                except (aiohttp.ClientError, TimeoutError) as exc:
                    errors.append(f"{type(exc).__name__}: {exc}")
                    continue
                end = time.perf_counter()
                if status != 200:
                    errors.append(f"HTTP {status}: {raw[:200]!r}")
                    continue
                answer = orjson.loads(raw)
                accepted = int(answer["accepted"]) - int(answer["duplicates"])
                acknowledged += accepted
                if answer["rejected"]:
                    errors.append(f"rejected: {answer['rejected'][:1]}")
                if begin >= measure_from and end <= stop_at:
                    latencies.append(end - begin)
                    measured_events += accepted
                    last_end = max(last_end, end)

        await asyncio.gather(*(worker() for _ in range(concurrency)))
    window = max(last_end - measure_from, 1e-9)
    latencies.sort()
    return {
        "requests": issued,
        "measured_requests": len(latencies),
        "measured_seconds": round(window, 3),
        "measured_events": measured_events,
        "events_sent": sent,
        "events_acknowledged": acknowledged,
        "errors": len(errors),
        "first_errors": errors[:5],
        "latencies": latencies,
    }


# --- databases, the server, the CLI ----------------------------------------------------


@contextlib.contextmanager
def fresh_database(dialect: str, workdir: Path, name: str, pg_url: str) -> Iterator[str]:
    """A fresh, empty database URL of ``dialect``; a PostgreSQL one is dropped afterwards."""
    if dialect == "sqlite":
        yield f"sqlite:///{workdir / f'{name}.db'}"
        return
    admin_url = normalise_url(pg_url)
    database = f"patron_bench_{name}_{uuid.uuid4().hex[:8]}"
    admin = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f'CREATE DATABASE "{database}"'))
    try:
        yield make_url(admin_url).set(database=database).render_as_string(hide_password=False)
    finally:
        with admin.connect() as connection:
            connection.execute(text(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)'))
        admin.dispose()


def server_env(
    database_url: str, data_dir: Path, port: int, workers: int, extra: dict[str, str]
) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PATRON_")}
    env.update(
        PATRON_DATABASE_URL=database_url,
        PATRON_DATA_DIR=str(data_dir),
        PATRON_HOST="127.0.0.1",
        PATRON_PORT=str(port),
        PATRON_SQLITE_SYNCHRONOUS="FULL",
        PATRON_PROCESS_IN_SERVER=os.environ.get("BENCH_PROCESS_IN_SERVER", "true"),
        PATRON_LOG_LEVEL="warning",
        PATRON_WEB_WORKERS=str(workers),
    )
    env.update(extra)
    return env


def patron_cli(env: dict[str, str], *args: str) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "patron.cli", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"patron {' '.join(args)} failed: {done.stderr[-2000:]}")
    return done.stdout


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def running_server(env: dict[str, str], log_path: Path) -> Iterator[tuple[str, int]]:
    url = f"http://127.0.0.1:{env['PATRON_PORT']}"
    with log_path.open("ab") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "patron.cli", "serve"],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        try:
            deadline = time.monotonic() + 60
            while True:
                if process.poll() is not None:
                    raise RuntimeError(f"server exited: {log_path.read_text()[-2000:]}")
                if time.monotonic() > deadline:
                    raise RuntimeError(f"server did not start: {log_path.read_text()[-2000:]}")
                try:
                    if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                        break
                except httpx.HTTPError:
                    time.sleep(0.1)
            spy = None
            if os.environ.get("BENCH_PYSPY"):  # e.g. BENCH_PYSPY=/tmp/venv/bin/py-spy
                spy = subprocess.Popen(
                    [
                        os.environ["BENCH_PYSPY"],
                        "record",
                        "--nonblocking",
                        "--threads",
                        "--subprocesses",
                        "-f",
                        "raw",
                        "-o",
                        str(log_path.with_suffix(".pyspy.txt")),
                        "--pid",
                        str(process.pid),
                    ],
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                )
            yield url, process.pid
            if spy is not None:
                spy.send_signal(signal.SIGINT)
                spy.wait(timeout=60)
                print(f"py-spy profile: {log_path.with_suffix('.pyspy.txt')}", file=sys.stderr)
        finally:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
                try:
                    process.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait(timeout=10)


def process_tree(pid: int) -> list[int]:
    """``pid`` and all its descendants (Linux /proc)."""
    found, todo = [], [pid]
    while todo:
        current = todo.pop()
        found.append(current)
        with contextlib.suppress(OSError):
            for task in Path(f"/proc/{current}/task").iterdir():
                todo.extend(int(c) for c in (task / "children").read_text().split())
    return found


def cpu_seconds(pids: list[int]) -> float:
    """User plus system CPU time the processes have used so far."""
    ticks = 0
    for pid in pids:
        with contextlib.suppress(OSError, IndexError, ValueError):
            fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
            ticks += int(fields[11]) + int(fields[12])
    return ticks / os.sysconf("SC_CLK_TCK")


def count_events(database_url: str) -> tuple[int, int]:
    """Events stored, and how far the processing loop got."""
    engine = create_db_engine(Settings(), database_url)
    try:
        with engine.connect() as connection:
            stored = int(connection.scalar(select(func.count()).select_from(Event)) or 0)
            processed = connection.scalar(
                select(ProcessingCursor.position).where(ProcessingCursor.name == "main")
            )
            return stored, int(processed or 0)
    finally:
        engine.dispose()


def server_version(database_url: str) -> str:
    engine = create_db_engine(Settings(), database_url)
    try:
        with engine.connect() as connection:
            return str(connection.scalar(text("SHOW server_version")))
    finally:
        engine.dispose()


# --- the raw baseline ------------------------------------------------------------------


def baseline(
    database_url: str, *, batch: int, rows: int, seconds: float, seed: int, core: bool = False
) -> dict[str, Any]:
    """Insert prepared rows into ``events``, ``batch`` per commit, with plain INSERTs.

    Through the driver's executemany; with ``core``, through SQLAlchemy Core's instead
    (which processes every parameter of every row in Python first).
    """
    settings = Settings(sqlite_synchronous="FULL")
    engine = create_db_engine(settings, database_url)
    upgrade(engine)
    source_id = uuid.uuid4()
    with engine.begin() as connection:
        connection.execute(
            insert(Source.__table__),
            [
                {
                    "id": source_id,
                    "name": "baseline",
                    "kind": "server",
                    "write_key_hash": hash_secret(uuid.uuid4().hex),
                    "write_key_prefix": "pk_base",
                    "enabled": True,
                    "allowed_origins": [],
                    "created_at": datetime.now(UTC),
                }
            ],
        )
    rng = random.Random(seed)
    now = datetime.now(UTC)
    meta = RequestMeta(received_at=now, ip="127.0.0.1", user_agent="python-httpx")
    postgres = engine.dialect.name == "postgresql"
    values = SQLITE_VALUES if not postgres else POSTGRES_VALUES
    prepared: list[list[tuple[Any, ...]]] = []
    named: list[list[dict[str, Any]]] = []
    for b in range(rows // batch):
        chunk, dicts = [], []
        for i in range(batch):
            m = normalise(
                make_message(rng, f"base-{b}-{i}", now),
                meta=meta,
                message_type=None,
                max_future_skew=timedelta(hours=1),
            )
            row = (source_id, m.message_id, m.type, m.event, m.user_id, m.anonymous_id)
            dicts.append(
                dict(
                    zip(
                        EVENT_COLUMNS,
                        (*row, m.timestamp, now, m.flags, m.payload),
                        strict=True,
                    )
                )
            )
            chunk.append(
                (
                    values.uuid(source_id),
                    *row[1:],
                    values.datetime(m.timestamp),
                    values.datetime(now),
                    json_dumps(m.flags),
                    json_dumps(m.payload),
                )
            )
        prepared.append(chunk)
        named.append(dicts)
    inserted = 0
    if core:
        statement = insert(Event.__table__)
        started = time.perf_counter()
        with engine.connect() as connection:
            for dicts in named:
                with connection.begin():
                    connection.execute(statement, dicts)
                inserted += len(dicts)
                if time.perf_counter() - started > seconds:
                    break
        elapsed = time.perf_counter() - started
        engine.dispose()
        return {
            "events": inserted,
            "seconds": round(elapsed, 3),
            "events_per_second": round(inserted / elapsed, 1),
        }
    # Plain INSERT through the driver's executemany, as fast as this driver inserts rows.
    mark = "%s" if postgres else "?"
    json_mark = "%s::jsonb" if postgres else "?"
    sql = (
        f"INSERT INTO events ({', '.join(EVENT_COLUMNS)}) "
        f"VALUES ({', '.join([mark] * 8 + [json_mark] * 2)})"
    )
    connection = engine.raw_connection()  # the engine's connect hook set the pragmas
    cursor = connection.cursor()
    started = time.perf_counter()
    for chunk in prepared:
        if not postgres:
            cursor.execute("BEGIN IMMEDIATE")
        cursor.executemany(sql, chunk)
        connection.commit()
        inserted += len(chunk)
        if time.perf_counter() - started > seconds:
            break
    cursor.close()
    connection.close()
    elapsed = time.perf_counter() - started
    engine.dispose()
    return {
        "events": inserted,
        "seconds": round(elapsed, 3),
        "events_per_second": round(inserted / elapsed, 1),
    }


# --- one dialect -----------------------------------------------------------------------


def run_dialect(dialect: str, args: argparse.Namespace) -> dict[str, Any]:
    with scratch_dir(dialect) as workdir:
        out: dict[str, Any] = {}
        with fresh_database(dialect, workdir, "server", args.postgres_url) as url:
            env = server_env(url, workdir, free_port(), args.workers, {})
            patron_cli(env, "migrate")
            write_key = orjson.loads(patron_cli(env, "sources", "create", "bench", "--json"))[
                "write_key"
            ]
            if dialect == "postgresql":
                out["postgres_server_version"] = server_version(url)
            with running_server(env, workdir / "server.log") as (base_url, pid):
                summary = drive(base_url, write_key, args, pid)
            stored, processed = count_events(url)
            log_tail = (workdir / "server.log").read_text()[-1500:]
        latencies = summary.pop("latencies")
        events_per_second = summary["measured_events"] / summary["measured_seconds"]
        out.update(
            events_per_second=round(events_per_second, 1),
            p50_ms=round(1000 * statistics.median(latencies), 2) if latencies else None,
            p99_ms=round(1000 * percentile(latencies, 0.99), 2) if latencies else None,
            **summary,
            events_stored=stored,
            nothing_lost=stored == summary["events_acknowledged"],
            events_processed=processed,
            # CPU time of the server's processes (web workers and processor) in the window.
            server_cpu_us_per_event=round(
                1e6 * summary.pop("server_cpu_seconds") / max(summary["measured_events"], 1), 1
            ),
        )
        if summary["errors"] or not out["nothing_lost"]:
            out["server_log_tail"] = log_tail
        with fresh_database(dialect, workdir, "baseline", args.postgres_url) as url:
            raw = baseline(
                url,
                batch=args.baseline_batch,
                rows=args.baseline_rows,
                seconds=args.baseline_seconds,
                seed=args.seed + 1,
            )
        out["baseline"] = raw
        out["ratio"] = round(events_per_second / raw["events_per_second"], 3)
        # For comparison: the same, through SQLAlchemy Core's executemany.
        with fresh_database(dialect, workdir, "core", args.postgres_url) as url:
            out["baseline_sqlalchemy_core"] = baseline(
                url,
                batch=args.baseline_batch,
                rows=args.baseline_rows,
                seconds=args.baseline_seconds,
                seed=args.seed + 1,
                core=True,
            )
        return out


@contextlib.contextmanager
def scratch_dir(dialect: str) -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix=f"patron-bench-{dialect}-"))
    try:
        yield path
    finally:
        if not os.environ.get("BENCH_KEEP"):  # keep the server log and profile for a look
            shutil.rmtree(path, ignore_errors=True)


def percentile(ordered: list[float], q: float) -> float:
    index = min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))
    return ordered[index]


def drive(
    base_url: str, write_key: str, args: argparse.Namespace, server_pid: int
) -> dict[str, Any]:
    """Run the clients in ``--client-processes`` other processes and merge what they saw."""
    context = multiprocessing.get_context("spawn")
    results = context.Queue()
    processes = args.client_processes
    share = [
        args.concurrency // processes + (i < args.concurrency % processes) for i in range(processes)
    ]
    workers = [
        context.Process(
            target=client_main,
            args=(
                base_url,
                write_key,
                share[i],
                args.batch,
                args.warmup,
                args.duration,
                args.max_requests // processes,
                args.seed + 100 + i,
                results,
            ),
        )
        for i in range(processes)
    ]
    children_cpu = sum(os.times()[2:4])
    for w in workers:
        w.start()
    # The server's CPU time over the measured window: web workers and processor together.
    time.sleep(args.warmup)
    tree = process_tree(server_pid)
    cpu_before = cpu_seconds(tree)
    time.sleep(args.duration)
    server_cpu = cpu_seconds(tree) - cpu_before
    parts = [results.get(timeout=args.warmup + args.duration + 300) for _ in workers]
    for w in workers:
        w.join(timeout=30)
    merged: dict[str, Any] = {
        "requests": sum(p["requests"] for p in parts),
        "measured_requests": sum(p["measured_requests"] for p in parts),
        "measured_seconds": max(p["measured_seconds"] for p in parts),
        "measured_events": sum(p["measured_events"] for p in parts),
        "events_sent": sum(p["events_sent"] for p in parts),
        "events_acknowledged": sum(p["events_acknowledged"] for p in parts),
        "errors": sum(p["errors"] for p in parts),
        "first_errors": [e for p in parts for e in p["first_errors"]][:5],
        "latencies": sorted(x for p in parts for x in p["latencies"]),
        "server_cpu_seconds": server_cpu,
        "client_cpu_seconds": round(sum(os.times()[2:4]) - children_cpu, 2),
    }
    return merged


def machine() -> dict[str, Any]:
    cpu = "unknown"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    memory = None
    with contextlib.suppress(OSError, ValueError, IndexError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                memory = round(int(line.split()[1]) / 1024 / 1024, 1)
    return {
        "nproc": os.cpu_count(),
        "cpu": cpu,
        "memory_gib": memory,
        "python": platform.python_version(),
        "sqlite": sqlite3.sqlite_version,
        "platform": platform.platform(),
    }


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dialect", choices=("sqlite", "postgresql", "both"), default="both")
    parser.add_argument(
        "--postgres-url", default=os.environ.get("PATRON_BENCH_POSTGRES_URL", DEFAULT_PG)
    )
    parser.add_argument("--concurrency", type=int, default=12, help="keep-alive connections")
    parser.add_argument("--client-processes", type=int, default=1)
    parser.add_argument("--batch", type=int, default=100, help="messages per request")
    parser.add_argument(
        "--workers", type=int, default=2, help="server processes (PATRON_WEB_WORKERS)"
    )
    parser.add_argument(
        "--baseline-batch", type=int, default=1000, help="rows per baseline transaction"
    )
    parser.add_argument("--warmup", type=float, default=3.0, help="seconds not measured")
    parser.add_argument("--duration", type=float, default=20.0, help="seconds measured")
    parser.add_argument("--max-requests", type=int, default=20_000, help="cap on requests")
    parser.add_argument("--baseline-rows", type=int, default=100_000)
    parser.add_argument("--baseline-seconds", type=float, default=15.0)
    parser.add_argument("--seed", type=int, default=2026)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    dialects = ("sqlite", "postgresql") if args.dialect == "both" else (args.dialect,)
    report: dict[str, Any] = {
        "benchmark": "ingest",
        "date": datetime.now(UTC).date().isoformat(),
        "machine": machine(),
        "config": {
            "endpoint": "POST /v1/batch",
            "messages_per_request": args.batch,
            "concurrency": args.concurrency,
            "client_processes": args.client_processes,
            "web_workers": args.workers,
            "baseline_rows_per_transaction": args.baseline_batch,
            "warmup_seconds": args.warmup,
            "duration_seconds": args.duration,
            "sqlite_synchronous": "FULL",
            "process_in_server": True,
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
    print(orjson.dumps(report, option=orjson.OPT_INDENT_2).decode())
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
