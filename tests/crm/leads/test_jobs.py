"""Leads in the processing loop: CRM changes rescore through events, and the scheduled jobs
(refresh with decay, retraining, assignment) run from the processor."""

from __future__ import annotations

import time
from datetime import timedelta

from fastapi.testclient import TestClient

from patron import pipeline
from patron.core.clock import utcnow
from patron.core.runtime import Runtime
from patron.core.settings import Settings
from patron.crm.leads import jobs
from patron.crm.leads.models import ScoringState
from patron.pipeline import Processor
from tests.conftest import MakeUser, Tracker, User
from tests.crm.leads.conftest import People, SetCrm


def test_the_jobs_are_scheduled_by_the_settings() -> None:
    every = {job.name: job.every_seconds for job in pipeline.JOBS}
    settings = Settings(lead_assign_interval_seconds=5, lead_retrain_interval_seconds=0)
    assert every["lead-assignment"](settings) == 5
    assert every["lead-retrain"](settings) == 0  # turned off
    assert every["lead-scores"](settings) == jobs.REFRESH_SECONDS
    assert every["lead-retrain"](Settings()) == 86400
    assert jobs.score_touched in Processor(None).handlers  # type: ignore[arg-type]


def test_a_crm_change_rescores_its_person_through_the_log(
    client: TestClient, admin: User, people: People, tracker: Tracker
) -> None:
    rule = {
        "name": "Sales qualified",
        "conditions": [
            {"kind": "field", "name": "lifecycle_stage", "op": "eq", "value": "salesqualifiedlead"}
        ],
        "points": 40,
    }
    assert (
        client.post("/v1/lead-scoring/rules", json=rule, headers=admin.headers).status_code == 201
    )
    person = people({"email": "sq@example.com"})["sq@example.com"]
    url = f"/v1/persons/{person}/scores"
    assert client.get(url, headers=admin.headers).json()["lead_score"]["value"] == 0
    changed = client.patch(
        f"/v1/contacts/{person}",
        json={"lifecycle_stage": "salesqualifiedlead"},
        headers=admin.headers,
    )
    assert changed.status_code == 200
    tracker.process()  # the "Lifecycle Stage Changed" event
    assert client.get(url, headers=admin.headers).json()["lead_score"]["value"] == 40


def test_the_processor_assigns_waiting_leads_and_refreshes_decayed_scores(
    client: TestClient,
    admin: User,
    make_user: MakeUser,
    people: People,
    set_crm: SetCrm,
    runtime: Runtime,
) -> None:
    rep = make_user("sales")
    crew = client.post("/v1/teams", json={"name": "Crew"}, headers=admin.headers).json()["id"]
    client.post(f"/v1/teams/{crew}/members", json={"user_id": rep.id}, headers=admin.headers)
    client.put("/v1/assignment/default-team", json={"team_id": crew}, headers=admin.headers)
    rule = {"name": "Seen", "conditions": [{"kind": "recency", "within_days": 30}], "points": 9}
    client.post("/v1/lead-scoring/rules", json=rule, headers=admin.headers)
    found = people({"email": "j1@example.com"})
    set_crm(list(found.values()), lifecycle_stage="lead")
    processor = Processor(runtime.sessions, settings=runtime.settings)
    long_ago = time.monotonic() - 10**6
    processor.run_due_jobs(dict.fromkeys(("lead-assignment", "lead-scores"), long_ago))
    contact = client.get(f"/v1/contacts/{found['j1@example.com']}", headers=admin.headers).json()
    assert contact["owner_id"] == rep.id
    assert contact["lead_score"] == 9
    # A day later the daily refresh rescores everyone again (decay); until then it does not.
    assert jobs.refresh_scores(runtime.sessions, runtime.settings) == 0
    with runtime.sessions() as session:
        state = session.get_one(ScoringState, "main")
        state.rescored_at = utcnow() - timedelta(days=1, seconds=1)
        session.commit()
    assert jobs.refresh_scores(runtime.sessions, runtime.settings) == 1
