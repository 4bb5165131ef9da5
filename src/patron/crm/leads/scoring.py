"""Lead scores: the rule score (points from rules, with decay), both scores' storage,
overrides, explanations, and what merges and replays do to them.

The rule score is the sum of the points of every active rule whose conditions all hold,
clamped to 0..100. A rule with ``half_life_days`` decays: its points halve every that many
days since its evidence, which is the oldest of the times its timed conditions carry (the
latest matching event of an event condition, the last time a trait was seen, the last
visit of a recency condition): a rule is only as fresh as its stalest evidence.
"""

from __future__ import annotations

import math
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from patron.auth.models import Role
from patron.auth.service import Actor, record_audit
from patron.core.clock import as_utc, utcnow
from patron.core.errors import Conflict, Forbidden, InvalidInput, NotFound
from patron.crm import events
from patron.crm.leads import predictive
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
    SCORE_KINDS,
    LeadScore,
    ScoringModel,
    ScoringRule,
    ScoringState,
)
from patron.crm.records import jsonable
from patron.identity.models import Person
from patron.profiles.access import RECORD_TYPE as PERSON
from patron.profiles.access import visible_person, writable_person

RULE_RECORD = "lead_scoring_rule"
MAX_POINTS = 100
MAX_HALF_LIFE_DAYS = 3650
MAX_REASON = 500
CHUNK = 500
STATE = "main"


# --- rules -----------------------------------------------------------------------------


@dataclass(frozen=True)
class LoadedRule:
    id: int
    name: str
    points: float
    half_life_days: float | None
    conditions: list[Condition]


def load_rules(session: Session) -> list[LoadedRule]:
    """The active rules, parsed once (per processing step, per rescore)."""
    rows = session.scalars(
        select(ScoringRule).where(ScoringRule.active.is_(True)).order_by(ScoringRule.id)
    )
    return [
        LoadedRule(r.id, r.name, r.points, r.half_life_days, stored_conditions(r.conditions))
        for r in rows
    ]


def _require_admin(actor: Actor | None) -> None:
    if actor is not None and actor.role is not Role.admin:
        raise Forbidden("only admins change lead scoring rules")


def _checked(values: Mapping[str, Any]) -> dict[str, Any]:
    """Each given field of a rule checked; errors name the field."""
    out: dict[str, Any] = {}
    if "name" in values:
        name = str(values["name"] or "").strip()
        if not 1 <= len(name) <= 200 or "\x00" in name:
            raise InvalidInput("a rule name has 1 to 200 characters", field="name")
        out["name"] = name
    if "conditions" in values:
        out["conditions"] = [c.as_json() for c in parse_conditions(values["conditions"])]
    if "points" in values:
        points = values["points"]
        if isinstance(points, bool) or not isinstance(points, int | float):
            raise InvalidInput("points is a number", field="points")
        if not math.isfinite(points) or not -MAX_POINTS <= points <= MAX_POINTS or points == 0:
            raise InvalidInput(
                f"points is a number from -{MAX_POINTS} to {MAX_POINTS}, not 0", field="points"
            )
        out["points"] = float(points)
    if "half_life_days" in values:
        out["half_life_days"] = _half_life(values["half_life_days"])
    if "active" in values:
        if not isinstance(values["active"], bool):
            raise InvalidInput("active is true or false", field="active")
        out["active"] = values["active"]
    return out


def _half_life(value: Any) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise InvalidInput("half_life_days is a number of days", field="half_life_days")
    if not 1 <= value <= MAX_HALF_LIFE_DAYS:
        raise InvalidInput(
            f"half_life_days is 1 to {MAX_HALF_LIFE_DAYS} days", field="half_life_days"
        )
    return float(value)


def _check_decay(rule: ScoringRule) -> None:
    if rule.half_life_days is not None and not any(
        c.timed for c in stored_conditions(rule.conditions)
    ):
        raise InvalidInput(
            "decay needs a condition with a time: an event, a trait or recency",
            field="half_life_days",
        )


def _unique_name(session: Session, name: str, rule_id: int | None = None) -> None:
    found = session.scalar(select(ScoringRule.id).where(ScoringRule.name == name))
    if found is not None and found != rule_id:
        raise Conflict(f"a scoring rule named {name!r} exists", field="name")


RULE_FIELDS = ("name", "conditions", "points", "half_life_days", "active")


