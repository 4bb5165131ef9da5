"""Background work of workflow rules: doing the runs that are due."""

from __future__ import annotations

import logging
import threading
from collections import Counter

from sqlalchemy.orm import Session, sessionmaker

from patron.core.settings import Settings
from patron.crm.workflows.engine import anything_due, run_due

log = logging.getLogger("patron.workflows")
# Rounds of ``run_until_idle``: a chain of runs is at most workflow_max_depth long, so this
# only guards against a bug.
MAX_ROUNDS = 1000

_worker: threading.Thread | None = None
_worker_lock = threading.Lock()


def run_workflows(sessions: sessionmaker[Session], settings: Settings) -> int:
    """The pipeline JOB: when runs are due, do them in a thread of their own (unless one is
    at it already), so that a slow webhook receiver never holds up processing the event
    log. Returns 1 when it started that thread."""
    global _worker
    with _worker_lock:
        if _worker is not None and _worker.is_alive():
            return 0
        if not anything_due(sessions):
            return 0
        _worker = threading.Thread(
            target=_work, args=(sessions, settings), name="patron-workflows", daemon=True
        )
        _worker.start()
    return 1


def _work(sessions: sessionmaker[Session], settings: Settings) -> None:
    try:
        run_until_idle(sessions, settings)
    except Exception:  # the next tick starts again; a claimed run comes back after its lease
        log.exception("doing workflow runs failed")


def wait(timeout: float | None = None) -> None:
    """Wait for the thread :func:`run_workflows` started (if any) to finish."""
    worker = _worker
    if worker is not None:
        worker.join(timeout)


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
