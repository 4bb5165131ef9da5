"""The demo's workflow rules are at work on the demo's data."""

from __future__ import annotations

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session
from typer.testing import CliRunner

from patron.cli import app
from patron.core.settings import Settings
from patron.crm.models import Activity, Deal
from patron.crm.workflows.models import WorkflowRule, WorkflowRun
from patron.identity.models import Person


def test_the_demo_rules_onboard_won_deals_and_hand_qualified_leads_to_a_rep(
    settings: Settings, monkeypatch: pytest.MonkeyPatch, runtime: object, db: Session
) -> None:
    monkeypatch.setenv("PATRON_DATABASE_URL", str(settings.database_url))
    monkeypatch.setenv("PATRON_DATA_DIR", str(settings.data_dir))
    loaded = CliRunner().invoke(app, ["demo", "--people", "60", "--json"])
    assert loaded.exit_code == 0, loaded.output
    db.rollback()
    rules = {r.name: r for r in db.scalars(select(WorkflowRule))}
    assert set(rules) == {"Onboard won customers", "Sales-qualified leads to a rep"}
    all_runs = list(db.scalars(select(WorkflowRun)))
    assert all_runs
    assert {r.status for r in all_runs} == {"succeeded"}
    won = list(db.scalars(select(Deal).where(Deal.status == "won")))
    kickoffs = list(
        db.scalars(select(Activity).where(Activity.subject == "Onboarding kick-off call"))
    )
    assert sorted(str(t.deal_id) for t in kickoffs) == sorted(str(d.id) for d in won)
    assert all(
        t.owner_id == d.owner_id
        for t, d in zip(
            sorted(kickoffs, key=lambda t: str(t.deal_id)),
            sorted(won, key=lambda d: str(d.id)),
            strict=True,
        )
    )
    handed = [r for r in all_runs if r.rule_id == rules["Sales-qualified leads to a rep"].id]
    assert handed
    rep = rules["Sales-qualified leads to a rep"].actions[0]["user_id"]
    for run in handed:
        person = db.get(Person, run.record_id)
        assert person is not None
        assert str(person.owner_id) == rep
        assert person.lifecycle_stage == "salesqualifiedlead"
