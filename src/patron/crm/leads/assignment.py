"""Lead assignment: teams' members with capacity, weight and availability; rules that send
leads to teams; weighted round robin within a team; the assignment log; rebalancing.

A lead waits for an owner while it is live, not archived, unowned and in lifecycle stage
lead, marketingqualifiedlead or salesqualifiedlead. Leads are taken highest score first
(visible lead score, then predictive score, then the oldest). Each goes to its preferred
team if the caller named one, else to the team of the first rule (by priority) it matches,
else to the default team; a team that cannot take it (nobody available with capacity)
passes it on to the default team, and a lead no team can take stays waiting, reported,
and is tried again on the next run.

Within a team, members are picked by stride scheduling, a weighted round robin whose state
survives restarts: each member has a pass, the lowest pass gets the next lead, and picking
adds 1/weight to it (weight 2: twice the leads). The team's clock is the pass of the last
pick; a member who joins, or comes back from being unavailable or full, starts at the clock
rather than at an old low pass, so nobody catches up in a burst. While assigning, the teams'
rows are locked (PostgreSQL), so concurrent runs take turns and never pick the same lead.

Capacity counts the leads a member received (assignments and rebalances, any team) in the
last 30 days.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, and_, exists, func, or_, select, true
from sqlalchemy.orm import Session, aliased

from patron.auth.models import Role, Team, TeamMember, User
from patron.auth.service import Actor, get_team, record_audit
from patron.core.clock import utcnow
from patron.core.dialect import insert_ignoring_conflicts, lock_row_for_update
from patron.core.errors import Conflict, Forbidden, InvalidInput, NotFound
from patron.core.pagination import Field, ListQuery, Page, keyset_page
from patron.crm import contacts
from patron.crm.leads.conditions import (
    Condition,
    Facts,
    describe_all,
    evaluate,
    load_facts,
    parse_conditions,
    stored_conditions,
)
from patron.crm.leads.models import (
    LEAD_SCORE,
    PREDICTIVE_SCORE,
    AssignmentMember,
    AssignmentRule,
    AssignmentTeam,
    LeadAssignment,
    LeadScore,
)
from patron.crm.models import Activity
from patron.crm.records import jsonable
from patron.identity.models import Person
from patron.profiles.access import readable_persons

LEAD_STAGES = ("lead", "marketingqualifiedlead", "salesqualifiedlead")
WINDOW = timedelta(days=30)
MAX_WEIGHT = 100
MAX_CAPACITY = 1_000_000
CHUNK = 500
REPORT_LIMIT = 100
MATCH_SAMPLE = 50_000
RULE_RECORD = "assignment_rule"
TEAM_RECORD = "team"


# --- who may do what -------------------------------------------------------------------


def _require_admin(actor: Actor | None) -> None:
    if actor is not None and actor.role is not Role.admin:
        raise Forbidden("only admins can do this")


def _require_manager(actor: Actor | None) -> None:
    if actor is not None:
        actor.require(Role.manager)


def _require_team_manager(session: Session, actor: Actor | None, team_id: uuid.UUID) -> None:
    """Admins manage every team's assignment; managers the teams they belong to."""
    _require_manager(actor)
    if actor is None or actor.role is Role.admin:
        return
    if session.get(TeamMember, (team_id, actor.user_id)) is None:
        raise Forbidden("managers change the assignment of their own teams only")


def _team(session: Session, team_id: Any, *, field_name: str = "team_id") -> Team:
    """A team a body refers to: an unknown one is bad input (400), not a missing page."""
    if not isinstance(team_id, uuid.UUID):
        try:
            team_id = uuid.UUID(str(team_id))
        except ValueError as exc:
            raise InvalidInput("team_id is a team's id", field=field_name) from exc
    team = session.get(Team, team_id)
    if team is None:
        raise InvalidInput(f"no team {team_id}", field=field_name)
    return team


# --- teams and their members -----------------------------------------------------------


@dataclass
class MemberView:
    user_id: uuid.UUID
    email: str
    name: str
    capacity: int | None
    weight: int
    available: bool
    assigned_30d: int


@dataclass
class TeamView:
    team_id: uuid.UUID
    name: str
    is_default: bool
    members: list[MemberView]


def _loads(session: Session, now: datetime) -> dict[uuid.UUID, int]:
    """Leads each user received in the last 30 days (the capacity window)."""
    rows = session.execute(
        select(LeadAssignment.to_owner_id, func.count())
        .where(LeadAssignment.at >= now - WINDOW, LeadAssignment.to_owner_id.is_not(None))
        .group_by(LeadAssignment.to_owner_id)
    )
    return {owner: int(n) for owner, n in rows if owner is not None}


