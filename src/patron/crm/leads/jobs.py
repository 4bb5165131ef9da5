"""Background work of leads: rescoring the persons a processing step touched, the refresh
of everyone's scores (after rule changes and retraining, and daily for decay), the nightly
retraining, and the assignment of waiting leads. ``patron.pipeline`` registers them."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from patron.auth.service import Actor
from patron.collect.models import LogEntry
from patron.core.clock import as_utc, utcnow
from patron.core.settings import Settings
from patron.crm.leads import predictive
from patron.crm.leads.assignment import AssignmentReport, assign_leads
from patron.crm.leads.models import LeadScore, ScoringModel
from patron.crm.leads.scoring import CHUNK, Scorer, rescore, scoring_state, train_model
from patron.identity.models import Person, PersonEvent

log = logging.getLogger("patron.leads")

# How often the refresh job looks for rule changes, a new model and stale scores.
REFRESH_SECONDS = 60.0
ASSIGN_BATCH = 1000


def score_touched(session: Session, batch: Sequence[LogEntry]) -> None:
    """Processing step (after ``derive``): rescore the persons this batch's events belong
    to. CRM changes are events too, so a new lifecycle stage rescores its person here.
    Rules and the model are loaded once per step; nothing happens while there are none."""
    scorer = Scorer.load(session)
    if scorer.idle:
        return
    seqs = [event.seq for event in batch]
    persons: list[uuid.UUID] = []
    for start in range(0, len(seqs), 1000):
        persons.extend(
            session.scalars(
                select(PersonEvent.person_id)
                .where(PersonEvent.seq.in_(seqs[start : start + 1000]))
                .distinct()
            )
        )
    rescore(session, persons, scorer=scorer)


# --- refreshing everyone's scores ------------------------------------------------------


@dataclass
class RefreshPlan:
    everyone: bool
    rules_version: int
    model_version: int | None


def _plan(session: Session, settings: Settings, now: datetime, full: bool) -> RefreshPlan:
    state = scoring_state(session)
    model = predictive.current_model(session)
    version = model.version if model else None
    interval = settings.lead_rescore_interval_seconds
    decay_due = bool(interval) and (
        state.rescored_at is None or now - as_utc(state.rescored_at) >= timedelta(seconds=interval)
    )
    changed = (
        state.rules_version != state.scored_rules_version or version != state.scored_model_version
    )
    return RefreshPlan(full or changed or decay_due, state.rules_version, version)


def refresh_scores(
    sessions: sessionmaker[Session], settings: Settings, *, full: bool = False
) -> int:
    """Rescore everyone when the rules or the model changed, when the last full rescore is
    older than ``lead_rescore_interval_seconds`` (decay), or when ``full``; else only the
    stale scores (persons split or replayed since). Each chunk commits on its own, so
    processing and ingest go on meanwhile. Returns how many persons were rescored."""
    now = utcnow()
    with sessions() as session, session.begin():
        plan = _plan(session, settings, now, full)
    if not plan.everyone:
        return _rescore_stale(sessions, now)
    done = _rescore_everyone(sessions, now)
    with sessions() as session, session.begin():
        state = scoring_state(session)
        state.scored_rules_version = plan.rules_version
        state.scored_model_version = plan.model_version
        state.rescored_at = now
    return done


def _rescore_everyone(sessions: sessionmaker[Session], now: datetime) -> int:
    with sessions() as session:
        scorer = Scorer.load(session, now)
        has_rows = session.scalar(select(LeadScore.person_id).limit(1)) is not None
    if scorer.idle and not has_rows:
        return 0
    done, last = 0, None
    while True:
        with sessions() as session, session.begin():
            statement = select(Person.id).where(Person.merged_into.is_(None))
            if last is not None:
                statement = statement.where(Person.id > last)
            ids = list(session.scalars(statement.order_by(Person.id).limit(CHUNK)))
            if not ids:
                return done
            done += rescore(session, ids, scorer=scorer)
            last = ids[-1]


def _rescore_stale(sessions: sessionmaker[Session], now: datetime) -> int:
    done = 0
    for _ in range(10_000):  # a bound, not a limit: every round clears what it read
        with sessions() as session, session.begin():
            ids = list(
                session.scalars(
                    select(LeadScore.person_id).where(LeadScore.stale).distinct().limit(CHUNK)
                )
            )
            if not ids:
                break
            done += rescore(session, ids, scorer=Scorer.load(session, now))
    return done


# --- retraining ------------------------------------------------------------------------


def retrain(
    sessions: sessionmaker[Session], settings: Settings, *, actor: Actor | None = None
) -> tuple[ScoringModel, int]:
    """Train the predictive model now, then rescore everyone with it (nothing is rescored
    when there was too little history). Returns the training and the persons rescored."""
    with sessions() as session, session.begin():
        model = train_model(session, actor=actor)
    rescored = refresh_scores(sessions, settings) if model.status == "trained" else 0
    return model, rescored


def _retrain_job(sessions: sessionmaker[Session], settings: Settings) -> int:
    model, rescored = retrain(sessions, settings)
    if model.status != "trained":
        log.info("lead scoring model not retrained: %s", model.message)
    return rescored


# --- assigning -------------------------------------------------------------------------


@dataclass
class AssignmentSummary:
    assigned: int
    waiting: int
    by_team: dict[str, int]


def assign_waiting(
    sessions: sessionmaker[Session], *, actor: Actor | None = None
) -> AssignmentSummary:
    """Assign every waiting lead, a thousand per transaction; what no team could take is
    counted as waiting (and tried again next time)."""
    total = 0
    by_team: dict[str, int] = {}
    while True:
        with sessions() as session, session.begin():
            report: AssignmentReport = assign_leads(session, actor=actor, limit=ASSIGN_BATCH)
        total += report.assigned
        for team, count in report.by_team.items():
            by_team[team] = by_team.get(team, 0) + count
        if report.assigned < ASSIGN_BATCH:
            return AssignmentSummary(total, report.waiting, by_team)


_last_waiting = [0]


def _assign_job(sessions: sessionmaker[Session], _settings: Settings) -> int:
    summary = assign_waiting(sessions)
    if summary.waiting and summary.waiting != _last_waiting[0]:
        # Said when the number changes, not every ten seconds.
        log.warning("%d leads wait for an owner: no team could take them", summary.waiting)
    _last_waiting[0] = summary.waiting
    return summary.assigned


# (name, interval for the settings, work): registered in pipeline.JOBS.
SCHEDULE: list[
    tuple[str, Callable[[Settings], float], Callable[[sessionmaker[Session], Settings], int]]
] = [
    ("lead-scores", lambda _settings: REFRESH_SECONDS, refresh_scores),
    ("lead-retrain", lambda s: float(s.lead_retrain_interval_seconds), _retrain_job),
    ("lead-assignment", lambda s: float(s.lead_assign_interval_seconds), _assign_job),
]
