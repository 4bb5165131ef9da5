"""Engines and sessions for both dialects.

SQLite runs in WAL mode with a busy timeout, and transactions begin IMMEDIATE so that two
writers queue on the lock instead of failing half-way with SQLITE_BUSY. Read-only work
uses :func:`make_read_session_factory`, whose transactions begin DEFERRED and so never
wait for, or hold up, a writer.

:class:`GroupCommitter` lets many concurrent requests share one write transaction, so
that a durable commit (an fsync) is paid once per group rather than once per request.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import queue
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, Generic, TypeVar

import orjson
from sqlalchemy import Engine, create_engine, event, text
from sqlalchemy.engine import make_url
from sqlalchemy.orm import ORMExecuteState, Session, sessionmaker

from patron.core.settings import Settings


def normalise_url(url: str) -> str:
    """Pick psycopg 3 for plain ``postgresql://`` URLs (SQLAlchemy would pick psycopg2)."""
    parsed = make_url(url)
    if parsed.drivername in ("postgresql", "postgres"):
        parsed = parsed.set(drivername="postgresql+psycopg")
    return parsed.render_as_string(hide_password=False)


def create_db_engine(settings: Settings, url: str | None = None) -> Engine:
    """Create the engine for ``url`` (default: the configured database)."""
    url = normalise_url(url or settings.resolved_database_url())
    if make_url(url).get_backend_name() == "sqlite":
        return _sqlite_engine(url, settings)
    return _postgres_engine(url)


def _postgres_engine(url: str) -> Engine:
    engine = create_engine(
        url,
        pool_size=10,
        max_overflow=20,
        pool_pre_ping=True,
        json_serializer=json_dumps,
        json_deserializer=json_loads,
    )

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # No JIT compilation. PostgreSQL compiles any statement its planner costs over
        # jit_above_cost, and Patron's reports and counts over millions of rows all are:
        # a sales rep's activity report spent 0.50 s of its 0.84 s compiling, for a plan
        # that then ran no faster. Set here, not as a startup option, so that a pooler
        # which refuses startup options (PgBouncer) still works; committed, because SET
        # is undone with the transaction it ran in.
        cursor = dbapi_connection.cursor()
        cursor.execute("SET jit = off")
        cursor.close()
        dbapi_connection.commit()

    return engine


def plan_each_search(session: Session) -> None:
    """How PostgreSQL plans the rest of the session's transaction, for searches, whose
    statements stop after a page or a capped count:

    - A plan per call: psycopg prepares a statement run five times, and PostgreSQL may
      then keep one generic plan for it, which cannot know the words a ``LIKE`` looks for.
    - No parallel workers: the planner costs a capped statement as if it read every row
      it might, and starts two workers that cost more than they save. A sales rep's
      search for a common name counted in 21 to 29 ms with them and 12 to 17 without, at
      1,000,000 persons on two cores (where they also take the cores of the requests
      beside it).

    ``SET LOCAL`` ends with the transaction.
    """
    if session.get_bind().dialect.name == "postgresql":
        session.execute(text("SET LOCAL plan_cache_mode = force_custom_plan"))
        session.execute(text("SET LOCAL max_parallel_workers_per_gather = 0"))


def json_dumps(value: Any) -> str:
    """JSON columns are written with orjson (several times faster than ``json``)."""
    try:
        return orjson.dumps(value, option=orjson.OPT_NON_STR_KEYS).decode()
    except TypeError:  # integers past 64 bits and the like: the standard library copes
        return json.dumps(value)


def json_loads(text: str | bytes) -> Any:
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError:  # e.g. NaN written by an older version
        return json.loads(text)


# SQLite's own lower() folds only ASCII letters; this one, registered on every connection,
# folds by Unicode's rules, so that search documents and words compare in any case there
# as they do on PostgreSQL (``crm.search``).
SQLITE_FOLD = "patron_fold"


def fold_case(value: str | None) -> str | None:
    return None if value is None else value.lower()