def create_rule(session: Session, *, actor: Actor | None, values: Mapping[str, Any]) -> ScoringRule:
    """Add a scoring rule (admins); scores are recomputed by the refresh job."""
    _require_admin(actor)
    for required in ("name", "conditions", "points"):
        if values.get(required) is None:
            raise InvalidInput(f"a scoring rule needs {required}", field=required)
    checked = _checked(values)
    _unique_name(session, checked["name"])
    rule = ScoringRule(**{"active": True, "half_life_days": None, **checked})
    _check_decay(rule)
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
    bump_rules(session)
    return rule


def _snapshot(rule: ScoringRule) -> dict[str, Any]:
    return {name: jsonable(getattr(rule, name)) for name in RULE_FIELDS}


def get_rule(session: Session, rule_id: int) -> ScoringRule:
    """A scoring rule by id; 404 naming ``rule_id``."""
    rule = session.get(ScoringRule, rule_id)
    if rule is None:
        raise NotFound(f"no scoring rule {rule_id}", field="rule_id")
    return rule


def list_rules(session: Session) -> list[ScoringRule]:
    """Every scoring rule, active or not, oldest first."""
    return list(session.scalars(select(ScoringRule).order_by(ScoringRule.id)))


def update_rule(
    session: Session, *, actor: Actor | None, rule_id: int, changes: Mapping[str, Any]
) -> ScoringRule:
    """Change a scoring rule's fields (admins)."""
    _require_admin(actor)
    rule = get_rule(session, rule_id)
    before = _snapshot(rule)
    checked = _checked(changes)
    if "name" in checked:
        _unique_name(session, checked["name"], rule.id)
    for name, value in checked.items():
        setattr(rule, name, value)
    _check_decay(rule)
    rule.updated_at = utcnow()
    session.flush()
    after = _snapshot(rule)
    if after != before:
        record_audit(
            session,
            actor=actor,
            action="update",
            record_type=RULE_RECORD,
            record_id=str(rule.id),
            before=before,
            after=after,
        )
        bump_rules(session)
    return rule


def delete_rule(session: Session, *, actor: Actor | None, rule_id: int) -> None:
    """Remove a scoring rule (admins)."""
    _require_admin(actor)
    rule = get_rule(session, rule_id)
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
    bump_rules(session)


def scoring_state(session: Session) -> ScoringState:
    """The one row that says what the last full rescore covered."""
    state = session.get(ScoringState, STATE)
    if state is None:
        state = ScoringState(name=STATE, rules_version=0, scored_rules_version=0)
        session.add(state)
        session.flush()
    return state


def bump_rules(session: Session) -> None:
    """Rules changed: the refresh job rescores everyone."""
    scoring_state(session).rules_version += 1


# --- the rule score --------------------------------------------------------------------


def rule_score(
    rules: Sequence[LoadedRule], facts: Facts, now: datetime
) -> tuple[float | None, dict[str, Any]]:
    """The rule score (None without rules) and its explanation: every rule that matched
    with the points it added after decay, the biggest effect first."""
    if not rules:
        return None, {}
    factors: list[dict[str, Any]] = []
    for rule in rules:
        matched, times = _matches(rule.conditions, facts, now)
        if not matched:
            continue
        added, age = rule.points, None
        if rule.half_life_days is not None and times:
            age = max(0.0, (now - min(times)).total_seconds() / 86400)
            added = rule.points * 0.5 ** (age / rule.half_life_days)
        factors.append(
            {
                "name": rule.name,
                "effect": round(added, 2),
                "rule_id": rule.id,
                "points": rule.points,
                "age_days": None if age is None else round(age, 1),
                "conditions": describe_all(rule.conditions),
            }
        )
    total = sum(f["effect"] for f in factors)
    value = round(min(100.0, max(0.0, total)), 1)
    factors.sort(key=lambda f: (-abs(f["effect"]), f["rule_id"]))
    return value, {"factors": factors, "sum": round(total, 2), "clamped": value != round(total, 1)}


def _matches(
    conditions: Sequence[Condition], facts: Facts, now: datetime
) -> tuple[bool, list[datetime]]:
    times = []
    for condition in conditions:
        holds, at = evaluate(condition, facts, now)
        if not holds:
            return False, []
        if at is not None:
            times.append(at)
    return True, times


# --- computing and storing -------------------------------------------------------------


