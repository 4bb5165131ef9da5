"""The demo comes with two forms and their submissions, made through the public path."""

from __future__ import annotations

import json

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session
from typer.testing import CliRunner

from patron.auth.models import Team
from patron.cli import app
from patron.core.settings import Settings
from patron.crm.forms.models import Form, FormSubmission
from patron.identity.models import Identity, Person


def test_the_demo_has_forms_with_leads_campaigns_and_bots(
    settings: Settings, monkeypatch: pytest.MonkeyPatch, runtime: object, db: Session
) -> None:
    monkeypatch.setenv("PATRON_DATABASE_URL", str(settings.database_url))
    monkeypatch.setenv("PATRON_DATA_DIR", str(settings.data_dir))
    loaded = CliRunner().invoke(app, ["demo", "--people", "60", "--json"])
    assert loaded.exit_code == 0, loaded.output
    assert json.loads(loaded.stdout)["loaded_now"] is True
    db.rollback()
    forms = {f.slug: f for f in db.scalars(select(Form))}
    assert set(forms) == {"request-a-demo", "newsletter"}
    team = db.scalar(select(Team.id).where(Team.name == "Field sales"))
    assert forms["request-a-demo"].team_id == team
    assert [c["purpose"] for c in forms["newsletter"].consents] == ["marketing"]
    rows = list(db.scalars(select(FormSubmission)))
    assert len(rows) == 40
    accepted = [s for s in rows if s.status == "accepted"]
    assert {s.reason for s in rows if s.status == "rejected"} == {"honeypot"}
    assert all(s.processed_at is not None and s.person_id is not None for s in accepted)
    assert {s.assign_team_id for s in accepted if s.form_id == forms["request-a-demo"].id} == {team}
    assert {s.attribution.get("utm_source") for s in accepted} >= {"google", "newsletter", None}
    # Some leads browsed the shop anonymously before: their history is theirs now.
    joined = [s for s in accepted if s.anonymous_id]
    assert joined
    owners = set(
        db.scalars(
            select(Identity.person_id).where(
                Identity.kind == "anonymous_id",
                Identity.value.in_([s.anonymous_id for s in joined]),
            )
        )
    )
    assert owners == {s.person_id for s in joined}
    leads = db.scalar(
        select(func.count())
        .select_from(Person)
        .where(Person.lifecycle_stage == "lead", Person.first_touch.is_not(None))
    )
    assert leads == len({s.person_id for s in accepted})
