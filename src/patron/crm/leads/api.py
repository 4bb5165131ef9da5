"""The lead scoring and assignment API."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Query, Response, status

from patron.auth.deps import CurrentActor
from patron.core.web import DB, ListParams
from patron.crm.leads import assignment, scoring
from patron.crm.leads.conditions import describe_all, stored_conditions
from patron.crm.leads.models import LeadAssignment, ScoringRule
from patron.crm.leads.schemas import (
    AssignmentLogOut,
    AssignmentLogPage,
    AssignmentRuleIn,
    AssignmentRuleOut,
    AssignmentRulePatch,
    DefaultTeamIn,
    MemberIn,
    MemberOut,
    ModelOut,
    OverrideIn,
    OverrideOut,
    RebalanceIn,
    RebalanceOut,
    RunIn,
    RunOut,
    ScoreOut,
    ScoresOut,
    ScoringRuleIn,
    ScoringRuleOut,
    ScoringRulePatch,
    TeamOut,
    WaitingOut,
)

router = APIRouter(prefix="/v1", tags=["leads"])


# --- scoring rules ---------------------------------------------------------------------


def _scoring_rule_out(rule: ScoringRule) -> ScoringRuleOut:
    return ScoringRuleOut(
        id=rule.id,
        name=rule.name,
        conditions=rule.conditions,
        description=describe_all(stored_conditions(rule.conditions)),
        points=rule.points,
        half_life_days=rule.half_life_days,
        active=rule.active,
        created_at=rule.created_at,
        updated_at=rule.updated_at,
    )


@router.get("/lead-scoring/rules", response_model=list[ScoringRuleOut])
def list_scoring_rules(db: DB, _actor: CurrentActor) -> list[ScoringRuleOut]:
    """Every lead scoring rule."""
    return [_scoring_rule_out(r) for r in scoring.list_rules(db)]


@router.post(
    "/lead-scoring/rules", response_model=ScoringRuleOut, status_code=status.HTTP_201_CREATED
)
def create_scoring_rule(body: ScoringRuleIn, db: DB, actor: CurrentActor) -> ScoringRuleOut:
    """Add a rule (admins); everyone's rule score is recomputed within a minute."""
    rule = scoring.create_rule(db, actor=actor, values=body.model_dump())
    db.commit()
    return _scoring_rule_out(rule)


@router.get("/lead-scoring/rules/{rule_id}", response_model=ScoringRuleOut)
def get_scoring_rule(rule_id: int, db: DB, _actor: CurrentActor) -> ScoringRuleOut:
    """One scoring rule."""
    return _scoring_rule_out(scoring.get_rule(db, rule_id))


@router.patch("/lead-scoring/rules/{rule_id}", response_model=ScoringRuleOut)
def update_scoring_rule(
    rule_id: int, body: ScoringRulePatch, db: DB, actor: CurrentActor
) -> ScoringRuleOut:
    """Change a rule (admins)."""
    rule = scoring.update_rule(
        db, actor=actor, rule_id=rule_id, changes=body.model_dump(exclude_unset=True)
    )
    db.commit()
    return _scoring_rule_out(rule)


@router.delete("/lead-scoring/rules/{rule_id}", status_code=status.HTTP_204_NO_CONTENT)
def delete_scoring_rule(rule_id: int, db: DB, actor: CurrentActor) -> Response:
    """Remove a rule (admins)."""
    scoring.delete_rule(db, actor=actor, rule_id=rule_id)
    db.commit()
    return Response(status_code=status.HTTP_204_NO_CONTENT)


# --- the predictive model --------------------------------------------------------------


def _model_out(found: scoring.ModelStatus) -> ModelOut:
    latest, in_use = found.latest, found.in_use
    features = sorted(in_use.spec) if in_use else []
    if latest is None:
        return ModelOut(
            version=None,
            status="untrained",
            message="no model has been trained yet",
            won=0,
            lost=0,
            trained_at=None,
            trained_by=None,
            in_use=None,
            features=[],
            rescore_pending=found.rescore_pending,
        )
    return ModelOut(
        version=latest.version,
        status=latest.status,
        message=latest.message,
        won=latest.won,
        lost=latest.lost,
        trained_at=latest.trained_at,
        trained_by=latest.trained_by,
        in_use=in_use.version if in_use else None,
        features=features,
        rescore_pending=found.rescore_pending,
    )


@router.get("/lead-scoring/model", response_model=ModelOut)
def get_model(db: DB, _actor: CurrentActor) -> ModelOut:
    """The predictive model: the last training, the version in use and its features."""
    return _model_out(scoring.model_status(db))