@dataclass
class Scorer:
    """What one rescore needs loaded once: the rules and the model in use."""

    rules: list[LoadedRule]
    model: predictive.Model | None
    now: datetime = field(default_factory=utcnow)

    @classmethod
    def load(cls, session: Session, now: datetime | None = None) -> Scorer:
        return cls(load_rules(session), predictive.current_model(session), now or utcnow())

    @property
    def idle(self) -> bool:
        return not self.rules and self.model is None


def rescore(
    session: Session, person_ids: Iterable[uuid.UUID], *, scorer: Scorer | None = None
) -> int:
    """Recompute both automatic scores of these persons (merged ones are skipped), in
    chunks; returns how many live persons were scored."""
    scorer = scorer or Scorer.load(session)
    ids = list(dict.fromkeys(person_ids))
    done = 0
    for start in range(0, len(ids), CHUNK):
        done += _rescore_chunk(session, ids[start : start + CHUNK], scorer)
    session.flush()
    return done


def _rescore_chunk(session: Session, ids: list[uuid.UUID], scorer: Scorer) -> int:
    persons = list(
        session.scalars(select(Person).where(Person.id.in_(ids), Person.merged_into.is_(None)))
    )
    existing = {
        (row.person_id, row.kind): row
        for row in session.scalars(select(LeadScore).where(LeadScore.person_id.in_(ids)))
    }
    gone = {person_id for person_id, _ in existing} - {p.id for p in persons}
    if gone:  # merged away since: their rows wait for an unmerge, not for a rescore
        session.execute(update(LeadScore).where(LeadScore.person_id.in_(gone)).values(stale=False))
    if scorer.idle and not existing:
        return len(persons)
    conditions = [c for rule in scorer.rules for c in rule.conditions]
    facts = load_facts(
        session,
        persons,
        conditions,
        now=scorer.now,
        companies=scorer.model is not None,
        trait_times=any(r.half_life_days is not None for r in scorer.rules),
        count_events=scorer.model is not None,
    )
    model = scorer.model
    for person in persons:
        about = facts[person.id]
        value, why = rule_score(scorer.rules, about, scorer.now)
        _store(session, existing, person.id, LEAD_SCORE, value, why, None, scorer.now)
        value, why = model.score(about) if model else (None, {})
        version = model.version if model else None
        _store(session, existing, person.id, PREDICTIVE_SCORE, value, why, version, scorer.now)
    return len(persons)


def _store(
    session: Session,
    existing: dict[tuple[uuid.UUID, str], LeadScore],
    person_id: uuid.UUID,
    kind: str,
    value: float | None,
    explanation: dict[str, Any],
    version: int | None,
    now: datetime,
) -> None:
    row = existing.get((person_id, kind))
    if row is None:
        if value is None:
            return  # nothing computed and nothing overridden: no row
        row = LeadScore(person_id=person_id, kind=kind, stale=False)
        session.add(row)
        existing[(person_id, kind)] = row
    row.automatic, row.explanation, row.model_version = value, explanation, version
    row.computed_at, row.stale = now, False
    row.value = row.override_value if row.override_value is not None else value


def mark_stale(session: Session, persons: Sequence[uuid.UUID]) -> None:
    """Reset hook: persons about to be replayed (an unmerge, a rebuild) are rescored by the
    refresh job, or by processing when their events come through again."""
    ids = list(persons)
    for start in range(0, len(ids), 1000):
        session.execute(
            update(LeadScore)
            .where(LeadScore.person_id.in_(ids[start : start + 1000]))
            .values(stale=True)
        )


def carry_overrides(session: Session, pairs: Sequence[tuple[uuid.UUID, uuid.UUID]]) -> None:
    """Merge hook (a group of merges, in the order they were made): an override on either
    side survives on the survivor; both overridden, the more recent human decision wins.
    The merged person keeps its own rows, so an unmerge gives them back. One query for the
    whole group; a chain A into B into C carries A's override on to C."""
    session.flush()
    involved = list({p for pair in pairs for p in pair})
    rows: dict[tuple[uuid.UUID, str], LeadScore] = {}
    for start in range(0, len(involved), CHUNK):
        chunk = involved[start : start + CHUNK]
        for row in session.scalars(
            select(LeadScore).where(
                LeadScore.person_id.in_(chunk), LeadScore.override_value.is_not(None)
            )
        ):
            rows[(row.person_id, row.kind)] = row
    if not rows:
        return  # nobody in the group was overridden: nothing to carry
    survivors = {survivor for survivor, _ in pairs}
    for row in session.scalars(select(LeadScore).where(LeadScore.person_id.in_(list(survivors)))):
        rows.setdefault((row.person_id, row.kind), row)
    for survivor, merged in pairs:
        for kind in SCORE_KINDS:
            theirs, mine = rows.get((merged, kind)), rows.get((survivor, kind))
            if theirs is None or theirs.override_value is None or not _newer(theirs, mine):
                continue
            if mine is None:
                mine = LeadScore(person_id=survivor, kind=kind, explanation={}, stale=False)
                session.add(mine)
                rows[(survivor, kind)] = mine
            mine.override_value = theirs.override_value
            mine.override_reason = theirs.override_reason
            mine.override_by, mine.override_at = theirs.override_by, theirs.override_at
            mine.value = mine.override_value


