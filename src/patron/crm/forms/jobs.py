"""Background work of web forms, which ``pipeline.py`` schedules: retrying the lead steps
that failed, and forgetting rate counts and IP salts that are no longer needed."""

from __future__ import annotations

from sqlalchemy.orm import Session, sessionmaker

from patron.core.clock import utcnow
from patron.core.settings import Settings
from patron.crm.forms import rates
from patron.crm.forms.processing import retry_due

EVERY_SECONDS = 60.0


def every_seconds(_settings: Settings) -> float:
    """Retries are due a minute apart at the soonest."""
    return EVERY_SECONDS


def run_form_jobs(sessions: sessionmaker[Session], _settings: Settings) -> int:
    """Retry due submissions and prune old rate counts and salts; returns the retries that
    succeeded."""
    now = utcnow()
    with sessions() as session, session.begin():
        done = retry_due(session, now=now)
        rates.prune(session, now)
    return done