@router.post("/lead-scoring/retrain", response_model=ModelOut)
def retrain(db: DB, actor: CurrentActor) -> ModelOut:
    """Train the predictive model on the won and lost history now (admins, managers).
    Too little history answers 200 with status `insufficient` and changes no score;
    otherwise everyone is rescored with the new model within a minute."""
    scoring.train_model(db, actor=actor)
    db.commit()
    return _model_out(scoring.model_status(db))


# --- a person's scores -----------------------------------------------------------------


def _score_out(view: scoring.ScoreView) -> ScoreOut:
    return ScoreOut(
        kind=view.kind,
        value=view.value,
        automatic=view.automatic,
        override=OverrideOut(**view.override) if view.override else None,
        computed_at=view.computed_at,
        model_version=view.model_version,
        factors=view.factors,
        explanation=view.explanation,
        note=view.note,
    )


def _scores_out(db: DB, actor: CurrentActor, person_id: uuid.UUID) -> ScoresOut:
    live_id, views = scoring.person_scores(db, actor=actor, person_id=person_id)
    return ScoresOut(
        person_id=live_id,
        lead_score=_score_out(views["lead_score"]),
        predictive_lead_score=_score_out(views["predictive_lead_score"]),
    )


@router.get("/persons/{person_id}/scores", response_model=ScoresOut)
def person_scores(person_id: uuid.UUID, db: DB, actor: CurrentActor) -> ScoresOut:
    """Both scores of a person: shown, automatic and override values, and the factors."""
    return _scores_out(db, actor, person_id)


@router.put("/persons/{person_id}/scores/{kind}", response_model=ScoresOut)
def override_score(
    person_id: uuid.UUID, kind: str, body: OverrideIn, db: DB, actor: CurrentActor
) -> ScoresOut:
    """Override `lead_score` or `predictive_lead_score` with a value (0-100) and a reason;
    the automatic value keeps being computed beside it."""
    scoring.set_override(
        db, actor=actor, person_id=person_id, kind=kind, value=body.value, reason=body.reason
    )
    db.commit()
    return _scores_out(db, actor, person_id)


@router.delete("/persons/{person_id}/scores/{kind}", response_model=ScoresOut)
def remove_override(person_id: uuid.UUID, kind: str, db: DB, actor: CurrentActor) -> ScoresOut:
    """Remove an override: the automatic value shows again."""
    scoring.remove_override(db, actor=actor, person_id=person_id, kind=kind)
    db.commit()
    return _scores_out(db, actor, person_id)


# --- assignment: teams -----------------------------------------------------------------


def _team_out(view: assignment.TeamView) -> TeamOut:
    return TeamOut(
        team_id=view.team_id,
        name=view.name,
        is_default=view.is_default,
        members=[MemberOut(**vars(m)) for m in view.members],
    )


@router.get("/assignment/teams", response_model=list[TeamOut])
def list_assignment_teams(db: DB, _actor: CurrentActor) -> list[TeamOut]:
    """Every team with its members' capacity, weight, availability and 30-day load."""
    return [_team_out(t) for t in assignment.list_teams(db)]


@router.put("/assignment/teams/{team_id}/members/{user_id}", response_model=MemberOut)
def update_member(
    team_id: uuid.UUID, user_id: uuid.UUID, body: MemberIn, db: DB, actor: CurrentActor
) -> MemberOut:
    """Set a member's `capacity`, `weight` or `available` (admins; managers of the team)."""
    view = assignment.update_member(
        db,
        actor=actor,
        team_id=team_id,
        user_id=user_id,
        changes=body.model_dump(exclude_unset=True),
    )
    db.commit()
    return MemberOut(**vars(view))


@router.put("/assignment/default-team", response_model=TeamOut | None)
def set_default_team(body: DefaultTeamIn, db: DB, actor: CurrentActor) -> TeamOut | None:
    """Choose the team leads go to when no rule routes them (admins); null: none."""
    view = assignment.set_default_team(db, actor=actor, team_id=body.team_id)
    db.commit()
    return _team_out(view) if view else None


# --- assignment: rules -----------------------------------------------------------------


def _rule_out(view: assignment.RuleView) -> AssignmentRuleOut:
    rule = view.rule
    return AssignmentRuleOut(
        id=rule.id,
        name=rule.name,
        team_id=rule.team_id,
        priority=rule.priority,
        conditions=rule.conditions,
        description=describe_all(stored_conditions(rule.conditions)),
        active=rule.active,
        created_at=rule.created_at,
        updated_at=rule.updated_at,
        matches_now=view.matches_now,
        leads_examined=view.leads_examined,
        warning=view.warning,
    )


