"""The processing loop: read the event log in order and derive state from it.

One cursor per processor, stored in the same transaction as the state each step derives,
so a crash between two steps repeats nothing and skips nothing. Each step hands the batch
to the handlers in order: the event catalog, then :func:`derive` (identity resolution,
traits, computed traits, companies). Later domains (segments, destinations) add theirs.

This module is the composition root: it also tells identity which functions of the
domains above it run when persons merge, split or are replayed (``identity.hooks``).
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from patron.auth.service import AUDIT_LISTENERS
from patron.collect.catalog import record_in_catalog
from patron.collect.imports import CUSTOM_VALUES, PERSON_CLASSIFIER, RECORD_KINDS
from patron.collect.models import Event, LogEntry, ProcessingCursor
from patron.collect.service import read_log, record_event_keys
from patron.core.clock import utcnow
from patron.core.db import analyze, ingest_waiting, write_turn
from patron.core.dialect import lock_row_for_update
from patron.core.settings import Settings
from patron.crm import imports as crm_imports
from patron.crm.access import support_ticket_persons
from patron.crm.contacts import fill_from_merged, import_checker, record_custom_values
from patron.crm.forms.attribution import merge_touches
from patron.crm.forms.jobs import every_seconds as forms_every
from patron.crm.forms.jobs import run_form_jobs
from patron.crm.forms.processing import after_forms, preferred_teams
from patron.crm.inbound import attach_waiting_activities
from patron.crm.leads import jobs as leads
from patron.crm.leads.assignment import TEAM_PREFERENCES
from patron.crm.leads.scoring import carry_overrides, mark_stale, rescore_survivors
from patron.crm.search import forget_merged, index_persons
from patron.crm.service import forget_links, move_links, record_groups
from patron.crm.tickets import jobs as ticket_jobs
from patron.crm.workflows import engine as workflow_engine
from patron.crm.workflows import jobs as workflow_jobs
from patron.identity import linkage
from patron.identity import service as identity
from patron.identity.graph import resolve_events
from patron.identity.hooks import HOOKS
from patron.profiles.access import SUPPORT_SCOPES
from patron.profiles.computed import (
    forget_computed,
    move_computed,
    publish_survivors,
    refresh_windowed,
    update_computed,
)
from patron.profiles.traits import (
    forget_traits,
    move_traits,
    record_traits,
    refresh_survivors,
    refresh_visible,
)

log = logging.getLogger("patron.pipeline")

Handler = Callable[[Session, Sequence[LogEntry]], None]
# Sliding windows lose old events by the hour; a quarter hour keeps them close enough.
WINDOW_REFRESH_SECONDS = 900
# How long a step of the running loop aims to hold the write lock while ingest writes
# (and while it does not: catching up), the fewest events it takes at once, and how long
# it lets ingest go first (SQLite; see Processor.run).
STEP_SECONDS = 0.05
CATCH_UP_SECONDS = 0.25
MIN_STEP_EVENTS = 20
INGEST_FIRST_SECONDS = 0.5


def next_step_size(events: int, held_seconds: float, *, most: int, ingest_writing: bool) -> int:
    """How many events the running loop takes next after a full step of ``events`` that
    held the lock ``held_seconds``: as many as fit the time it may hold the lock (short
    while ingest writes, longer when it does not), at most twice as many as before."""
    target = STEP_SECONDS if ingest_writing else CATCH_UP_SECONDS
    scaled = int(events * target / max(held_seconds, 1e-3))
    return max(MIN_STEP_EVENTS, min(most, scaled, 2 * events))


def derive(session: Session, events: Sequence[LogEntry], settings: Settings) -> None:
    """Resolve each event to its person, then update that person's profile and companies.

    The survivors of the batch's merges are refreshed with the batch's other persons (the
    after-merge hooks' work is part of the steps below), not in a pass of their own."""
    survivors: set[uuid.UUID] = set()
    owners = resolve_events(session, events, settings, survivors=survivors)
    recorded = record_traits(session, events, owners)
    refresh_visible(session, recorded.persons, recorded.values)
    refresh_visible(session, survivors - recorded.persons)
    update_computed(session, events, owners)
    # Survivors merged again later in the batch hold no event of it.
    publish_survivors(session, survivors - set(owners.values()))
    record_groups(session, events, owners)
    record_custom_values(session, events, owners)
    attach_waiting_activities(session, events, owners)
    # What a person is found by (names, emails, phones, companies) changes with their traits
    # and with identify, alias and group calls; other events leave it alone.
    linked = {owners[e.seq] for e in events if e.type in SEARCH_TYPES and e.seq in owners}
    index_persons(session, recorded.persons | linked | survivors)
    rescore_survivors(session, survivors)
    for hook in HOOKS.after_merges:
        if hook not in SETTLED_BY_DERIVE:
            hook(session, survivors)


# Messages that can change what a person is found by, besides their traits.
SEARCH_TYPES = frozenset({"identify", "alias", "group"})

HOOKS.merged_many[:] = [move_traits, move_computed, move_links, forget_merged, carry_overrides]
HOOKS.merged[:] = [fill_from_merged, merge_touches]
# Scores last: they read the survivors' merged CRM fields and refreshed traits.
SETTLED_BY_DERIVE = (refresh_survivors, publish_survivors, rescore_survivors, index_persons)
HOOKS.after_merges[:] = SETTLED_BY_DERIVE
HOOKS.reset[:] = [forget_traits, forget_computed, forget_links, mark_stale]
HOOKS.replay = derive
CUSTOM_VALUES[:] = [import_checker]
PERSON_CLASSIFIER[:] = [identity.import_classifier]
RECORD_KINDS.update(crm_imports.KINDS)
# Support users see the persons on the tickets they work.
SUPPORT_SCOPES[:] = [support_ticket_persons]


@dataclass(frozen=True)
class Job:
    """Background work the running processor does when the log is drained: ``run`` gets a
    session factory and the settings, does its own transactions, and returns how much it
    did. It runs every ``every_seconds`` (the first time one interval after start), or not
    at all when ``every_seconds`` returns 0 for the settings."""

    name: str
    every_seconds: Callable[[Settings], float]
    run: Callable[[sessionmaker[Session], Settings], int]


# Domains add their scheduled work here (SLA clocks, nightly retraining, ...).
JOBS: list[Job] = []
JOBS.append(Job(ticket_jobs.JOB_NAME, lambda s: s.sla_check_seconds, ticket_jobs.run))

# Workflow rules: a CRM change fires them as it is audited (runs are written in its
# transaction), and the runs are done every few seconds after the commit.
AUDIT_LISTENERS[:] = [workflow_engine.on_audit]
JOBS.append(
    Job(
        "workflows",
        every_seconds=lambda settings: settings.workflow_interval_seconds,
        run=workflow_jobs.run_workflows,
    )
)
JOBS.append(Job("forms", forms_every, run_form_jobs))
JOBS.extend(Job(name, every, run) for name, every, run in leads.SCHEDULE)


def _analyze(sessions: sessionmaker[Session], _settings: Settings) -> int:
    analyze(sessions.kw["bind"])
    return 1


JOBS.append(Job("analyze", lambda settings: settings.analyze_interval_seconds, _analyze))
# A lead from a web form with a team rule goes to that team first.
TEAM_PREFERENCES[:] = [preferred_teams]


def default_handlers(settings: Settings) -> tuple[Handler, ...]:
    def derive_profiles(session: Session, events: Sequence[LogEntry]) -> None:
        derive(session, events, settings)

    # Form submissions' lead steps need the person resolution just made; scores then see
    # the lifecycle stage those steps set.
    return (
        record_event_keys,
        record_in_catalog,
        derive_profiles,
        after_forms,
        leads.score_touched,
    )


@dataclass
class Processor:
    sessions: sessionmaker[Session]
    name: str = "main"
    # What a step costs besides its events (a commit, each handler's queries) is spread over
    # more of them: at 10,000 customers, 2,000 processed about 40% faster than 500, and
    # 5,000 about 10% faster than 2,000.
    batch_size: int = 5000
    settings: Settings = field(default_factory=Settings)
    handlers: Sequence[Handler] = ()
    # Read-only sessions for record linkage's scoring (falls back to ``sessions``).
    readers: sessionmaker[Session] | None = None
    # How long the last step held the write lock (seconds).
    held_seconds: float = 0.0

    def __post_init__(self) -> None:
        if not self.handlers:
            self.handlers = default_handlers(self.settings)

    def step(self, limit: int | None = None, *, defer: float = 0.0) -> int:
        """Process the next batch of the log; returns how many events it handled.

        ``limit`` caps the batch below ``batch_size``; ``defer`` lets ingest go first for
        up to that many seconds (see :func:`patron.core.db.write_turn`).
        """
        with write_turn(self.sessions.kw["bind"], defer=defer):
            began = time.monotonic()
            try:
                return self._step(min(limit or self.batch_size, self.batch_size))
            finally:
                self.held_seconds = time.monotonic() - began

    def _step(self, limit: int) -> int:
        with self.sessions() as session, session.begin():
            cursor = self._claim_cursor(session)
            events = read_log(session, Event.seq > cursor.position, limit=limit)
            if not events:
                return 0
            for handler in self.handlers:
                handler(session, events)
            cursor.position = events[-1].seq
            cursor.updated_at = utcnow()
            return len(events)

    def _claim_cursor(self, session: Session) -> ProcessingCursor:
        # On PostgreSQL the row lock makes concurrent workers take turns, so the log is
        # still applied in order; SQLite's IMMEDIATE transaction already does the same.
        statement = select(ProcessingCursor).where(ProcessingCursor.name == self.name)
        if lock_row_for_update(session):
            statement = statement.with_for_update()
        cursor = session.scalar(statement)
        if cursor is None:
            cursor = ProcessingCursor(name=self.name, position=0)
            session.add(cursor)
            session.flush()
        return cursor

    def drain(self) -> int:
        """Process until the log is empty; returns the number of events handled."""
        total = 0
        while handled := self.step():
            total += handled
        return total

    def refresh(self) -> int:
        """Move sliding windows forward for persons who sent nothing new."""
        with self.sessions() as session, session.begin():
            return refresh_windowed(session)

    def match(self) -> int | None:
        """Incremental record linkage, when persons were created or changed since the last
        run; returns the run's id, or None when there was nothing to compare."""
        readers = self.readers or self.sessions
        with readers() as session:
            if not linkage.needs_run(session):
                return None
        summary = linkage.run_matching(readers, self.sessions, settings=self.settings, actor=None)
        return summary.run.id

    def run_due_jobs(self, last_run: dict[str, float]) -> None:
        """Run the :data:`JOBS` whose interval has passed since ``last_run`` (updated).

        One failing job is logged and does not keep the others from running."""
        for job in JOBS:
            every = job.every_seconds(self.settings)
            now = time.monotonic()
            if not every or now - last_run.setdefault(job.name, now) < every:
                continue
            last_run[job.name] = now
            try:
                job.run(self.sessions, self.settings)
            except Exception:
                log.exception("background job %s failed; it runs again next interval", job.name)

    def run(self, stop: threading.Event, idle_seconds: float) -> None:
        """Process until ``stop`` is set, sleeping ``idle_seconds`` when there is nothing new.

        While ingest is writing, a step waits for a gap (up to ``INGEST_FIRST_SECONDS``)
        and its batch shrinks to hold the write lock about ``STEP_SECONDS``, so answers to
        clients are not held up behind a long step; when ingest is quiet, steps grow to
        ``CATCH_UP_SECONDS`` (at most ``batch_size`` events) and processing catches up.
        When the log is drained, windowed computed traits are refreshed every
        ``WINDOW_REFRESH_SECONDS``, and record linkage runs over what changed every
        ``match_interval_seconds`` (the first time one interval after start), and so do
        the :data:`JOBS` whose interval has passed.
        """
        last_refresh = 0.0
        last_match = time.monotonic()
        match_every = self.settings.match_interval_seconds
        last_job = dict.fromkeys((job.name for job in JOBS), time.monotonic())
        limit = self.batch_size
        while not stop.is_set():
            try:
                handled = self.step(limit, defer=INGEST_FIRST_SECONDS)
                if handled == 0:
                    if time.monotonic() - last_refresh > WINDOW_REFRESH_SECONDS:
                        self.refresh()
                        last_refresh = time.monotonic()
                    if match_every and time.monotonic() - last_match > match_every:
                        last_match = time.monotonic()
                        self.match()
                    self.run_due_jobs(last_job)
                    stop.wait(idle_seconds)
                    continue
                if handled == limit:
                    limit = next_step_size(
                        handled,
                        self.held_seconds,
                        most=self.batch_size,
                        ingest_writing=ingest_waiting(self.sessions.kw["bind"]),
                    )
            except Exception:
                # A bad step is rolled back and retried; the loop must outlive it.
                log.exception("processing step failed; retrying")
                stop.wait(max(idle_seconds, 1.0))


def position(session: Session, name: str = "main") -> int:
    """How far the named processor has read."""
    cursor = session.get(ProcessingCursor, name)
    return cursor.position if cursor else 0


@dataclass
class RebuildResult:
    events: int
    decisions: int
    orphans: int


def rebuild(sessions: sessionmaker[Session], settings: Settings) -> RebuildResult:
    """Derive persons, identities, traits, computed traits and companies again from the log.

    Human decisions (unmerges, blocks, rules, decided merges) are kept and applied. Run it
    with the processing stopped elsewhere: until it ends, profiles are being rebuilt.
    """
    with sessions() as session, session.begin():
        identity.reset_derived(session)
    events = Processor(sessions, batch_size=settings.process_batch_size, settings=settings).drain()
    with sessions() as session, session.begin():
        decisions = identity.reapply_decisions(session, settings)
        orphans = identity.remove_orphans(session)
    return RebuildResult(events=events, decisions=decisions, orphans=orphans)