def list_teams(session: Session, *, team_id: uuid.UUID | None = None) -> list[TeamView]:
    """Every team (or one) with its assignment settings and each member's 30-day load."""
    now = utcnow()
    loads = _loads(session, now)
    settings = {(r.team_id, r.user_id): r for r in session.scalars(select(AssignmentMember))}
    defaults = set(
        session.scalars(select(AssignmentTeam.team_id).where(AssignmentTeam.is_default.is_(True)))
    )
    statement = select(Team).order_by(Team.name)
    if team_id is not None:
        statement = statement.where(Team.id == team_id)
    members = session.execute(
        select(TeamMember.team_id, User)
        .join(User, User.id == TeamMember.user_id)
        .order_by(TeamMember.created_at, User.email)
    ).all()
    out = []
    for team in session.scalars(statement):
        views = []
        for owner_team, user in members:
            if owner_team != team.id:
                continue
            row = settings.get((team.id, user.id))
            views.append(
                MemberView(
                    user.id,
                    user.email,
                    user.name,
                    row.capacity if row else None,
                    row.weight if row else 1,
                    row.available if row else True,
                    loads.get(user.id, 0),
                )
            )
        out.append(TeamView(team.id, team.name, team.id in defaults, views))
    return out


def _member_settings(session: Session, team_id: uuid.UUID, user_id: uuid.UUID) -> AssignmentMember:
    if session.get(TeamMember, (team_id, user_id)) is None:
        raise NotFound("that user is not in that team", field="user_id")
    row = session.get(AssignmentMember, (team_id, user_id))
    if row is None:
        row = AssignmentMember(team_id=team_id, user_id=user_id, weight=1, available=True)
        row.turn, row.assigned, row.capacity = _team_row(session, team_id).clock, 0, None
        session.add(row)
        session.flush()
    return row


def _team_row(session: Session, team_id: uuid.UUID) -> AssignmentTeam:
    session.execute(
        insert_ignoring_conflicts(session, AssignmentTeam.__table__, ["team_id"]).values(
            team_id=team_id, is_default=False, clock=0.0, updated_at=utcnow()
        )
    )
    return session.get_one(AssignmentTeam, team_id)


def update_member(
    session: Session,
    *,
    actor: Actor | None,
    team_id: uuid.UUID,
    user_id: uuid.UUID,
    changes: Mapping[str, Any],
) -> MemberView:
    """Set a member's capacity (leads per 30 days; None: unlimited), weight and availability
    (admins; managers for their teams)."""
    get_team(session, team_id)
    _require_team_manager(session, actor, team_id)
    row = _member_settings(session, team_id, user_id)
    before = {"capacity": row.capacity, "weight": row.weight, "available": row.available}
    if "capacity" in changes:
        row.capacity = _capacity(changes["capacity"])
    if "weight" in changes:
        weight = changes["weight"]
        if isinstance(weight, bool) or not isinstance(weight, int) or not 1 <= weight <= MAX_WEIGHT:
            raise InvalidInput(f"weight is a whole number, 1 to {MAX_WEIGHT}", field="weight")
        row.weight = weight
    if "available" in changes:
        if not isinstance(changes["available"], bool):
            raise InvalidInput("available is true or false", field="available")
        row.available = changes["available"]
    after = {"capacity": row.capacity, "weight": row.weight, "available": row.available}
    if after != before:
        row.updated_at = utcnow()
        record_audit(
            session,
            actor=actor,
            action="update_member",
            record_type=TEAM_RECORD,
            record_id=str(team_id),
            before={"user_id": str(user_id), **before},
            after={"user_id": str(user_id), **after},
        )
    session.flush()
    return next(m for m in list_teams(session, team_id=team_id)[0].members if m.user_id == user_id)


def _capacity(value: Any) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_CAPACITY:
        raise InvalidInput(
            f"capacity is a whole number of leads per 30 days, 0 to {MAX_CAPACITY}, or null",
            field="capacity",
        )
    return value


def set_default_team(
    session: Session, *, actor: Actor | None, team_id: uuid.UUID | None
) -> TeamView | None:
    """Make a team the default (leads no rule routes go there), or none (admins)."""
    _require_admin(actor)
    team = None if team_id is None else _team(session, team_id)
    previous = session.scalar(
        select(AssignmentTeam.team_id).where(AssignmentTeam.is_default.is_(True))
    )
    for row in session.scalars(select(AssignmentTeam).where(AssignmentTeam.is_default.is_(True))):
        row.is_default = False
    if team is not None:
        _team_row(session, team.id).is_default = True
    session.flush()
    if previous != (team.id if team else None):
        record_audit(
            session,
            actor=actor,
            action="set_default_team",
            record_type=TEAM_RECORD,
            record_id=str(team.id if team else previous),
            before={"default_team_id": jsonable(previous)},
            after={"default_team_id": jsonable(team.id if team else None)},
        )
    return list_teams(session, team_id=team.id)[0] if team else None


