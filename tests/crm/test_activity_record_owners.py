"""The owners of their linked records that activities carry, and the counting a rep's and
a manager's activities by them.

The database keeps ``person_owner_id``, ``company_owner_id`` and ``deal_owner_id`` on each
activity (migration 0019). Every kind of write must leave them equal to what the linked
records say: activities written and re-linked, records changing owner one by one and in
bulk, a deleted user's records losing theirs. The parts ``activity_count_arms`` splits a
rep's or a manager's visible activities into must exclude each other and together be
exactly what the row-by-row rule sees, shares and tickets included.
"""

from __future__ import annotations

import random
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from alembic import command
from sqlalchemy import Engine, delete, func, select, text, update
from sqlalchemy.orm import Session

from patron.auth.models import RecordShare, Team, TeamMember, User
from patron.auth.service import Actor, Role
from patron.core.clock import as_utc
from patron.core.db import create_db_engine
from patron.core.migrations import alembic_config, upgrade
from patron.core.settings import Settings
from patron.crm import activities
from patron.crm.access import activity_count_arms, readable_activities
from patron.crm.models import NO_OWNER, Activity, Company, Deal, Pipeline, Stage
from patron.crm.reports import service
from patron.crm.reports.service import ReportFilters
from patron.crm.tickets.models import Ticket
from patron.identity.models import Person

START = datetime(2026, 3, 1, tzinfo=UTC)
KINDS = ("call", "meeting", "note", "email", "task")


@contextmanager
def _engine(database_url: str, tmp_path: Path) -> Iterator[Engine]:
    engine = create_db_engine(Settings(database_url=database_url, data_dir=tmp_path))
    try:
        yield engine
    finally:
        engine.dispose()


def _world(session: Session, rng: random.Random) -> dict[str, list[uuid.UUID]]:
    """Four sales users (two in a team with a manager), persons, companies and deals owned
    by them or by no one, a ticket, and 400 activities linked to any mix of them."""
    users = [User(email=f"u{i}@example.com", name=f"U{i}", role="sales") for i in range(4)]
    manager = User(email="m@example.com", name="M", role="manager")
    session.add_all([*users, manager])
    session.flush()
    team = Team(name="East")
    session.add(team)
    session.flush()
    session.add_all(TeamMember(team_id=team.id, user_id=u.id) for u in (manager, users[1]))
    owners: list[uuid.UUID | None] = [*(u.id for u in users), None]
    persons = [
        Person(id=uuid.uuid4(), created_seq=n, owner_id=rng.choice(owners)) for n in range(40)
    ]
    companies = [
        Company(name=f"C{n}", domain=f"c{n}.example.com", owner_id=rng.choice(owners))
        for n in range(12)
    ]
    session.add_all([*persons, *companies])
    pipeline = Pipeline(name="P")
    session.add(pipeline)
    session.flush()
    stage = Stage(pipeline_id=pipeline.id, name="S", position=0, probability=10)
    session.add(stage)
    session.flush()
    deals = [
        Deal(name=f"D{n}", owner_id=rng.choice(owners), pipeline_id=pipeline.id, stage_id=stage.id)
        for n in range(20)
    ]
    ticket = Ticket(subject="Help", person_id=persons[0].id, created_by="test")
    session.add_all([*deals, ticket])
    session.flush()
    rows = []
    for n in range(400):
        kind = rng.choice(KINDS)
        occurred = START + timedelta(minutes=rng.randrange(0, 60 * 24 * 40))
        rows.append(
            Activity(
                kind=kind,
                subject=f"{kind} {n}",
                owner_id=rng.choice(owners),
                person_id=rng.choice(persons).id if rng.random() < 0.8 else None,
                company_id=rng.choice(companies).id if rng.random() < 0.4 else None,
                deal_id=rng.choice(deals).id if rng.random() < 0.4 else None,
                ticket_id=ticket.id if rng.random() < 0.05 else None,
                created_by="test",
                occurred_at=occurred,
                done_at=occurred + timedelta(hours=5) if kind == "task" else None,
                details={},
            )
        )
    session.add_all(rows)
    session.commit()
    return {
        "users": [u.id for u in users],
        "manager": [manager.id],
        "persons": [p.id for p in persons],
        "companies": [c.id for c in companies],
        "deals": [d.id for d in deals],
        "activities": [a.id for a in rows],
    }


def _stored(session: Session) -> dict[uuid.UUID, tuple[Any, Any, Any]]:
    session.expire_all()
    statement = select(
        Activity.id, Activity.person_owner_id, Activity.company_owner_id, Activity.deal_owner_id
    )
    return {row[0]: tuple(row[1:]) for row in session.execute(statement)}


