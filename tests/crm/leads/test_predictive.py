"""The predictive score: labels from won and lost history, training, too little history,
held-out quality, explanations, and rescoring after a retrain."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from patron.core.runtime import Runtime
from patron.crm import deals
from patron.crm.leads import predictive
from patron.crm.leads.jobs import refresh_scores
from patron.crm.pipelines import StageSpec, create_pipeline
from tests.conftest import User, assert_error, run_json
from tests.crm.leads.conftest import People, SetCrm


def test_auc_is_the_chance_a_winner_outranks_a_loser() -> None:
    assert predictive.auc([0.1, 0.4, 0.35, 0.8], [False, False, True, True]) == 0.75
    assert predictive.auc([0.9, 0.8, 0.1], [True, True, False]) == 1.0
    assert predictive.auc([0.5, 0.5], [True, False]) == 0.5  # a tie counts half
    assert predictive.auc([0.2, 0.3], [True, True]) is None


def close_deals(runtime: Runtime, outcomes: dict[str, list[str]]) -> None:
    """Give each person deals that end as listed (won, lost or open)."""
    with runtime.sessions() as session:
        pipeline = create_pipeline(
            session, name="Sales", rotting_days=None, actor=None, stages=[StageSpec("Open", 10)]
        )
        for person, ends in outcomes.items():
            for end in ends:
                deal = deals.create_deal(
                    session,
                    actor=None,
                    values={
                        "name": "Deal",
                        "pipeline_id": pipeline.id,
                        "person_id": uuid.UUID(person),
                    },
                )
                if end != "open":
                    change: dict[str, Any] = {"status": end}
                    if end == "lost":
                        change["lost_reason"] = "Price"
                    deals.update_deal(session, actor=None, deal_id=deal.id, changes=change)
        session.commit()


def test_labels_come_from_deals_lifecycle_stages_and_lead_status(
    people: People, set_crm: SetCrm, runtime: Runtime
) -> None:
    found = people(*({"email": f"{n}@example.com"} for n in "abcdefg"))
    a, b, c, d, e, f, _g = (found[f"{n}@example.com"] for n in "abcdefg")
    close_deals(runtime, {a: ["lost", "won"], b: ["lost", "lost"], c: ["lost", "open"]})
    set_crm([d], lifecycle_stage="customer")
    set_crm([e], lead_status="unqualified")
    set_crm([f], lifecycle_stage="evangelist", lead_status="unqualified")
    with runtime.readers() as session:
        labels = {str(k): v for k, v in predictive.labelled(session).items()}
    assert labels == {a: True, b: False, d: True, e: False, f: True}


def train_set(people: People, set_crm: SetCrm, runtime: Runtime) -> dict[str, str]:
    """Won leads mostly on the enterprise plan who asked for demos; lost ones mostly free."""
    specs = []
    for i in range(48):
        won = i < 24
        typical = i % 6 != 0
        plan = ("enterprise" if won else "free") if typical else ("free" if won else "enterprise")
        demos = [("Demo Requested", 3, {}), ("Demo Requested", 9, {})] if won and typical else []
        specs.append(
            {
                "email": f"{'won' if won else 'lost'}{i}@example.com",
                "traits": {"plan": plan, "seats": 5 + i, "name": f"Person {i}"},
                "events": demos,
            }
        )
    specs.append(
        {
            "email": "hot@example.com",
            "traits": {"plan": "enterprise"},
            "events": [("Demo Requested", 1, {}), ("Demo Requested", 2, {})],
        }
    )
    specs.append({"email": "cold@example.com", "traits": {"plan": "free"}})
    found = people(*specs)
    won = [p for e, p in found.items() if e.startswith("won")]
    lost = [p for e, p in found.items() if e.startswith("lost")]
    set_crm(won[:16], lifecycle_stage="customer")
    set_crm(lost[:16], lead_status="unqualified")
    close_deals(runtime, {**{p: ["won"] for p in won[16:]}, **{p: ["lost"] for p in lost[16:]}})
    set_crm([found["hot@example.com"], found["cold@example.com"]], lifecycle_stage="lead")
    return found


def test_too_little_history_is_a_state_not_an_error(
    client: TestClient, admin: User, people: People, set_crm: SetCrm, runtime: Runtime
) -> None:
    found = people(*({"email": f"p{i}@example.com"} for i in range(5)))
    ids = list(found.values())
    set_crm(ids[:3], lifecycle_stage="customer")
    set_crm(ids[3:4], lead_status="unqualified")
    answer = client.post("/v1/lead-scoring/retrain", headers=admin.headers)
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["status"] == "insufficient"
    assert body["message"] == (
        "not enough history to train: 3 won, 1 lost (at least 10 of each are needed)"
    )
    assert body["in_use"] is None
    refresh_scores(runtime.sessions, runtime.settings)
    score = client.get(f"/v1/persons/{ids[4]}/scores", headers=admin.headers).json()
    assert score["predictive_lead_score"]["value"] is None
    assert score["predictive_lead_score"]["note"].startswith("not enough history to train")


def test_the_model_learns_from_history_explains_itself_and_rescores_everyone(
    client: TestClient, admin: User, people: People, set_crm: SetCrm, runtime: Runtime
) -> None:
    found = train_set(people, set_crm, runtime)
    hot, cold = found["hot@example.com"], found["cold@example.com"]
    trained = client.post("/v1/lead-scoring/retrain", headers=admin.headers).json()
    assert (trained["status"], trained["won"], trained["lost"]) == ("trained", 24, 24)
    assert trained["in_use"] == trained["version"]
    assert trained["rescore_pending"] is True
    assert "trait:plan" in trained["features"]
    assert "event:Demo Requested" in trained["features"]
    # Identifiers and free text say nothing about a new lead: they are left out.
    assert not {"trait:email", "trait:name"} & set(trained["features"])
    assert refresh_scores(runtime.sessions, runtime.settings) == 50
    model = client.get("/v1/lead-scoring/model", headers=admin.headers).json()
    assert model["rescore_pending"] is False

    def predicted(person: str) -> dict[str, Any]:
        body = client.get(f"/v1/persons/{person}/scores", headers=admin.headers).json()
        score: dict[str, Any] = body["predictive_lead_score"]
        return score

    warm, chilly = predicted(hot), predicted(cold)
    assert warm["value"] > 80 > 20 > chilly["value"]
    assert warm["model_version"] == trained["version"]
    assert warm["factors"][0]["effect"] > 0
    assert {"plan = enterprise", "'Demo Requested' events = 2-3"} <= {
        f["name"] for f in warm["factors"] if f["effect"] > 0
    }
    assert "plan = free" in {f["name"] for f in chilly["factors"] if f["effect"] < 0}
    assert warm["explanation"]["base_rate"] == 50
    # The processing loop scores the persons it touches with the model in use.
    lead = people({"email": "new@example.com", "traits": {"plan": "enterprise"}})
    assert predicted(lead["new@example.com"])["value"] is not None
    listed = client.get(
        "/v1/contacts",
        params={"filter": "lifecycle_stage:eq:lead", "sort": "-predictive_lead_score"},
        headers=admin.headers,
    ).json()
    assert [c["id"] for c in listed["items"]] == [hot, cold]


def test_held_out_persons_are_ranked_well(
    people: People, set_crm: SetCrm, runtime: Runtime
) -> None:
    train_set(people, set_crm, runtime)
    with runtime.sessions() as session:
        labels = predictive.labelled(session)
        ordered = sorted(labels, key=str)
        held_out = ordered[::3]
        row = predictive.train(session, persons=[p for p in ordered if p not in held_out])
        assert row.status == "trained"
        model = predictive.Model.from_row(row)
        probabilities = predictive.predict(session, model, held_out)
        session.rollback()
    quality = predictive.auc([probabilities[p] for p in held_out], [labels[p] for p in held_out])
    assert quality is not None
    assert quality >= 0.8


def test_retraining_needs_a_manager_and_runs_from_the_cli(
    client: TestClient,
    admin: User,
    make_user: Any,
    people: People,
    set_crm: SetCrm,
    runtime: Runtime,
    cli: CliRunner,
) -> None:
    sales = make_user("sales")
    assert_error(client.post("/v1/lead-scoring/retrain", headers=sales.headers), 403)
    manager = make_user("manager")
    untrained = client.get("/v1/lead-scoring/model", headers=manager.headers).json()
    assert (untrained["status"], untrained["version"]) == ("untrained", None)
    train_set(people, set_crm, runtime)
    done = run_json(cli, "leads", "retrain")
    assert (done["status"], done["won"], done["lost"]) == ("trained", 24, 24)
    assert done["rescored"] == 50
    again = client.post("/v1/lead-scoring/retrain", headers=manager.headers).json()
    assert again["version"] == done["version"] + 1
    me = client.get("/v1/me", headers=manager.headers).json()
    assert again["trained_by"] == me["email"]
    audit = client.get(
        "/v1/audit", params={"record_type": "lead_scoring_model"}, headers=admin.headers
    ).json()
    assert [(e["action"], e["record_id"], e["actor_id"]) for e in audit["items"]] == [
        ("train", str(again["version"]), me["id"]),
        ("train", str(done["version"]), None),
    ]


@pytest.mark.parametrize(
    ("value", "expected"),
    [(3, "<=3"), (3.5, "3..5"), (12, ">9"), ("3", "(none)"), (None, "(none)")],
)
def test_numbers_are_binned_by_quantiles_and_categories_compared_as_text(
    value: Any, expected: str
) -> None:
    spec = predictive.learn_spec([{"trait:seats": n, "trait:plan": "Pro "} for n in range(1, 11)])
    assert spec == {
        "trait:seats": {"type": "number", "edges": [3, 5, 7, 9]},
        "trait:plan": {"type": "category"},
    }
    encoded = predictive.encode(spec, {"trait:seats": value, "trait:plan": "PRO"})
    assert encoded == {"trait:seats": expected, "trait:plan": "pro"}
