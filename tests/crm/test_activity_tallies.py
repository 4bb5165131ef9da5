"""The activity tallies the database keeps, and the activity report that reads them.

Every kind of write to ``activities`` must leave ``activity_tallies`` equal to a recount:
the services, bulk statements, cascades from deleted deals, and the owner a deleted user's
activities lose. The report must then give an admin over any range what counting the
activities gives, whole days from the tallies and the hours at either end counted.
"""

from __future__ import annotations

import random
import uuid
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy import delete, func, select, update
from sqlalchemy.orm import Session

from patron.auth.models import User
from patron.auth.service import Actor, Role
from patron.core.clock import as_utc
from patron.core.db import create_db_engine
from patron.core.settings import Settings
from patron.crm import activities, deals, pipelines
from patron.crm.models import NO_OWNER, Activity, ActivityTally, Deal
from patron.crm.reports import service
from patron.crm.reports.service import ReportFilters

KINDS = ("call", "meeting", "note", "email", "task")
START = datetime(2026, 3, 1, tzinfo=UTC)


def _recount(session: Session) -> Counter[tuple[uuid.UUID, str, str, str]]:
    """The tallies as the activities say they should be: (owner, kind, day, measure)."""
    found: Counter[tuple[uuid.UUID, str, str, str]] = Counter()
    for owner_id, kind, occurred_at, done_at in session.execute(
        select(Activity.owner_id, Activity.kind, Activity.occurred_at, Activity.done_at)
    ):
        owner = owner_id or NO_OWNER
        found[(owner, kind, as_utc(occurred_at).date().isoformat(), "logged")] += 1
        if done_at is not None:
            found[(owner, kind, as_utc(done_at).date().isoformat(), "completed")] += 1
    return found


def _tallies(session: Session) -> Counter[tuple[uuid.UUID, str, str, str]]:
    found: Counter[tuple[uuid.UUID, str, str, str]] = Counter()
    for row in session.scalars(select(ActivityTally)):
        for measure in ("logged", "completed"):
            if getattr(row, measure):
                found[(row.owner_id, row.kind, row.day.isoformat(), measure)] += getattr(
                    row, measure
                )
    return found


def _users(session: Session) -> list[uuid.UUID]:
    users = [User(email=f"u{i}@example.com", name=f"User {i}", role="sales") for i in range(3)]
    session.add_all(users)
    session.flush()
    return [u.id for u in users]


def _seed(session: Session, owners: list[uuid.UUID | None], rng: random.Random) -> None:
    rows = []
    for n in range(300):
        kind = rng.choice(KINDS)
        occurred = START + timedelta(minutes=rng.randrange(0, 60 * 24 * 40))
        done = occurred + timedelta(hours=rng.randrange(1, 200)) if kind == "task" else None
        rows.append(
            Activity(
                kind=kind,
                subject=f"{kind} {n}",
                owner_id=rng.choice(owners),
                created_by="test",
                occurred_at=occurred,
                done_at=done if done and rng.random() < 0.6 else None,
                details={},
            )
        )
    session.add_all(rows)
    session.flush()


@contextmanager
def _seeded(
    database_url: str, tmp_path: Path, seed: int
) -> Iterator[tuple[Session, list[uuid.UUID | None]]]:
    """A session on a database with three users and 300 activities of theirs (and of no
    one), committed; and the owners (None among them)."""
    engine = create_db_engine(Settings(database_url=database_url, data_dir=tmp_path))
    try:
        with Session(engine) as session:
            owners: list[uuid.UUID | None] = [*_users(session), None]
            _seed(session, owners, random.Random(seed))
            session.commit()
            yield session, owners
    finally:
        engine.dispose()