def _expected(session: Session) -> dict[uuid.UUID, tuple[Any, Any, Any]]:
    """What the columns should hold, from the linked records themselves."""
    session.expire_all()
    owner_of: dict[uuid.UUID, uuid.UUID | None] = {}
    for model in (Person, Company, Deal):
        owner_of.update((i, o) for i, o in session.execute(select(model.id, model.owner_id)))

    def owner(linked: uuid.UUID | None) -> uuid.UUID | None:
        return None if linked is None else owner_of[linked] or NO_OWNER

    links = select(Activity.id, Activity.person_id, Activity.company_id, Activity.deal_id)
    return {row[0]: (owner(row[1]), owner(row[2]), owner(row[3])) for row in session.execute(links)}


def test_every_kind_of_write_keeps_the_record_owners(database_url: str, tmp_path: Path) -> None:
    with _engine(database_url, tmp_path) as engine, Session(engine) as session:
        ids = _world(session, random.Random(7))
        users, persons = ids["users"], ids["persons"]
        stored = _stored(session)
        assert stored == _expected(session)
        # Every shape is there: owned, linked to an unowned record, not linked.
        values = {v for row in stored.values() for v in row}
        assert {None, NO_OWNER, *users} <= values

        # An activity written through the service, then re-linked.
        made = activities.create_activity(
            session,
            actor=None,
            kind="call",
            values={
                "subject": "Hello",
                "direction": "outbound",
                "person_id": persons[0],
                "deal_id": ids["deals"][0],
            },
        )
        session.commit()
        assert _stored(session) == _expected(session)
        activities.update_activity(
            session,
            actor=None,
            activity_id=made.id,
            changes={"person_id": persons[1], "company_id": ids["companies"][0]},
        )
        session.commit()
        assert _stored(session) == _expected(session)

        # Records change owner one by one, in bulk, and to no one.
        for model, key in ((Person, "persons"), (Company, "companies"), (Deal, "deals")):
            record = session.get(model, ids[key][0])
            assert record is not None
            record.owner_id = users[3] if record.owner_id != users[3] else users[2]
            session.commit()
            assert _stored(session) == _expected(session)
            session.execute(update(model).where(model.id.in_(ids[key][1:6])).values(owner_id=None))
            session.execute(
                update(model).where(model.id.in_(ids[key][6:9])).values(owner_id=users[0])
            )
            session.commit()
            assert _stored(session) == _expected(session)

        # Bulk re-links, an unlink, and a change to other columns.
        session.execute(
            update(Activity).where(Activity.kind == "note").values(person_id=persons[2])
        )
        session.execute(update(Activity).where(Activity.kind == "email").values(deal_id=None))
        session.execute(update(Activity).values(subject="renamed"))
        session.commit()
        assert _stored(session) == _expected(session)

        # A user deleted from under their records: those become unowned.
        gone = users[1]
        assert any(gone in row for row in _stored(session).values())
        session.execute(delete(TeamMember).where(TeamMember.user_id == gone))
        session.execute(delete(User).where(User.id == gone))
        session.commit()
        stored = _stored(session)
        assert stored == _expected(session)
        assert not any(gone in row for row in stored.values())


def _actors(session: Session, ids: dict[str, list[uuid.UUID]]) -> list[Actor]:
    users = session.scalars(select(User).where(User.id.in_(ids["users"] + ids["manager"])))
    return [Actor(u.id, u.email, Role(u.role)) for u in users]


def _share(session: Session, record_type: str, record_id: uuid.UUID, **grantee: Any) -> None:
    session.add(
        RecordShare(record_type=record_type, record_id=record_id, created_by="test", **grantee)
    )


def test_the_arms_split_what_a_rep_and_a_manager_see(database_url: str, tmp_path: Path) -> None:
    with _engine(database_url, tmp_path) as engine, Session(engine) as session:
        ids = _world(session, random.Random(11))
        rep, teammate = ids["users"][0], ids["users"][1]
        team = session.scalar(select(Team.id))
        # Shares of every kind, to a user and to a team, each of an activity or a record
        # the grantee would not see otherwise; the ticket is on a shared person.
        rep_actor = Actor(rep, "u0@example.com", Role.sales)
        unseen = select(Activity).where(~readable_activities(rep_actor))
        hidden = session.scalars(unseen.where(Activity.person_id != ids["persons"][0])).first()
        assert hidden is not None
        _share(session, "activity", hidden.id, user_id=rep)
        others = [rep, teammate]
        for model, record_type, grantee in (
            (Person, "person", {"user_id": rep}),
            (Company, "company", {"team_id": team}),
            (Deal, "deal", {"user_id": rep}),
        ):
            theirs = select(model.id).where(model.owner_id.not_in(others))
            record_id = session.scalars(theirs).first()
            assert record_id is not None
            _share(session, record_type, record_id, **grantee)
        session.commit()
        actors = _actors(session, ids)
        assert {a.role for a in actors} == {Role.sales, Role.manager}
        for actor in actors:
            arms = activity_count_arms(session, actor)
            assert arms is not None
            seen = set(session.scalars(select(Activity.id).where(readable_activities(actor))))
            parts = [set(session.scalars(select(Activity.id).where(arm))) for arm in arms]
            assert sum(len(p) for p in parts) == len(set().union(*parts)), actor  # disjoint
            assert set().union(*parts) == seen, actor
            if actor.user_id in (rep, teammate):
                assert 0 < len(seen) < len(ids["activities"])
            # The report by the arms counts what the row-by-row rule counts.
            for since in (None, START + timedelta(days=9, hours=5)):
                filters = ReportFilters(since=since, until=None)
                assert _report(session, actor, filters) == _by_rule(session, actor, filters)
        # Who sees everything, and support, count the other ways.
        assert activity_count_arms(session, None) is None
        for role in (Role.admin, Role.support, Role.marketing):
            assert activity_count_arms(session, Actor(rep, "x@example.com", role)) is None


