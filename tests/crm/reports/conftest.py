"""A small sales history built through the services, with its dates set by hand, so every
report has exact numbers to check (worked out in the comments of the tests).

Sales (Qualified 10%, Proposal 50%, Negotiation 80%) and Renewals (Review 30%, Signed 90%).
Alice (sales, in Maya's team) and Bob (sales) own deals; one deal has no owner:

    deal       owner  pipeline  amount     stays (entered)                         end
    won_big    alice  Sales     1000 EUR   Q 01-01, P 01-11, N 01-21               won 01-31
    lost       alice  Sales     3000 EUR   Q 01-01, P 01-05                        lost 01-25
    quick_win  bob    Sales      500 USD   Q 01-10                                 won 01-16
    proposal   alice  Sales     2000 EUR   Q 02-01, P 02-11                        open
    fresh      bob    Sales     1500 EUR   Q 02-10                                 open
    bounced    alice  Sales      800 EUR   Q 01-01, N 01-03, P 01-13               open
    renewal    bob    Renewals  (none)     R 01-01                                 won 01-21
    pool       -      Sales      700 EUR   Q 02-20                                 open
    last_year  alice  Sales     1200 EUR   Q 2025-12-01                            won 2025-12-31
    undated    bob    Sales    250.5 USD   Q 02-15                                 open

Dates are 2026 unless said; each deal was created when it entered its first stage. The
reports' "now" is 2026-03-01.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import pytest
from sqlalchemy import select, update
from sqlalchemy.orm import Session

from patron.auth import service as auth
from patron.auth.models import Role
from patron.auth.service import Actor
from patron.core.runtime import Runtime
from patron.crm import activities, deals, pipelines
from patron.crm.models import Activity, Deal, DealStageVisit
from patron.crm.pipelines import StageSpec

NOW = datetime(2026, 3, 1, tzinfo=UTC)


def at(month: int, day: int, year: int = 2026) -> datetime:
    return datetime(year, month, day, tzinfo=UTC)


@dataclass
class Sales:
    actors: dict[str, Actor] = field(default_factory=dict)
    headers: dict[str, dict[str, str]] = field(default_factory=dict)
    pipelines: dict[str, uuid.UUID] = field(default_factory=dict)
    stages: dict[str, uuid.UUID] = field(default_factory=dict)
    deals: dict[str, uuid.UUID] = field(default_factory=dict)

    def id(self, who: str) -> str:
        return str(self.actors[who].user_id)


# name: (owner, pipeline, amount, currency, stays, end, expected close); dates are M-D in
# 2026, or Y-M-D.
DEALS: dict[str, tuple[Any, ...]] = {
    "won_big": ("alice", "Sales", 1000, "EUR", "Q 1-1, P 1-11, N 1-21", "won 1-31", None),
    "lost": ("alice", "Sales", 3000, "EUR", "Q 1-1, P 1-5", "lost 1-25", None),
    "quick_win": ("bob", "Sales", 500, "USD", "Q 1-10", "won 1-16", None),
    "proposal": ("alice", "Sales", 2000, "EUR", "Q 2-1, P 2-11", None, "3-20"),
    "fresh": ("bob", "Sales", 1500, "EUR", "Q 2-10", None, "4-2"),
    "bounced": ("alice", "Sales", 800, "EUR", "Q 1-1, N 1-3, P 1-13", None, "4-15"),
    "renewal": ("bob", "Renewals", None, None, "R 1-1", "won 1-21", None),
    "pool": (None, "Sales", 700, "EUR", "Q 2-20", None, "3-10"),
    "last_year": ("alice", "Sales", 1200, "EUR", "Q 2025-12-1", "won 2025-12-31", None),
    "undated": ("bob", "Sales", 250.5, "USD", "Q 2-15", None, None),
}


def day(text: str) -> datetime:
    """``M-D`` in 2026, or ``Y-M-D``."""
    parts = [int(p) for p in text.split("-")]
    year, month, dom = parts if len(parts) == 3 else [2026, *parts]
    return datetime(year, month, dom, tzinfo=UTC)


USERS = {
    "admin": ("admin", "Ada Admin"),
    "manager": ("manager", "Maya Manager"),
    "alice": ("sales", "Alice Rep"),
    "bob": ("sales", "Bob Rep"),
    "support": ("support", "Sue Support"),
    "marketing": ("marketing", "Mo Marketing"),
    "analyst": ("analyst", "Ann Analyst"),
}


def _users(session: Session, sales: Sales) -> None:
    for who, (role, name) in USERS.items():
        user = auth.create_user(session, email=f"{who}@example.com", role=role, name=name)
        _, secret = auth.create_token(session, user=user)
        sales.actors[who] = Actor(user.id, user.email, Role(role))
        sales.headers[who] = {"Authorization": f"Bearer {secret}"}
    admin = sales.actors["admin"]
    team = auth.create_team(session, name="Field sales", actor=admin)
    for who in ("manager", "alice"):
        auth.add_member(session, team_id=team.id, user_id=sales.actors[who].user_id, actor=admin)


def _pipelines(session: Session, sales: Sales) -> None:
    admin = sales.actors["admin"]
    shapes = {
        "Sales": [("Q", "Qualified", 10), ("P", "Proposal", 50), ("N", "Negotiation", 80)],
        "Renewals": [("R", "Review", 30), ("S", "Signed", 90)],
    }
    for name, stages in shapes.items():
        specs = [StageSpec(name=label, probability=p) for _, label, p in stages]
        made = pipelines.create_pipeline(
            session, name=name, rotting_days=None, stages=specs, actor=admin
        )
        sales.pipelines[name] = made.id
        for (short, _, _), stage in zip(stages, pipelines.stages_of(session, made.id), strict=True):
            sales.stages[short] = stage.id


def _deal(session: Session, sales: Sales, name: str, spec: tuple[Any, ...]) -> uuid.UUID:
    owner, pipeline, amount, currency, stays_text, end_text, close = spec
    stays = [(stage, day(when)) for stage, when in (s.split() for s in stays_text.split(", "))]
    end = (end_text.split()[0], day(end_text.split()[1])) if end_text else None
    admin = sales.actors["admin"]
    values: dict[str, Any] = {
        "name": name,
        "pipeline_id": sales.pipelines[pipeline],
        "owner_id": sales.actors[owner].user_id if owner else None,
        "amount": amount,
        "currency": currency,
        "expected_close_date": day(close).date() if close else None,
    }
    deal = deals.create_deal(session, actor=admin, values=values)
    for stage, _ in stays[1:]:
        changes = {"stage_id": sales.stages[stage]}
        deals.update_deal(session, actor=admin, deal_id=deal.id, changes=changes)
    if end is not None:
        changes = {"status": end[0], **({"lost_reason": "price"} if end[0] == "lost" else {})}
        deals.update_deal(session, actor=admin, deal_id=deal.id, changes=changes)
    _backdate(session, deal.id, [when for _, when in stays], end[1] if end else None)
    return deal.id


def _backdate(
    session: Session, deal_id: uuid.UUID, entered: Sequence[datetime], closed: datetime | None
) -> None:
    """Give the deal's stays and dates the history of the table above; an ended stay's
    end and length move with it (its outcome stays what the deal service recorded)."""
    visits = session.scalars(
        select(DealStageVisit).where(DealStageVisit.deal_id == deal_id).order_by(DealStageVisit.id)
    ).all()
    assert len(visits) == len(entered)
    for i, visit in enumerate(visits):
        visit.entered_at = entered[i]
        visit.left_at = entered[i + 1] if i + 1 < len(entered) else None
        ended = visit.left_at or (closed if visit.outcome in ("won", "lost") else None)
        if ended is not None:
            visit.ended_at = max(ended, visit.entered_at)
            visit.seconds = round((visit.ended_at - visit.entered_at).total_seconds())
    session.execute(
        update(Deal).where(Deal.id == deal_id).values(created_at=entered[0], closed_at=closed)
    )


def _activities(session: Session, sales: Sales) -> None:
    """Alice: 2 calls, a meeting, a note, 2 tasks (one done 02-05) in 2026, an email in
    2025; Bob: a call in 2026 and a task from 2025 done 01-02; Ada: a note on the pool deal."""
    a, b = sales.actors["alice"], sales.actors["bob"]
    on_won, on_quick = sales.deals["won_big"], sales.deals["quick_win"]
    call = {"direction": "outbound"}
    admin, pool = sales.actors["admin"], sales.deals["pool"]
    logged: list[tuple[Actor, str, dict[str, Any]]] = [
        (a, "call", {**call, "deal_id": on_won, "occurred_at": at(1, 5)}),
        (a, "call", {**call, "deal_id": on_won, "occurred_at": at(1, 20)}),
        (a, "meeting", {"subject": "Demo", "deal_id": on_won, "starts_at": at(1, 10)}),
        (a, "note", {"body": "Keen", "deal_id": on_won, "occurred_at": at(2, 2)}),
        (a, "task", {"subject": "Offer", "deal_id": on_won, "occurred_at": at(1, 3), "done": True}),
        (a, "task", {"subject": "Follow up", "deal_id": on_won, "occurred_at": at(1, 4)}),
        (a, "email", {"subject": "Hello", "deal_id": on_won, "occurred_at": at(12, 15, 2025)}),
        (b, "call", {**call, "deal_id": on_quick, "occurred_at": at(1, 7)}),
        (b, "task", {"subject": "Ask", "deal_id": on_quick, "occurred_at": at(12, 20, 2025)}),
        (admin, "note", {"body": "Whose?", "deal_id": pool, "occurred_at": at(1, 15)}),
    ]
    for actor, kind, values in logged:
        if kind == "meeting":
            values["occurred_at"] = values["starts_at"]
        made = activities.create_activity(session, actor=actor, kind=kind, values=values)
        # Alice's offer was sent on 02-05; Bob's 2025 task was done on 01-02.
        done = {"Offer": at(2, 5), "Ask": at(1, 2)}.get(made.subject)
        if done is not None:
            session.execute(update(Activity).where(Activity.id == made.id).values(done_at=done))


@pytest.fixture
def sales(runtime: Runtime) -> Sales:
    built = Sales()
    with runtime.sessions() as session:
        _users(session, built)
        _pipelines(session, built)
        for name, spec in DEALS.items():
            built.deals[name] = _deal(session, built, name, spec)
        _activities(session, built)
        session.commit()
    return built