def test_every_kind_of_write_keeps_the_tallies(database_url: str, tmp_path: Path) -> None:
    with _seeded(database_url, tmp_path, 5) as (session, owners):
        assert _tallies(session) == _recount(session)
        assert sum(_tallies(session).values()) > 300

        # Through the services: log, change owner and time, complete, reopen, delete.
        pipeline = pipelines.create_pipeline(
            session,
            name="P",
            rotting_days=None,
            stages=[pipelines.StageSpec("Only", 50)],
            actor=None,
        )
        session.flush()
        deal = deals.create_deal(
            session, actor=None, values={"name": "D", "pipeline_id": pipeline.id}
        )
        made = activities.create_activity(
            session,
            actor=None,
            kind="task",
            values={"subject": "Follow up", "owner_id": owners[0], "deal_id": deal.id},
        )
        activities.update_activity(
            session,
            actor=None,
            activity_id=made.id,
            changes={"owner_id": owners[1], "occurred_at": START, "done": True},
        )
        session.flush()
        assert _tallies(session) == _recount(session)
        activities.update_activity(
            session, actor=None, activity_id=made.id, changes={"done": False}
        )
        victim = session.scalars(select(Activity.id).where(Activity.id != made.id)).first()
        assert victim is not None
        activities.delete_activity(session, actor=None, activity_id=victim)
        session.commit()
        assert _tallies(session) == _recount(session)

        # Bulk statements: many rows move owner and day, some finish, some go.
        session.execute(
            update(Activity)
            .where(Activity.kind == "call")
            .values(owner_id=owners[2], occurred_at=START + timedelta(days=5, hours=23))
        )
        session.execute(
            update(Activity)
            .where(Activity.kind == "task", Activity.done_at.is_(None))
            .values(done_at=START + timedelta(days=3))
        )
        session.execute(delete(Activity).where(Activity.kind == "note"))
        # A change to other columns leaves the tallies as they are.
        session.execute(update(Activity).values(subject="renamed"))
        session.commit()
        assert _tallies(session) == _recount(session)

        # A deal deleted with its activities; a user deleted from under theirs.
        session.execute(update(Activity).where(Activity.kind == "meeting").values(deal_id=deal.id))
        session.commit()
        assert _tallies(session) == _recount(session)
        session.execute(delete(Deal).where(Deal.id == deal.id))
        session.execute(delete(User).where(User.id == owners[0]))
        session.commit()
        assert session.scalar(select(func.count()).where(Activity.kind == "meeting")) == 0
        assert session.scalar(select(func.count()).where(Activity.owner_id.is_(None))) > 0
        assert _tallies(session) == _recount(session)


def _expected(
    session: Session, since: datetime | None, until: datetime | None
) -> dict[uuid.UUID | None, tuple[int, int, int]]:
    """An admin's report by hand: per owner, logged in the range, tasks among them, tasks
    completed in the range."""
    out: dict[uuid.UUID | None, list[int]] = {}

    def inside(moment: datetime | None) -> bool:
        if moment is None:
            return False
        moment = as_utc(moment)
        return (since is None or moment >= since) and (until is None or moment < until)

    for owner_id, kind, occurred_at, done_at in session.execute(
        select(Activity.owner_id, Activity.kind, Activity.occurred_at, Activity.done_at)
    ):
        counts = out.setdefault(owner_id, [0, 0, 0])
        if inside(occurred_at):
            counts[0] += 1
            counts[1] += kind == "task"
        if kind == "task" and inside(done_at):
            counts[2] += 1
    return {owner: (c[0], c[1], c[2]) for owner, c in out.items() if any(c)}


def test_the_report_over_tallies_counts_what_the_activities_say(
    database_url: str, tmp_path: Path
) -> None:
    with _seeded(database_url, tmp_path, 11) as (session, owners):
        admin = Actor(uuid.uuid4(), "admin@example.com", Role.admin)
        ranges: list[tuple[datetime | None, datetime | None]] = [
            (None, None),
            (START + timedelta(days=3, hours=7, minutes=13), None),
            (None, START + timedelta(days=20, hours=15)),
            (START + timedelta(days=2, hours=5), START + timedelta(days=9, hours=1)),
            (START + timedelta(days=4), START + timedelta(days=11)),  # whole days only
            (START + timedelta(days=6, hours=2), START + timedelta(days=6, hours=20)),
            (START + timedelta(days=6, hours=23), START + timedelta(days=7, hours=1)),
        ]
        for since, until in ranges:
            rows = service.activities_per_owner(
                session, actor=admin, filters=ReportFilters(since=since, until=until)
            )
            got = {r.owner_id: (r.total, r.tasks_created, r.tasks_completed) for r in rows}
            assert got == _expected(session, since, until), (since, until)
            named = {r.owner_id: r.owner for r in rows}
            assert all(named[o] for o in named if o is not None)
            assert None not in named or named[None] is None
        only = ReportFilters(since=ranges[3][0], until=ranges[3][1], owner_id=owners[1])
        rows = service.activities_per_owner(session, actor=admin, filters=only)
        assert [r.owner_id for r in rows] == [owners[1]]
        assert rows[0].total == _expected(session, *ranges[3])[owners[1]][0]