Counts = dict[uuid.UUID | None, tuple[int, ...]]


def _report(session: Session, actor: Actor, filters: ReportFilters) -> Counts:
    """The report per owner: calls, meetings, notes, emails, tasks, completed, total."""
    rows = service.activities_per_owner(session, actor=actor, filters=filters)
    return {
        r.owner_id: (
            r.calls,
            r.meetings,
            r.notes,
            r.emails,
            r.tasks_created,
            r.tasks_completed,
            r.total,
        )
        for r in rows
    }


def _by_rule(session: Session, actor: Actor, filters: ReportFilters) -> Counts:
    """The report as the row-by-row rule has it, counted by hand."""

    def inside(moment: datetime | None) -> bool:
        return moment is not None and (filters.since is None or as_utc(moment) >= filters.since)

    counts: dict[uuid.UUID | None, dict[str, list[int]]] = {}
    for activity in session.scalars(select(Activity).where(readable_activities(actor))):
        found = counts.setdefault(activity.owner_id, {}).setdefault(activity.kind, [0, 0])
        found[0] += inside(activity.occurred_at)
        found[1] += inside(activity.done_at)
    out: Counts = {}
    for owner_id, kinds in counts.items():
        logged = [kinds.get(k, [0, 0])[0] for k in ("call", "meeting", "note", "email", "task")]
        completed = kinds.get("task", [0, 0])[1]
        if any(logged) or completed:
            out[owner_id] = (*logged, completed, sum(logged))
    return out


def test_an_owner_change_racing_a_new_activity_reaches_it(
    database_url: str, tmp_path: Path
) -> None:
    """A person changes owner while another transaction is writing an activity on them:
    the activity ends up with the new owner, whichever commits first. On PostgreSQL the
    activity's trigger reads the person FOR SHARE, so the owner change waits for it and
    then sees the activity; without that, each missed the other's row."""
    if not database_url.startswith("postgresql"):
        pytest.skip("SQLite has one writer at a time: there is no race to lose")
    with _engine(database_url, tmp_path) as engine:
        with Session(engine) as setup:
            first, second = (User(email=f"race{i}@example.com", role="sales") for i in (1, 2))
            setup.add_all([first, second])
            setup.flush()
            person = Person(id=uuid.uuid4(), created_seq=1, owner_id=first.id)
            setup.add(person)
            setup.commit()
            person_id, new_owner = person.id, second.id
        writer = Session(engine)
        activity = Activity(
            kind="note", body="x", person_id=person_id, created_by="test", details={}
        )
        writer.add(activity)
        writer.flush()  # the trigger has read the person; the transaction stays open
        activity_id = activity.id

        def change_owner() -> None:
            with Session(engine) as other:
                other.execute(
                    update(Person).where(Person.id == person_id).values(owner_id=new_owner)
                )
                other.commit()

        racer = threading.Thread(target=change_owner)
        racer.start()
        waiting = (
            select(func.count())
            .where(text("wait_event_type = 'Lock'"))
            .select_from(text("pg_stat_activity"))
        )
        with engine.connect() as watcher:
            for _ in range(200):  # until the owner change waits on the lock, or is done
                if not racer.is_alive() or watcher.scalar(waiting):
                    break
                time.sleep(0.05)
        writer.commit()
        writer.close()
        racer.join(timeout=30)
        assert not racer.is_alive()
        with Session(engine) as check:
            stored = check.scalar(
                select(Activity.person_owner_id).where(Activity.id == activity_id)
            )
        assert stored == new_owner


def test_the_migration_fills_the_owners_of_activities_it_finds(
    empty_database_url: str, tmp_path: Path
) -> None:
    """Activities written before the columns existed get them: downgrading drops them,
    upgrading fills them from the linked records."""
    with _engine(empty_database_url, tmp_path) as engine:
        upgrade(engine)
        with Session(engine) as session:
            _world(session, random.Random(3))
            filled = _stored(session)
            assert filled == _expected(session)
        config = alembic_config(engine)
        command.downgrade(config, "0018")
        command.upgrade(config, "head")
        with Session(engine) as session:
            assert _stored(session) == filled
            # And the triggers are back.
            person = session.scalars(select(Person).where(Person.owner_id.is_not(None))).first()
            assert person is not None
            person.owner_id = None
            session.commit()
            assert _stored(session) == _expected(session)