def _sqlite_engine(url: str, settings: Settings) -> Engine:
    database = make_url(url).database
    if database and database != ":memory:":
        Path(database).parent.mkdir(parents=True, exist_ok=True)
    engine = create_engine(
        url,
        connect_args={"check_same_thread": False},
        pool_size=10,
        json_serializer=json_dumps,
        json_deserializer=json_loads,
    )
    synchronous = settings.sqlite_synchronous
    busy_ms = settings.sqlite_busy_timeout_ms

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Let SQLAlchemy, not the sqlite3 module, decide when transactions begin.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute(f"PRAGMA synchronous={synchronous}")
        cursor.execute(f"PRAGMA busy_timeout={int(busy_ms)}")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.close()
        dbapi_connection.create_function(SQLITE_FOLD, 1, fold_case, deterministic=True)

    @event.listens_for(engine, "begin")
    def _on_begin(connection: Any) -> None:
        mode = connection.get_execution_options().get(SQLITE_BEGIN, "IMMEDIATE")
        connection.exec_driver_sql(f"BEGIN {mode}")

    return engine


SQLITE_BEGIN = "patron_sqlite_begin"


def make_session_factory(engine: Engine) -> sessionmaker[Session]:
    """Sessions for work that writes."""
    return _synchronised(sessionmaker(engine, expire_on_commit=False))


def make_read_session_factory(engine: Engine) -> sessionmaker[Session]:
    """Sessions for work that only reads (on PostgreSQL the same as any session)."""
    return _synchronised(
        sessionmaker(engine.execution_options(**{SQLITE_BEGIN: "DEFERRED"}), expire_on_commit=False)
    )


def _synchronised(factory: sessionmaker[Session]) -> sessionmaker[Session]:
    """ORM UPDATE and DELETE statements keep loaded objects in step by the primary keys
    they matched (``fetch``: RETURNING on both dialects), not by evaluating their WHERE
    clause against every object in the session (``evaluate``, the default). A merge in a
    processing batch holds thousands of loaded rows; evaluating each statement against all
    of them made a chain of 1,000 merges take 80 s instead of a few."""

    @event.listens_for(factory, "do_orm_execute")
    def _fetch_matched(state: ORMExecuteState) -> None:
        if (state.is_update or state.is_delete) and (
            "synchronize_session" not in state.execution_options
        ):
            state.update_execution_options(synchronize_session="fetch")

    return factory


@contextlib.contextmanager
def write_turn(engine: Engine, *, ingest: bool = False, defer: float = 0.0) -> Iterator[None]:
    """Hold the turn to write to this SQLite file, waiting in line for it; else nothing.

    Several processes (``serve --workers``, the processor) write one SQLite file. Left to
    SQLite, a writer that finds the lock taken sleeps in the busy handler with growing
    back-off and may lose the race again on waking: seconds of latency under load. Here
    writers block in the kernel on a lock file instead, and take turns: to write, hold
    the *queue* lock, then the *turn* lock, and let go of *queue* while writing. The next
    writer then already waits on *turn*, so the one that just wrote cannot take it again
    before it. Each call opens its own descriptors, so threads take turns as processes do.

    Ingest comes first, because a client waits for its answer and the processing loop can
    catch up later: ``ingest`` writers hold a shared lock while they wait and write, and a
    writer that passes ``defer`` waits up to that many seconds for a moment when no
    ingest writer is waiting before it gets in line.
    """
    path = sqlite_path(engine)
    if path is None:
        yield
        return
    fds: list[int] = []
    try:
        if ingest:
            fds.append(_locked(f"{path}-ingest.lock", fcntl.LOCK_SH))
        elif defer > 0:
            _wait_for_no_ingest(f"{path}-ingest.lock", defer)
        queue_fd = _locked(f"{path}-queue.lock", fcntl.LOCK_EX)
        try:
            fds.append(_locked(f"{path}-turn.lock", fcntl.LOCK_EX))
        finally:
            os.close(queue_fd)
        yield
    finally:
        for fd in fds:
            os.close(fd)  # closing the last descriptor releases its lock


def _locked(path: str, operation: int) -> int:
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, operation)
    except BaseException:
        os.close(fd)
        raise
    return fd


def _wait_for_no_ingest(path: str, seconds: float) -> None:
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                time.sleep(0.005)
                continue
            return
    finally:
        os.close(fd)


def ingest_waiting(engine: Engine) -> bool:
    """Whether an ingest writer is writing this SQLite file or waiting to (see
    :func:`write_turn`) right now; always False on PostgreSQL, where ingest does not wait
    for the processor's transaction."""
    path = sqlite_path(engine)
    if path is None:
        return False
    fd = os.open(f"{path}-ingest.lock", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)  # releases the lock if it was taken
    return False


