"""Request and response shapes of the lead scoring and assignment API.

Rule bodies take ``conditions``, ``points``, ``half_life_days``, ``capacity`` and ``weight``
as any JSON: the services check them, so that a wrong one is a 400 naming the exact part
(``conditions[0].op``), the same from the API, the CLI and the demo.
"""

from __future__ import annotations

import uuid
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from patron.crm.schemas import Input, When

CONDITIONS = (
    "A list of conditions, all of which must hold: "
    '`{"kind": "trait", "name": "address.country", "op": "in", "value": ["DE", "FR"]}`, '
    "kinds trait, computed, field (lifecycle_stage, lead_status, owner_id, tags, country, "
    "region, custom.KEY), company (industry, size, name, domain), event (`event`, "
    "`within_days`, `min_count`, `where`) and recency (`within_days`); ops eq ne in not_in "
    "exists not_exists contains gt gte lt lte between."
)


# --- scoring ---------------------------------------------------------------------------


class ScoringRuleIn(Input):
    name: str
    conditions: Any = Field(description=CONDITIONS)
    points: Any = Field(description="Points added (or taken, negative), -100 to 100.")
    half_life_days: Any = Field(
        None, description="Points halve every this many days since the evidence; null: none."
    )
    active: bool = True


class ScoringRulePatch(Input):
    name: str | None = None
    conditions: Any = Field(None, description=CONDITIONS)
    points: Any = None
    half_life_days: Any = None
    active: bool | None = None


class ScoringRuleOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    name: str
    conditions: list[dict[str, Any]]
    description: str = Field(description="The conditions in words.")
    points: float
    half_life_days: float | None
    active: bool
    created_at: When
    updated_at: When


class ModelOut(BaseModel):
    version: int | None = Field(description="The latest training (null: never trained).")
    status: str = Field(description="trained, insufficient (too little history) or untrained.")
    message: str
    won: int
    lost: int
    trained_at: When | None
    trained_by: str | None
    in_use: int | None = Field(description="The version scores come from (null: none yet).")
    features: list[str] = Field(description="The features the model in use looks at.")
    rescore_pending: bool = Field(
        description="Scores are still being recomputed after a rule change or a retrain."
    )


class OverrideOut(BaseModel):
    value: float
    reason: str | None
    by: str | None
    at: When | None


class ScoreOut(BaseModel):
    kind: str
    value: float | None = Field(description="What is shown: the override, else the automatic.")
    automatic: float | None
    override: OverrideOut | None
    computed_at: When | None
    model_version: int | None
    factors: list[dict[str, Any]] = Field(
        description="What added or removed what: `name` and `effect` (points for the rule "
        "score, log-odds for the predictive score), biggest first."
    )
    explanation: dict[str, Any]
    note: str | None = Field(description="Why a score may be missing.")


class ScoresOut(BaseModel):
    person_id: uuid.UUID
    lead_score: ScoreOut
    predictive_lead_score: ScoreOut


class OverrideIn(Input):
    value: Any = Field(description="0 to 100.")
    reason: Any = Field(description="Why (required).")


# --- assignment ------------------------------------------------------------------------


class MemberIn(Input):
    capacity: Any = Field(None, description="Leads per rolling 30 days; null: unlimited.")
    weight: Any = Field(None, description="Share of the round robin, 1 to 100.")
    available: Any = Field(None, description="false: takes no new leads (opted out).")


class MemberOut(BaseModel):
    user_id: uuid.UUID
    email: str
    name: str
    capacity: int | None
    weight: int
    available: bool
    assigned_30d: int = Field(description="Leads received in the last 30 days.")


class TeamOut(BaseModel):
    team_id: uuid.UUID
    name: str
    is_default: bool
    members: list[MemberOut]


class DefaultTeamIn(Input):
    team_id: uuid.UUID | None


class AssignmentRuleIn(Input):
    name: str
    team_id: Any = Field(description="The team matching leads go to.")
    priority: Any = Field(None, description="Lower goes first; default: after the others.")
    conditions: Any = Field(default_factory=list, description=CONDITIONS + " Empty: every lead.")
    active: bool = True


class AssignmentRulePatch(Input):
    name: str | None = None
    team_id: Any = None
    priority: Any = None
    conditions: Any = Field(None, description=CONDITIONS)
    active: bool | None = None


class AssignmentRuleOut(BaseModel):
    id: int
    name: str
    team_id: uuid.UUID
    priority: int
    conditions: list[dict[str, Any]]
    description: str
    active: bool
    created_at: When
    updated_at: When
    matches_now: int = Field(description="Current open leads (owned or not) it matches.")
    leads_examined: int
    warning: str | None


class AssignmentLogOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    person_id: uuid.UUID
    from_owner_id: uuid.UUID | None
    to_owner_id: uuid.UUID | None
    team_id: uuid.UUID | None
    rule_id: int | None
    kind: str = Field(description="assign or rebalance.")
    reason: str
    score: float | None
    actor_id: uuid.UUID | None
    actor_label: str
    at: When


class AssignmentLogPage(BaseModel):
    items: list[AssignmentLogOut]
    total: int
    total_exact: bool = Field(
        True, description="False when total is only a lower bound: lists count up to 1,000."
    )
    next_cursor: str | None


class RunIn(Input):
    person_ids: list[uuid.UUID] | None = Field(None, description="Only these leads.")


class WaitingOut(BaseModel):
    person_id: uuid.UUID
    reason: str


class RunOut(BaseModel):
    assigned: int
    waiting: int = Field(description="Leads no team could take now; tried again next run.")
    assignments: list[AssignmentLogOut]
    waiting_leads: list[WaitingOut]
    by_team: dict[str, int]


class RebalanceIn(Input):
    team_id: uuid.UUID
    from_user_id: uuid.UUID | None = Field(
        None, description="Hand this member's open leads to the others (on leave)."
    )
    include_worked: bool = Field(False, description="Also move leads with activities logged.")


class RebalanceOut(BaseModel):
    moved: int
    left: int = Field(description="Leads that could not be placed (nobody with capacity).")
    moves: list[AssignmentLogOut]
    before: dict[str, int] = Field(description="User id -> open leads considered, before.")
    after: dict[str, int]