@router.get("/assignment/rules", response_model=list[AssignmentRuleOut])
def list_assignment_rules(db: DB, _actor: CurrentActor) -> list[AssignmentRuleOut]:
    """Assignment rules in the order they are tried, each with the leads it matches now."""
    return [_rule_out(assignment.view_rule(db, r)) for r in assignment.list_rules(db)]


@router.post(
    "/assignment/rules", response_model=AssignmentRuleOut, status_code=status.HTTP_201_CREATED
)
def create_assignment_rule(
    body: AssignmentRuleIn, db: DB, actor: CurrentActor
) -> AssignmentRuleOut:
    """Send leads matching the conditions to a team (admins; managers for their teams).
    A rule that matches no current lead is saved, with a `warning`."""
    view = assignment.create_rule(db, actor=actor, values=body.model_dump(exclude_unset=True))
    db.commit()
    return _rule_out(view)


@router.get("/assignment/rules/{rule_id}", response_model=AssignmentRuleOut)
def get_assignment_rule(rule_id: int, db: DB, _actor: CurrentActor) -> AssignmentRuleOut:
    """One assignment rule."""
    return _rule_out(assignment.view_rule(db, assignment.get_rule(db, rule_id)))


@router.patch("/assignment/rules/{rule_id}", response_model=AssignmentRuleOut)
def update_assignment_rule(
    rule_id: int, body: AssignmentRulePatch, db: DB, actor: CurrentActor
) -> AssignmentRuleOut:
    """Change an assignment rule."""
    view = assignment.update_rule(
        db, actor=actor, rule_id=rule_id, changes=body.model_dump(exclude_unset=True)
    )
    db.commit()
    return _rule_out(view)


@router.delete("/assignment/rules/{rule_id}", status_code=status.HTTP_204_NO_CONTENT)
def delete_assignment_rule(rule_id: int, db: DB, actor: CurrentActor) -> Response:
    """Remove an assignment rule."""
    assignment.delete_rule(db, actor=actor, rule_id=rule_id)
    db.commit()
    return Response(status_code=status.HTTP_204_NO_CONTENT)


# --- assignment: running, rebalancing, the log -----------------------------------------


def _log_out(entries: list[LeadAssignment]) -> list[AssignmentLogOut]:
    return [AssignmentLogOut.model_validate(e) for e in entries]


@router.post("/assignment/run", response_model=RunOut)
def run_assignment(db: DB, actor: CurrentActor, body: RunIn | None = None) -> RunOut:
    """Assign the waiting leads now (admins, managers), as the background job does."""
    report = assignment.assign_leads(db, actor=actor, person_ids=body.person_ids if body else None)
    db.commit()
    return RunOut(
        assigned=report.assigned,
        waiting=report.waiting,
        assignments=_log_out(report.assignments),
        waiting_leads=[WaitingOut(**w) for w in report.waiting_leads],
        by_team=report.by_team,
    )


@router.post("/assignment/rebalance", response_model=RebalanceOut)
def rebalance(body: RebalanceIn, db: DB, actor: CurrentActor) -> RebalanceOut:
    """Redistribute a team's open, unworked leads among its available members by weight
    and capacity (admins; managers of the team); `from_user_id` empties one member's."""
    report = assignment.rebalance(
        db,
        actor=actor,
        team_id=body.team_id,
        from_user_id=body.from_user_id,
        include_worked=body.include_worked,
    )
    db.commit()
    return RebalanceOut(
        moved=report.moved,
        left=report.left,
        moves=_log_out(report.moves),
        before=report.before,
        after=report.after,
    )


@router.get("/assignment/log", response_model=AssignmentLogPage)
def assignment_log(
    db: DB,
    actor: CurrentActor,
    params: ListParams,
    person_id: uuid.UUID | None = None,
    owner_id: Annotated[
        uuid.UUID | None, Query(description="Assigned to or taken from this user.")
    ] = None,
    team_id: uuid.UUID | None = None,
) -> AssignmentLogPage:
    """Every assignment and reassignment with its reason, newest first (entries about
    persons you may see; managers also their teams')."""
    page = assignment.list_assignments(
        db, actor=actor, query=params, person_id=person_id, owner_id=owner_id, team_id=team_id
    )
    return AssignmentLogPage(
        items=_log_out(page.items),
        total=page.total,
        total_exact=page.total_exact,
        next_cursor=page.next_cursor,
    )
