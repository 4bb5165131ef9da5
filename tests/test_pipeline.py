"""The processing loop reads the log in order, keeps its cursor, and resumes after restarts."""

from __future__ import annotations

import time

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select
from sqlalchemy.orm import Session

from patron import pipeline
from patron.collect.models import Event, EventCatalogEntry
from patron.core.runtime import Runtime
from patron.pipeline import Job, Processor, position
from tests.conftest import basic


def send(client: TestClient, write_key: str, names: list[str]) -> None:
    batch = [{"type": "track", "userId": "u", "event": name} for name in names]
    assert client.post("/v1/batch", auth=basic(write_key), json={"batch": batch}).status_code == 200


def catalog(db: Session) -> dict[str, int]:
    db.expire_all()
    db.rollback()
    return {e.name: e.count for e in db.scalars(select(EventCatalogEntry))}


def test_processor_resumes_from_its_cursor(
    client: TestClient, write_key: str, runtime: Runtime, db: Session
) -> None:
    send(client, write_key, ["A"] * 7 + ["B"] * 3)
    first = Processor(runtime.sessions, batch_size=4)
    assert first.step() == 4
    assert first.step() == 4
    # A new processor (a restart) picks up where the cursor stands, not from the start.
    restarted = Processor(runtime.sessions, batch_size=4)
    assert restarted.drain() == 2
    assert catalog(db) == {"A": 7, "B": 3}
    send(client, write_key, ["B"])
    assert Processor(runtime.sessions).drain() == 1
    assert catalog(db) == {"A": 7, "B": 4}
    last_seq = db.scalar(select(Event.seq).order_by(Event.seq.desc()).limit(1))
    assert position(db) == last_seq


def test_failed_step_rolls_back_state_and_cursor(
    client: TestClient, write_key: str, runtime: Runtime, db: Session
) -> None:
    send(client, write_key, ["A", "B"])

    def explode(_session: Session, _events: object) -> None:
        raise RuntimeError("handler failed")

    broken = Processor(runtime.sessions, handlers=[*Processor(runtime.sessions).handlers, explode])
    with pytest.raises(RuntimeError, match="handler failed"):
        broken.step()
    assert catalog(db) == {}
    assert position(db) == 0
    assert Processor(runtime.sessions).drain() == 2
    assert catalog(db) == {"A": 1, "B": 1}


def test_due_jobs_run_on_their_interval_and_a_failure_spares_the_others(
    runtime: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    ran: list[str] = []

    def broken(_sessions: object, _settings: object) -> int:
        ran.append("broken")
        raise RuntimeError("job failed")

    def counting(sessions: object, _settings: object) -> int:
        assert sessions is runtime.sessions
        ran.append("counting")
        return 1

    jobs = [
        Job("broken", lambda _s: 60.0, broken),
        Job("counting", lambda _s: 60.0, counting),
        Job("off", lambda _s: 0.0, counting),
    ]
    monkeypatch.setattr(pipeline, "JOBS", jobs)
    processor = Processor(runtime.sessions)
    now = time.monotonic()
    last_run = {"broken": now - 61, "counting": now - 61, "off": now - 10_000}
    processor.run_due_jobs(last_run)
    assert ran == ["broken", "counting"]
    # Both are stamped as run, so neither repeats before its interval is up again.
    processor.run_due_jobs(last_run)
    assert ran == ["broken", "counting"]


def test_running_steps_hold_the_lock_briefly_while_ingest_writes_and_longer_otherwise() -> None:
    # 1,000 events took 0.1 s: 10,000 a second.
    busy = pipeline.next_step_size(1000, 0.1, most=2000, ingest_writing=True)
    quiet = pipeline.next_step_size(1000, 0.1, most=2000, ingest_writing=False)
    assert busy == int(10_000 * pipeline.STEP_SECONDS)
    assert quiet == 2000  # 0.25 s would be 2,500 events; the batch size caps it
    # Growth at most doubles a step, and a slow step never goes below the minimum.
    assert pipeline.next_step_size(100, 0.001, most=2000, ingest_writing=False) == 200
    assert pipeline.next_step_size(100, 60.0, most=2000, ingest_writing=True) == (
        pipeline.MIN_STEP_EVENTS
    )