def rescore_survivors(session: Session, survivors: set[uuid.UUID]) -> None:
    """After-merges hook: the survivors' scores are computed again from what they hold now
    (their CRM fields and traits already merged). Survivors without rules, a model or a
    score row cost one query per chunk."""
    if survivors:
        rescore(session, survivors, scorer=Scorer.load(session))


def _newer(theirs: LeadScore, mine: LeadScore | None) -> bool:
    if mine is None or mine.override_value is None:
        return True
    if theirs.override_at is None or mine.override_at is None:
        return mine.override_at is None
    return as_utc(theirs.override_at) > as_utc(mine.override_at)


# --- overrides -------------------------------------------------------------------------


def _kind(kind: str) -> str:
    if kind not in SCORE_KINDS:
        raise NotFound(f"no score {kind!r}; scores are {', '.join(SCORE_KINDS)}", field="kind")
    return kind


def set_override(
    session: Session,
    *,
    actor: Actor | None,
    person_id: uuid.UUID,
    kind: str,
    value: Any,
    reason: Any,
) -> LeadScore:
    """A person's own judgement of a score: shown instead of the automatic value (which is
    still computed, beside it) until removed. Audited, and an event on the person."""
    person = writable_person(session, actor, person_id)
    kind = _kind(kind)
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value <= 100:
        raise InvalidInput("value is a number from 0 to 100", field="value")
    text = str(reason or "").strip() if isinstance(reason, str | type(None)) else ""
    if not text or len(text) > MAX_REASON or "\x00" in text:
        raise InvalidInput(f"say why, in 1 to {MAX_REASON} characters", field="reason")
    row = session.get(LeadScore, (person.id, kind))
    if row is None:
        row = LeadScore(person_id=person.id, kind=kind, explanation={}, stale=False)
        session.add(row)
    before = _override_view(row)
    row.override_value, row.override_reason = round(float(value), 1), text
    row.override_by, row.override_at = (actor.email if actor else "system"), utcnow()
    row.value = row.override_value
    session.flush()
    _audit_and_track(session, actor, person.id, kind, before, _override_view(row))
    return row


def remove_override(
    session: Session, *, actor: Actor | None, person_id: uuid.UUID, kind: str
) -> LeadScore:
    """Go back to the automatic value."""
    person = writable_person(session, actor, person_id)
    kind = _kind(kind)
    row = session.get(LeadScore, (person.id, kind))
    if row is None or row.override_value is None:
        raise NotFound(f"{kind} of this person is not overridden", field="kind")
    before = _override_view(row)
    row.override_value = row.override_reason = row.override_by = row.override_at = None
    row.value = row.automatic
    session.flush()
    _audit_and_track(session, actor, person.id, kind, before, _override_view(row))
    return row


def _override_view(row: LeadScore) -> dict[str, Any]:
    return {
        "value": row.value,
        "override": row.override_value,
        "reason": row.override_reason,
    }


def _audit_and_track(
    session: Session,
    actor: Actor | None,
    person_id: uuid.UUID,
    kind: str,
    before: dict[str, Any],
    after: dict[str, Any],
) -> None:
    overridden = after["override"] is not None
    record_audit(
        session,
        actor=actor,
        action="override_score" if overridden else "remove_score_override",
        record_type=PERSON,
        record_id=str(person_id),
        before={kind: before},
        after={kind: after},
    )
    event = events.SCORE_OVERRIDDEN if overridden else events.SCORE_OVERRIDE_REMOVED
    properties = {"score": kind, "value": after["value"], "previous_value": before["value"]}
    if overridden:
        properties["reason"] = after["reason"]
    events.track_crm_change(
        session, person_id=person_id, event=event, properties=properties, actor=actor
    )


# --- reading ---------------------------------------------------------------------------