# --- rules -----------------------------------------------------------------------------

RULE_FIELDS = ("name", "team_id", "priority", "conditions", "active")


@dataclass
class RuleView:
    rule: AssignmentRule
    matches_now: int
    leads_examined: int
    warning: str | None


def _rule_values(session: Session, values: Mapping[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if "name" in values:
        name = str(values["name"] or "").strip()
        if not 1 <= len(name) <= 200 or "\x00" in name:
            raise InvalidInput("a rule name has 1 to 200 characters", field="name")
        out["name"] = name
    if "team_id" in values:
        out["team_id"] = _team(session, values["team_id"]).id
    if "priority" in values:
        priority = values["priority"]
        if isinstance(priority, bool) or not isinstance(priority, int) or abs(priority) > 10**6:
            raise InvalidInput("priority is a whole number (lower goes first)", field="priority")
        out["priority"] = priority
    if "conditions" in values:
        conditions = parse_conditions(values["conditions"], allow_empty=True)
        _check_users(session, conditions)
        out["conditions"] = [c.as_json() for c in conditions]
    if "active" in values:
        if not isinstance(values["active"], bool):
            raise InvalidInput("active is true or false", field="active")
        out["active"] = values["active"]
    return out


def _check_users(session: Session, conditions: Sequence[Condition]) -> None:
    """An owner condition naming a user who does not exist would match nobody: refuse it."""
    for i, condition in enumerate(conditions):
        if condition.kind != "field" or condition.name != "owner_id" or condition.test is None:
            continue
        value = condition.test.value
        for item in value if isinstance(value, list) else [] if value is None else [value]:
            if session.get(User, uuid.UUID(str(item))) is None:
                raise InvalidInput(f"no user {item}", field=f"conditions[{i}].value")


def _unique_name(session: Session, name: str, rule_id: int | None = None) -> None:
    found = session.scalar(select(AssignmentRule.id).where(AssignmentRule.name == name))
    if found is not None and found != rule_id:
        raise Conflict(f"an assignment rule named {name!r} exists", field="name")


def create_rule(session: Session, *, actor: Actor | None, values: Mapping[str, Any]) -> RuleView:
    """Add a rule sending matching leads to a team (admins; managers for their teams). The
    answer counts the current leads it matches, and warns when that is none."""
    _require_manager(actor)
    for required in ("name", "team_id"):
        if values.get(required) is None:
            raise InvalidInput(f"an assignment rule needs {required}", field=required)
    checked = _rule_values(session, values)
    _require_team_manager(session, actor, checked["team_id"])
    _unique_name(session, checked["name"])
    if "priority" not in checked:
        last = session.scalar(select(func.max(AssignmentRule.priority)))
        checked["priority"] = (last or 0) + 10
    rule = AssignmentRule(**{"active": True, "conditions": [], **checked})
    session.add(rule)
    session.flush()
    record_audit(
        session,
        actor=actor,
        action="create",
        record_type=RULE_RECORD,
        record_id=str(rule.id),
        after=_snapshot(rule),
    )
    return view_rule(session, rule)


def _snapshot(rule: AssignmentRule) -> dict[str, Any]:
    return {name: jsonable(getattr(rule, name)) for name in RULE_FIELDS}


def get_rule(session: Session, rule_id: int) -> AssignmentRule:
    """An assignment rule by id; 404 naming ``rule_id``."""
    rule = session.get(AssignmentRule, rule_id)
    if rule is None:
        raise NotFound(f"no assignment rule {rule_id}", field="rule_id")
    return rule


def list_rules(session: Session) -> list[AssignmentRule]:
    """Rules in the order they are tried."""
    return list(
        session.scalars(select(AssignmentRule).order_by(AssignmentRule.priority, AssignmentRule.id))
    )


def update_rule(
    session: Session, *, actor: Actor | None, rule_id: int, changes: Mapping[str, Any]
) -> RuleView:
    """Change a rule (a manager: of their teams, and only to their teams)."""
    rule = get_rule(session, rule_id)
    _require_team_manager(session, actor, rule.team_id)
    before = _snapshot(rule)
    checked = _rule_values(session, changes)
    if "team_id" in checked:
        _require_team_manager(session, actor, checked["team_id"])
    if "name" in checked:
        _unique_name(session, checked["name"], rule.id)
    for name, value in checked.items():
        setattr(rule, name, value)
    rule.updated_at = utcnow()
    session.flush()
    if _snapshot(rule) != before:
        record_audit(
            session,
            actor=actor,
            action="update",
            record_type=RULE_RECORD,
            record_id=str(rule.id),
            before=before,
            after=_snapshot(rule),
        )
    return view_rule(session, rule)


def delete_rule(session: Session, *, actor: Actor | None, rule_id: int) -> None:
    """Remove a rule; its leads go by the other rules or to the default team from now on."""
    rule = get_rule(session, rule_id)
    _require_team_manager(session, actor, rule.team_id)
    before = _snapshot(rule)
    session.delete(rule)
    record_audit(
        session,
        actor=actor,
        action="delete",
        record_type=RULE_RECORD,
        record_id=str(rule_id),
        before=before,
    )


def view_rule(session: Session, rule: AssignmentRule) -> RuleView:
    """A rule with how many of the current leads (owned or not) it matches now."""
    conditions = stored_conditions(rule.conditions)
    matched, examined = count_matches(session, conditions)
    warning = None
    if matched == 0:
        warning = (
            f"this rule matches none of the {examined} current leads; "
            "leads it does not match go to the next rule or the default team"
        )
    return RuleView(rule, matched, examined, warning)


def count_matches(session: Session, conditions: Sequence[Condition]) -> tuple[int, int]:
    """(leads matching, leads examined): the newest MATCH_SAMPLE live, open leads."""
    ids = list(
        session.scalars(
            select(Person.id)
            .where(_open_lead())
            .order_by(Person.created_at.desc(), Person.id)
            .limit(MATCH_SAMPLE)
        )
    )
    now, matched = utcnow(), 0
    for start in range(0, len(ids), CHUNK):
        persons = list(
            session.scalars(select(Person).where(Person.id.in_(ids[start : start + CHUNK])))
        )
        facts = load_facts(session, persons, conditions, now=now)
        matched += sum(all(evaluate(c, facts[p.id], now)[0] for c in conditions) for p in persons)
    return matched, len(ids)


def _open_lead() -> ColumnElement[bool]:
    return and_(
        Person.merged_into.is_(None),
        Person.archived_at.is_(None),
        Person.lifecycle_stage.in_(LEAD_STAGES),
    )


# --- the round robin -------------------------------------------------------------------


@dataclass
class Member:
    user_id: uuid.UUID
    email: str
    weight: int
    capacity: int | None
    available: bool
    turn: float
    joined: datetime
    row: AssignmentMember | None
    # Leads per user in the capacity window, shared by all teams: a user in two teams
    # has one capacity.
    loads: dict[uuid.UUID, int]

    @property
    def load(self) -> int:
        return self.loads.get(self.user_id, 0)

    @property
    def full(self) -> bool:
        return self.capacity is not None and self.load >= self.capacity

    def took_one(self) -> None:
        self.loads[self.user_id] = self.load + 1


@dataclass
class TeamState:
    team: Team
    row: AssignmentTeam
    members: list[Member]

    def eligible(self, excluded: uuid.UUID | None = None) -> list[Member]:
        return [m for m in self.members if m.available and m.user_id != excluded and not m.full]

    def pick(self, session: Session, excluded: uuid.UUID | None = None) -> Member | None:
        """The next member by weighted round robin; None when nobody can take a lead."""
        candidates = self.eligible(excluded)
        if not candidates:
            return None
        clock = self.row.clock
        chosen = min(
            candidates,
            key=lambda m: (max(m.turn, clock), -m.weight, m.joined, str(m.user_id)),
        )
        start = max(chosen.turn, clock)
        self.row.clock = start
        chosen.turn = start + 1 / chosen.weight
        chosen.took_one()
        if chosen.row is None:
            chosen.row = AssignmentMember(
                team_id=self.team.id, user_id=chosen.user_id, weight=1, available=True, assigned=0
            )
            session.add(chosen.row)
        chosen.row.turn = chosen.turn
        chosen.row.assigned = (chosen.row.assigned or 0) + 1
        return chosen


@dataclass
class Routing:
    teams: dict[uuid.UUID, TeamState]
    rules: list[tuple[AssignmentRule, list[Condition]]]
    default: TeamState | None
    loads: dict[uuid.UUID, int]
    # Held so the session keeps them: the owner check of each assignment finds them there.
    users: list[User] = field(default_factory=list)

    def open(self) -> bool:
        """Whether any team can take a lead at all."""
        return any(t.eligible() for t in self.teams.values())


def _routing(session: Session, now: datetime) -> Routing:
    """Teams, members, loads and rules, with the teams' rows locked until the commit."""
    team_ids = list(session.scalars(select(Team.id).order_by(Team.id)))
    for team_id in team_ids:
        _team_row(session, team_id)
    # populate_existing: rows read before the lock was granted are read again, so a run
    # that waited for another sees the clock that one left.
    statement = (
        select(AssignmentTeam)
        .order_by(AssignmentTeam.team_id)
        .execution_options(populate_existing=True)
    )
    if lock_row_for_update(session):
        statement = statement.with_for_update()
    rows = {r.team_id: r for r in session.scalars(statement)}
    loads = _loads(session, now)
    members_now = select(AssignmentMember).execution_options(populate_existing=True)
    settings = {(r.team_id, r.user_id): r for r in session.scalars(members_now)}
    teams = {t.id: TeamState(t, rows[t.id], []) for t in session.scalars(select(Team))}
    for member, user in session.execute(
        select(TeamMember, User).join(User, User.id == TeamMember.user_id).where(User.active)
    ):
        row = settings.get((member.team_id, member.user_id))
        teams[member.team_id].members.append(
            Member(
                user.id,
                user.email,
                row.weight if row else 1,
                row.capacity if row else None,
                row.available if row else True,
                row.turn if row else rows[member.team_id].clock,
                member.created_at,
                row,
                loads,
            )
        )
    rules = [
        (rule, stored_conditions(rule.conditions))
        for rule in list_rules(session)
        if rule.active and rule.team_id in teams
    ]
    default = next((t for t in teams.values() if t.row.is_default), None)
    users = list(session.scalars(select(User).where(User.active)))
    return Routing(teams, rules, default, loads, users)


# --- assigning -------------------------------------------------------------------------


@dataclass
class AssignmentReport:
    """What a run did: leads assigned (the first REPORT_LIMIT of them listed), and leads
    that no team could take, with why."""

    assigned: int = 0
    waiting: int = 0
    assignments: list[LeadAssignment] = field(default_factory=list)
    waiting_leads: list[dict[str, Any]] = field(default_factory=list)
    by_team: dict[str, int] = field(default_factory=dict)


@dataclass
class _Lead:
    person_id: uuid.UUID
    score: float | None
    predictive: float | None
    created_at: datetime
    person: Person | None = None


# Where a lead came from can name the team it should go to first (a web form's team rule).
# Domains register a function here (``patron.pipeline`` does): given the live persons of a
# chunk of waiting leads, it returns the preferred team of those it knows about.
TeamPreference = Callable[[Session, Sequence[uuid.UUID]], dict[uuid.UUID, uuid.UUID]]
TEAM_PREFERENCES: list[TeamPreference] = []


def _registered_preferences(
    session: Session, person_ids: Sequence[uuid.UUID]
) -> dict[uuid.UUID, uuid.UUID]:
    found: dict[uuid.UUID, uuid.UUID] = {}
    for source in TEAM_PREFERENCES:
        found.update(source(session, person_ids))
    return found


def assign_leads(
    session: Session,
    *,
    person_ids: Sequence[uuid.UUID] | None = None,
    preferred_teams: Mapping[uuid.UUID, uuid.UUID] | None = None,
    actor: Actor | None = None,
    limit: int | None = None,
    now: datetime | None = None,
) -> AssignmentReport:
    """Assign waiting leads (all of them, or those of ``person_ids``), highest score
    first, up to ``limit`` assignments. ``preferred_teams`` maps a person to the team it
    should go to first (a web form's team). Owners change through the contact service
    (audited, an event each) and every assignment is logged with its reason."""
    _require_manager(actor)
    now = now or utcnow()
    routing = _routing(session, now)
    preferred = _live_keys(session, preferred_teams or {})
    report = AssignmentReport()
    if person_ids is None and not routing.open():
        return _nobody(session, report)
    leads = _waiting(session, None if person_ids is None else _live_ids(session, person_ids))
    conditions = [c for _, rule_conditions in routing.rules for c in rule_conditions]
    for start in range(0, len(leads), CHUNK):
        chunk = leads[start : start + CHUNK]
        if not routing.open():
            _wait_all(report, chunk, "no team has an available member with capacity")
            continue
        if limit is not None and report.assigned >= limit:
            break
        persons = _load_persons(session, chunk)
        facts = load_facts(session, persons, conditions, now=now)
        # What the caller named wins over what a lead's origin suggests.
        preferred = {**_registered_preferences(session, [x.person_id for x in chunk]), **preferred}
        for lead in chunk:
            if limit is not None and report.assigned >= limit:
                break
            if lead.person is None:
                continue
            member, team, rule, route = _route(
                session, routing, facts[lead.person_id], now, preferred
            )
            if member is None or team is None:
                _wait(report, lead, route)
                continue
            entry = _give(session, actor, lead, member, team, rule, f"{route}, {_how(lead)}", now)
            report.assigned += 1
            report.by_team[team.team.name] = report.by_team.get(team.team.name, 0) + 1
            if len(report.assignments) < REPORT_LIMIT:
                report.assignments.append(entry)
    session.flush()
    return report


def _nobody(session: Session, report: AssignmentReport) -> AssignmentReport:
    """No team can take anything: count the waiting leads without looking at each."""
    why = "no team has an available member with capacity"
    waiting = select(Person.id).where(_open_lead(), Person.owner_id.is_(None))
    report.waiting = session.scalar(select(func.count()).select_from(waiting.subquery())) or 0
    for person_id in session.scalars(waiting.order_by(Person.created_at).limit(REPORT_LIMIT)):
        report.waiting_leads.append({"person_id": person_id, "reason": why})
    return report


def _load_persons(session: Session, leads: Sequence[_Lead]) -> list[Person]:
    found = {
        p.id: p
        for p in session.scalars(select(Person).where(Person.id.in_([x.person_id for x in leads])))
    }
    for lead in leads:
        lead.person = found.get(lead.person_id)
    return list(found.values())


def _how(lead: _Lead) -> str:
    score = "unscored" if lead.score is None else f"score {round(lead.score)}"
    return f"weighted round robin, {score}"


def _wait(report: AssignmentReport, lead: _Lead, why: str) -> None:
    report.waiting += 1
    if len(report.waiting_leads) < REPORT_LIMIT:
        report.waiting_leads.append({"person_id": lead.person_id, "reason": why})


def _wait_all(report: AssignmentReport, leads: Sequence[_Lead], why: str) -> None:
    for lead in leads:
        _wait(report, lead, why)


def _live_ids(session: Session, ids: Sequence[uuid.UUID]) -> list[uuid.UUID]:
    """The live persons behind these ids (a merged id finds its survivor)."""
    out: list[uuid.UUID] = []
    for start in range(0, len(ids), 1000):
        out.extend(
            session.scalars(
                select(func.coalesce(Person.merged_into, Person.id)).where(
                    Person.id.in_(list(ids[start : start + 1000]))
                )
            )
        )
    return list(dict.fromkeys(out))


def _live_keys(
    session: Session, mapping: Mapping[uuid.UUID, uuid.UUID]
) -> dict[uuid.UUID, uuid.UUID]:
    if not mapping:
        return {}
    rows = session.execute(
        select(Person.id, func.coalesce(Person.merged_into, Person.id)).where(
            Person.id.in_(list(mapping))
        )
    )
    live = dict(rows.all())
    return {live.get(person, person): team for person, team in mapping.items()}


def _waiting(session: Session, ids: list[uuid.UUID] | None) -> list[_Lead]:
    """Unowned open leads, highest visible score first, then predictive, then oldest."""
    score, predicted = aliased(LeadScore), aliased(LeadScore)
    statement = (
        select(Person.id, score.value, predicted.value, Person.created_at)
        .outerjoin(score, and_(score.person_id == Person.id, score.kind == LEAD_SCORE))
        .outerjoin(
            predicted, and_(predicted.person_id == Person.id, predicted.kind == PREDICTIVE_SCORE)
        )
        .where(_open_lead(), Person.owner_id.is_(None))
        .order_by(
            score.value.is_(None),
            score.value.desc(),
            predicted.value.is_(None),
            predicted.value.desc(),
            Person.created_at,
            Person.id,
        )
    )
    if ids is None:
        return [_Lead(*row) for row in session.execute(statement)]
    leads: list[_Lead] = []
    for start in range(0, len(ids), 1000):
        chunk = statement.where(Person.id.in_(ids[start : start + 1000]))
        leads.extend(_Lead(*row) for row in session.execute(chunk))
    leads.sort(
        key=lambda lead: (
            lead.score is None,
            -(lead.score or 0),
            lead.predictive is None,
            -(lead.predictive or 0),
            lead.created_at,
            str(lead.person_id),
        )
    )
    return leads


def _route(
    session: Session,
    routing: Routing,
    facts: Facts,
    now: datetime,
    preferred: Mapping[uuid.UUID, uuid.UUID],
) -> tuple[Member | None, TeamState | None, AssignmentRule | None, str]:
    """Where a lead goes, and the reason in words."""
    steps: list[str] = []
    tried: set[uuid.UUID] = set()
    wanted = preferred.get(facts.person.id)
    if wanted is not None:
        team = routing.teams.get(wanted)
        if team is None:
            steps.append(f"preferred team {wanted} does not exist")
        else:
            tried.add(team.team.id)
            member = team.pick(session)
            if member is not None:
                return member, team, None, f"preferred team {team.team.name}"
            steps.append(f"preferred team {team.team.name}: nobody available with capacity")
    rule = next(
        (
            r
            for r, conditions in routing.rules
            if all(evaluate(c, facts, now)[0] for c in conditions)
        ),
        None,
    )
    if rule is not None:
        team = routing.teams[rule.team_id]
        conditions = describe_all(stored_conditions(rule.conditions))
        head = f"rule '{rule.name}' ({conditions}) -> team {team.team.name}"
        if team.team.id not in tried:
            tried.add(team.team.id)
            member = team.pick(session)
            if member is not None:
                return member, team, rule, "; ".join([*steps, head])
        steps.append(f"{head}: nobody available with capacity")
    else:
        steps.append("no rule matched")
    default = routing.default
    if default is None:
        steps.append("there is no default team")
    elif default.team.id not in tried:
        member = default.pick(session)
        if member is not None:
            return member, default, rule, "; ".join([*steps, f"default team {default.team.name}"])
        steps.append(f"default team {default.team.name}: nobody available with capacity")
    return None, None, None, "; ".join(steps)


def _give(
    session: Session,
    actor: Actor | None,
    lead: _Lead,
    member: Member,
    team: TeamState,
    rule: AssignmentRule | None,
    reason: str,
    now: datetime,
    *,
    kind: str = "assign",
) -> LeadAssignment:
    previous = lead.person.owner_id if lead.person else None
    # Nothing the contact service reads depends on this run's pending rows: flushing them
    # before each of its queries would only cost time.
    with session.no_autoflush:
        contacts.update_contact(
            session, actor=actor, person_id=lead.person_id, changes={"owner_id": member.user_id}
        )
    entry = LeadAssignment(
        person_id=lead.person_id,
        from_owner_id=previous,
        to_owner_id=member.user_id,
        team_id=team.team.id,
        rule_id=rule.id if rule else None,
        kind=kind,
        reason=reason[:2000],
        score=lead.score,
        actor_id=actor.user_id if actor else None,
        actor_label=actor.email if actor else "system",
        at=now,
    )
    session.add(entry)
    return entry


# --- rebalancing -----------------------------------------------------------------------


@dataclass
class RebalanceReport:
    moved: int = 0
    left: int = 0
    moves: list[LeadAssignment] = field(default_factory=list)
    # user id -> open unworked leads before and after
    before: dict[str, int] = field(default_factory=dict)
    after: dict[str, int] = field(default_factory=dict)


def rebalance(
    session: Session,
    *,
    actor: Actor | None,
    team_id: uuid.UUID,
    from_user_id: uuid.UUID | None = None,
    include_worked: bool = False,
    now: datetime | None = None,
) -> RebalanceReport:
    """Redistribute a team's open leads that nobody has worked yet (no activity logged on
    them; ``include_worked`` takes those too) among its available members, by weight and
    within capacity. With ``from_user_id`` (someone going on leave), that member's leads
    go to the others by weighted round robin; without, leads move from the members above
    their weighted share to those below it. Every move is logged."""
    get_team(session, team_id)
    _require_team_manager(session, actor, team_id)
    now = now or utcnow()
    routing = _routing(session, now)
    team = routing.teams[team_id]
    if from_user_id is not None and all(m.user_id != from_user_id for m in team.members):
        raise InvalidInput("from_user_id is not a member of this team", field="from_user_id")
    holders = (
        [from_user_id]
        if from_user_id is not None
        else [m.user_id for m in team.members if m.available]
    )
    leads = _held(session, holders, include_worked)
    report = RebalanceReport()
    report.before = _owners(leads, holders)
    if from_user_id is not None:
        _hand_over(session, actor, team, leads, from_user_id, report, now)
    else:
        _even_out(session, actor, team, leads, report, now)
    report.after = _owners(leads, holders)
    session.flush()
    return report


def _owners(leads: Sequence[_Lead], holders: Sequence[uuid.UUID]) -> dict[str, int]:
    """How many of these leads each owner holds (the holders always listed)."""
    out = {str(h): 0 for h in holders}
    for lead in leads:
        owner = lead.person.owner_id if lead.person else None
        if owner is not None:
            out[str(owner)] = out.get(str(owner), 0) + 1
    return out


def _held(session: Session, owners: Sequence[uuid.UUID], include_worked: bool) -> list[_Lead]:
    """Open leads of these owners, lowest score first (the least to lose by moving)."""
    score = aliased(LeadScore)
    statement = (
        select(Person, score.value)
        .outerjoin(score, and_(score.person_id == Person.id, score.kind == LEAD_SCORE))
        .where(_open_lead(), Person.owner_id.in_(list(owners)))
        .order_by(score.value.is_not(None), score.value, Person.created_at.desc(), Person.id)
    )
    if not include_worked:
        statement = statement.where(~exists().where(Activity.person_id == Person.id))
    return [
        _Lead(person.id, value, None, person.created_at, person)
        for person, value in session.execute(statement)
    ]


def _hand_over(
    session: Session,
    actor: Actor | None,
    team: TeamState,
    leads: list[_Lead],
    from_user_id: uuid.UUID,
    report: RebalanceReport,
    now: datetime,
) -> None:
    leaving = next(m for m in team.members if m.user_id == from_user_id)
    for lead in sorted(leads, key=lambda lead: (lead.score is None, -(lead.score or 0))):
        member = team.pick(session, excluded=from_user_id)
        if member is None:
            report.left += 1
            continue
        reason = (
            f"rebalance of team {team.team.name}: {leaving.email}'s open leads handed over, "
            f"{_how(lead)}"
        )
        _record_move(session, actor, lead, member, team, reason, report, now)


def _even_out(
    session: Session,
    actor: Actor | None,
    team: TeamState,
    leads: list[_Lead],
    report: RebalanceReport,
    now: datetime,
) -> None:
    members = {m.user_id: m for m in team.members if m.available}
    pools: dict[uuid.UUID, list[_Lead]] = {h: [] for h in members}
    for lead in leads:
        if lead.person is not None and lead.person.owner_id in pools:
            pools[lead.person.owner_id].append(lead)
    counts = {h: len(pool) for h, pool in pools.items()}
    while len(members) > 1:
        donor = max(members.values(), key=lambda m: (counts[m.user_id] / m.weight, m.email))
        takers = [
            m
            for m in members.values()
            if not m.full
            and (counts[m.user_id] + 1) / m.weight < counts[donor.user_id] / donor.weight
        ]
        if not takers or not pools[donor.user_id]:
            return
        taker = min(takers, key=lambda m: ((counts[m.user_id] + 1) / m.weight, m.email))
        lead = pools[donor.user_id].pop(0)
        reason = (
            f"rebalance of team {team.team.name}: {donor.email} had {counts[donor.user_id]} "
            f"open leads (weight {donor.weight}), {taker.email} {counts[taker.user_id]} "
            f"(weight {taker.weight}), {_how(lead)}"
        )
        counts[donor.user_id] -= 1
        counts[taker.user_id] += 1
        taker.took_one()
        _record_move(session, actor, lead, taker, team, reason, report, now)


def _record_move(
    session: Session,
    actor: Actor | None,
    lead: _Lead,
    member: Member,
    team: TeamState,
    reason: str,
    report: RebalanceReport,
    now: datetime,
) -> None:
    entry = _give(session, actor, lead, member, team, None, reason, now, kind="rebalance")
    report.moved += 1
    if len(report.moves) < REPORT_LIMIT:
        report.moves.append(entry)


# --- the log ---------------------------------------------------------------------------

LOG_FIELDS: dict[str, Field] = {
    "id": Field(LeadAssignment.id, "number", int),
    "at": Field(LeadAssignment.at, "datetime", datetime.fromisoformat),
    "kind": Field(LeadAssignment.kind),
    "person_id": Field(LeadAssignment.person_id, "uuid", uuid.UUID),
    "from_owner_id": Field(LeadAssignment.from_owner_id, "uuid", uuid.UUID),
    "to_owner_id": Field(LeadAssignment.to_owner_id, "uuid", uuid.UUID),
    "team_id": Field(LeadAssignment.team_id, "uuid", uuid.UUID),
    "rule_id": Field(LeadAssignment.rule_id, "number", int),
    "score": Field(LeadAssignment.score, "number", float),
}


def readable_assignments(actor: Actor | None) -> ColumnElement[bool]:
    """A condition on :class:`LeadAssignment`: entries about persons ``actor`` may see,
    and for a manager every entry of their teams."""
    if actor is None or actor.sees_everything:
        return true()
    persons = LeadAssignment.person_id.in_(select(Person.id).where(readable_persons(actor)))
    if actor.role is Role.manager:
        mine = select(TeamMember.team_id).where(TeamMember.user_id == actor.user_id)
        return or_(persons, LeadAssignment.team_id.in_(mine))
    return persons


def list_assignments(
    session: Session,
    *,
    actor: Actor | None,
    query: ListQuery,
    person_id: uuid.UUID | None = None,
    owner_id: uuid.UUID | None = None,
    team_id: uuid.UUID | None = None,
) -> Page[LeadAssignment]:
    """The assignment log, newest first, for one person, owner (either side) or team."""
    statement = select(LeadAssignment).where(readable_assignments(actor))
    if person_id is not None:
        statement = statement.where(LeadAssignment.person_id == person_id)
    if owner_id is not None:
        statement = statement.where(
            or_(LeadAssignment.to_owner_id == owner_id, LeadAssignment.from_owner_id == owner_id)
        )
    if team_id is not None:
        statement = statement.where(LeadAssignment.team_id == team_id)
    return keyset_page(
        session,
        statement,
        fields=LOG_FIELDS,
        query=query,
        default_sort="-id",
        tiebreak=LOG_FIELDS["id"],
    )
