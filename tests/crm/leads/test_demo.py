"""The demo's leads are scored, explained and assigned, and its model learned something."""

from __future__ import annotations

import json

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select
from sqlalchemy.orm import Session
from typer.testing import CliRunner

from patron.cli import app
from patron.core.settings import Settings
from patron.crm.leads.models import LeadAssignment, LeadScore, ScoringModel, ScoringRule
from patron.identity.models import Person


def test_demo_leads_are_scored_trained_and_assigned_with_reasons(
    settings: Settings,
    monkeypatch: pytest.MonkeyPatch,
    runtime: object,
    db: Session,
    client: TestClient,
) -> None:
    monkeypatch.setenv("PATRON_DATABASE_URL", str(settings.database_url))
    monkeypatch.setenv("PATRON_DATA_DIR", str(settings.data_dir))
    loaded = CliRunner().invoke(app, ["demo", "--people", "400", "--json"])
    assert loaded.exit_code == 0, loaded.output
    db.rollback()
    assert db.scalar(select(func.count()).select_from(ScoringRule)) == 8
    model = db.scalar(select(ScoringModel).order_by(ScoringModel.version.desc()).limit(1))
    assert model is not None
    assert model.status == "trained", model.message
    assert model.won >= 10
    assert model.lost >= 10
    leads = select(Person.id).where(Person.merged_into.is_(None), Person.lifecycle_stage == "lead")
    scored = select(func.count()).where(
        LeadScore.person_id.in_(leads), LeadScore.kind == "lead_score", LeadScore.value > 0
    )
    assert (db.scalar(scored) or 0) > 20
    predicted = select(func.count()).where(
        LeadScore.person_id.in_(leads), LeadScore.kind == "predictive_lead_score"
    )
    assert (db.scalar(predicted) or 0) > 20
    reasons = list(db.scalars(select(LeadAssignment.reason)))
    assert len(reasons) > 20
    assert any(r.startswith("rule 'EMEA' (country in DE, FR) -> team Field sales") for r in reasons)
    assert any(r.startswith("no rule matched; default team Inside sales") for r in reasons)
    # The admin sees why a lead scores what it does.
    summary = json.loads(loaded.stdout)
    login = {"email": summary["admin_email"], "password": summary["admin_password"]}
    assert client.post("/v1/session", json=login).status_code == 200
    top = client.get(
        "/v1/contacts",
        params={"sort": "-lead_score", "limit": 1, "filter": "lifecycle_stage:eq:lead"},
    ).json()["items"][0]
    explained = client.get(f"/v1/persons/{top['id']}/scores").json()
    assert explained["lead_score"]["factors"]
    assert explained["predictive_lead_score"]["factors"]
