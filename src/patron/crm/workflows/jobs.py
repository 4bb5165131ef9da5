"""Background work of workflow rules: running the runs that are due."""

from __future__ import annotations

from collections import Counter

from sqlalchemy.orm import Session, sessionmaker

from patron.core.settings import Settings
from patron.crm.workflows.engine import run_due

# Rounds of ``run_until_idle``: a chain of runs is at most workflow_max_depth long, so this
# only guards against a bug.
MAX_ROUNDS = 1000


def run_workflows(sessions: sessionmaker[Session], settings: Settings) -> int:
    """The pipeline JOB: run what is due now; returns how many runs it handled."""
    return sum(run_due(sessions, settings).values())


def run_until_idle(sessions: sessionmaker[Session], settings: Settings) -> Counter[str]:
    """Run what is due, and what those runs fired, until nothing is due (retries that wait
    for later stay waiting); returns how many runs ended in each status."""
    total: Counter[str] = Counter()
    for _ in range(MAX_ROUNDS):
        done = run_due(sessions, settings)
        if not done:
            break
        total.update(done)
    return total