def sqlite_path(engine: Engine) -> str | None:
    """The file of a SQLite database (None for PostgreSQL and in-memory databases)."""
    url = engine.url
    if url.get_backend_name() != "sqlite" or url.database in (None, "", ":memory:"):
        return None
    return str(url.database)


T = TypeVar("T")


class _Job(Generic[T]):
    __slots__ = ("done", "error", "result", "size", "work")

    def __init__(self, work: Callable[[Session], T], size: int) -> None:
        self.work, self.size = work, size
        self.done = threading.Event()
        self.result: T | None = None
        self.error: BaseException | None = None


class GroupCommitter:
    """One writer thread that runs the work of concurrent callers in a shared transaction.

    :meth:`run` queues a unit of work and blocks until the transaction that ran it has
    committed, so a caller that answers 2xx after it returns still only acknowledges
    committed data. The thread takes everything queued (up to ``max_size``), runs each
    unit in its own SAVEPOINT (a unit that raises is rolled back alone and its caller gets
    the exception), then commits once: one fsync for the group instead of one per request,
    and no queue of writers sleeping on SQLite's lock. If the commit fails, every caller in
    the group gets the error. The thread ends after ``idle_seconds`` with nothing to do and
    starts again on demand.
    """

    def __init__(
        self, sessions: sessionmaker[Session], *, max_size: int = 10_000, idle_seconds: float = 5
    ) -> None:
        self._sessions = sessions
        self._engine: Engine = sessions.kw["bind"]
        self._max_size = max_size
        self._idle_seconds = idle_seconds
        self._queue: queue.SimpleQueue[_Job[Any]] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None

    def run(self, work: Callable[[Session], T], *, size: int = 1) -> T:
        """Run ``work(session)`` in the next group; return its result once committed."""
        job = _Job(work, size)
        self._queue.put(job)
        with self._lock:
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._loop, name="patron-group-commit", daemon=True
                )
                self._thread.start()
        job.done.wait()
        if job.error is not None:
            raise job.error
        return job.result  # type: ignore[return-value]

    def _loop(self) -> None:
        while True:
            try:
                first = self._queue.get(timeout=self._idle_seconds)
            except queue.Empty:
                with self._lock:
                    if self._queue.empty():
                        self._thread = None
                        return
                continue
            jobs, size = [first], first.size
            while size < self._max_size:
                try:
                    job = self._queue.get_nowait()
                except queue.Empty:
                    break
                jobs.append(job)
                size += job.size
            self._commit(jobs)

    def _commit(self, jobs: list[_Job[Any]]) -> None:
        try:
            with (
                write_turn(self._engine, ingest=True),
                self._sessions() as session,
                session.begin(),
            ):
                for job in jobs:
                    try:
                        with session.begin_nested():
                            job.result = job.work(session)
                    except Exception as exc:
                        job.error = exc
        except BaseException as exc:  # the commit failed: nothing of this group was stored
            for job in jobs:
                if job.error is None:
                    job.error, job.result = exc, None
        finally:
            for job in jobs:
                job.done.set()


# The tables lists filter and sort: the planner's statistics matter most for them, and
# SQLite's ANALYZE reads them whole (a million rows in well under a second).
ANALYZED_TABLES = (
    "persons",
    "identities",
    "person_companies",
    "companies",
    "deals",
    "activities",
    "tickets",
    "search_documents",
    "record_shares",
)


# The event log and its index by person, far larger: SQLite's ANALYZE would read them
# whole, and its planner serves them well without statistics (it takes an index over a
# scan when it knows nothing). PostgreSQL's samples a fixed number of rows, and without
# statistics it scanned every event of a kind to score 500 persons (0.2 s a batch; lead
# scoring of 100,000 persons ran for more than ten minutes) instead of reading their
# events by person. Autovacuum keeps them when it is on; this covers a server where not.
POSTGRES_ANALYZED_TABLES = ("events", "person_events")


def analyze(engine: Engine) -> None:
    """Refresh the statistics the query planner chooses indexes by.

    SQLite keeps none until asked, and without them it may take an index that matches
    nearly every row for a selective one, or miss the index that serves a list's order.
    """
    tables: tuple[str, ...] = ANALYZED_TABLES
    if engine.dialect.name == "postgresql":
        tables += POSTGRES_ANALYZED_TABLES
    with engine.begin() as connection:
        for table in tables:
            connection.exec_driver_sql(f"ANALYZE {table}")