@dataclass
class ScoreView:
    kind: str
    value: float | None
    automatic: float | None
    override: dict[str, Any] | None
    computed_at: datetime | None
    model_version: int | None
    factors: list[dict[str, Any]]
    explanation: dict[str, Any]
    note: str | None = None


def person_scores(
    session: Session, *, actor: Actor | None, person_id: uuid.UUID
) -> tuple[uuid.UUID, dict[str, ScoreView]]:
    """Both scores of a person ``actor`` may see: visible, automatic and override values,
    and the factors behind the automatic one."""
    person = visible_person(session, actor, person_id)
    rows = {
        r.kind: r
        for r in session.scalars(select(LeadScore).where(LeadScore.person_id == person.id))
    }
    notes = _notes(session)
    return person.id, {kind: _view(kind, rows.get(kind), notes[kind]) for kind in SCORE_KINDS}


def _notes(session: Session) -> dict[str, str | None]:
    """Why a score may be missing: no rules yet; no model, or too little history."""
    rules = session.scalar(select(ScoringRule.id).where(ScoringRule.active.is_(True)).limit(1))
    latest = predictive.latest_attempt(session)
    current = predictive.current_model(session)
    model_note = None
    if latest is not None and latest.status != "trained":
        model_note = latest.message + (
            f"; scores come from model {current.version}" if current else ""
        )
    elif latest is None:
        model_note = "no model has been trained yet"
    return {
        LEAD_SCORE: None if rules is not None else "no active lead scoring rules",
        PREDICTIVE_SCORE: model_note,
    }


def _view(kind: str, row: LeadScore | None, note: str | None) -> ScoreView:
    if row is None:
        return ScoreView(kind, None, None, None, None, None, [], {}, note)
    override = None
    if row.override_value is not None:
        override = {
            "value": row.override_value,
            "reason": row.override_reason,
            "by": row.override_by,
            "at": row.override_at,
        }
    explanation = dict(row.explanation or {})
    factors = list(explanation.pop("factors", []))
    return ScoreView(
        kind,
        row.value,
        row.automatic,
        override,
        row.computed_at,
        row.model_version,
        factors,
        explanation,
        note,
    )


def visible_scores(
    session: Session, person_ids: Sequence[uuid.UUID]
) -> dict[uuid.UUID, dict[str, float | None]]:
    """The visible value of each score, for a page of contacts."""
    out: dict[uuid.UUID, dict[str, float | None]] = {
        p: dict.fromkeys(SCORE_KINDS) for p in person_ids
    }
    ids = list(out)
    for start in range(0, len(ids), 1000):
        rows = session.execute(
            select(LeadScore.person_id, LeadScore.kind, LeadScore.value).where(
                LeadScore.person_id.in_(ids[start : start + 1000])
            )
        )
        for person_id, kind, value in rows:
            out[person_id][kind] = value
    return out


# --- the model's state -----------------------------------------------------------------


@dataclass
class ModelStatus:
    latest: ScoringModel | None
    in_use: predictive.Model | None
    rescore_pending: bool


def model_status(session: Session) -> ModelStatus:
    """The last training, the model in use, and whether scores are still catching up."""
    state = session.get(ScoringState, STATE)
    current = predictive.current_model(session)
    version = current.version if current else None
    if state is None:
        pending = version is not None
    else:
        pending = (
            state.rules_version != state.scored_rules_version
            or version != state.scored_model_version
        )
    return ModelStatus(predictive.latest_attempt(session), current, pending)


def train_model(session: Session, *, actor: Actor | None) -> ScoringModel:
    """Retrain now (admins and managers); everyone is rescored by the refresh job."""
    if actor is not None:
        actor.require(Role.manager)
    model = predictive.train(session, actor=actor)
    record_audit(
        session,
        actor=actor,
        action="train",
        record_type="lead_scoring_model",
        record_id=str(model.version),
        after={"status": model.status, "won": model.won, "lost": model.lost},
    )
    return model


def score_summary(session: Session, person_id: uuid.UUID) -> dict[str, dict[str, Any]]:
    """Both scores of a person in brief, for the profile."""
    rows = {
        r.kind: r
        for r in session.scalars(select(LeadScore).where(LeadScore.person_id == person_id))
    }
    return {
        kind: {
            "value": row.value if row else None,
            "automatic": row.automatic if row else None,
            "overridden": row is not None and row.override_value is not None,
        }
        for kind in SCORE_KINDS
        for row in [rows.get(kind)]
    }
