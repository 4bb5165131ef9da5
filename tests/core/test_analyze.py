"""The planner's statistics: refreshed on demand and by the idle processor's job."""

from __future__ import annotations

from sqlalchemy import text

from patron.core.db import analyze
from patron.core.runtime import Runtime
from patron.pipeline import JOBS
from tests.conftest import MakePerson


def test_analyze_gives_the_planner_statistics(runtime: Runtime, make_person: MakePerson) -> None:
    for n in range(3):
        make_person(f"s{n}@example.com", name=f"Stat {n}")
    analyze(runtime.engine)
    with runtime.engine.connect() as connection:
        if runtime.engine.dialect.name == "sqlite":
            rows = connection.execute(
                text("SELECT count(*) FROM sqlite_stat1 WHERE tbl = 'persons'")
            ).scalar()
        else:
            rows = connection.execute(
                text("SELECT count(*) FROM pg_stats WHERE tablename = 'persons'")
            ).scalar()
            # The event log too: scoring reads a person's events through person_events.
            logged = connection.execute(
                text(
                    "SELECT count(DISTINCT tablename) FROM pg_stats WHERE tablename IN "
                    "('events', 'person_events')"
                )
            ).scalar()
            assert logged == 2
    assert rows
    job = next(j for j in JOBS if j.name == "analyze")
    assert job.every_seconds(runtime.settings) == 3600
    assert job.run(runtime.sessions, runtime.settings) == 1
