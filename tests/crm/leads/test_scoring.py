"""The rule score: rules, points, decay, clamping, explanations, overrides, merges."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from patron.collect.models import Event
from patron.core.runtime import Runtime
from patron.crm.leads.jobs import refresh_scores
from patron.crm.leads.models import LeadScore
from patron.pipeline import rebuild
from tests.conftest import MakeUser, Tracker, User, assert_error
from tests.crm.leads.conftest import People

GERMAN = {
    "name": "German",
    "conditions": [{"kind": "field", "name": "country", "op": "eq", "value": "DE"}],
    "points": 20,
}
PRICING = {
    "name": "Pricing three times",
    "conditions": [{"kind": "event", "event": "Pricing Viewed", "within_days": 30, "min_count": 3}],
    "points": 30,
}
RECENT = {"name": "Recent", "conditions": [{"kind": "recency", "within_days": 7}], "points": 10}
STUDENT = {
    "name": "Student",
    "conditions": [{"kind": "trait", "name": "plan", "op": "eq", "value": "student"}],
    "points": -15,
}


def add_rules(client: TestClient, admin: User, *rules: dict[str, Any]) -> list[dict[str, Any]]:
    made = []
    for rule in rules:
        answer = client.post("/v1/lead-scoring/rules", json=rule, headers=admin.headers)
        assert answer.status_code == 201, answer.text
        made.append(answer.json())
    return made


def scores(client: TestClient, user: User, person: str) -> dict[str, Any]:
    answer = client.get(f"/v1/persons/{person}/scores", headers=user.headers)
    assert answer.status_code == 200, answer.text
    body: dict[str, Any] = answer.json()
    return body


def test_rule_score_adds_matching_rules_clamps_and_explains(
    client: TestClient, admin: User, people: People
) -> None:
    rules = add_rules(client, admin, GERMAN, PRICING, RECENT, STUDENT)
    assert rules[1]["description"] == "'Pricing Viewed' at least 3 times in 30 days"
    pricing = [("Pricing Viewed", d, {}) for d in (1, 2, 5)]
    found = people(
        {"email": "ada@example.com", "traits": {"address": {"country": "DE"}}, "events": pricing},
        {
            "email": "bo@example.com",
            "traits": {"country": "FR", "plan": "student"},
            "events": [*pricing[:2], ("Pricing Viewed", 45, {})],
        },
    )
    ada, bo = found["ada@example.com"], found["bo@example.com"]
    mine = scores(client, admin, ada)["lead_score"]
    assert mine["value"] == mine["automatic"] == 60
    assert [(f["name"], f["effect"]) for f in mine["factors"]] == [
        ("Pricing three times", 30),
        ("German", 20),
        ("Recent", 10),
    ]
    assert mine["override"] is None
    assert mine["computed_at"] is not None
    # Two recent views and one too old do not make three; 10 - 15 is clamped to 0.
    theirs = scores(client, admin, bo)["lead_score"]
    assert theirs["value"] == 0
    assert theirs["explanation"] == {"sum": -5, "clamped": True}
    assert {f["name"] for f in theirs["factors"]} == {"Recent", "Student"}
    # Scores show on contacts and profiles, and lists filter and sort on them.
    listed = client.get(
        "/v1/contacts", params={"sort": "-lead_score"}, headers=admin.headers
    ).json()
    assert [c["id"] for c in listed["items"]] == [ada, bo]
    assert listed["items"][0]["lead_score"] == 60
    high = client.get(
        "/v1/contacts", params={"filter": "lead_score:gte:50"}, headers=admin.headers
    ).json()
    assert [c["id"] for c in high["items"]] == [ada]
    unscored = client.get(
        "/v1/contacts", params={"filter": "predictive_lead_score:empty:"}, headers=admin.headers
    ).json()
    assert unscored["total"] == 2
    assert client.get(f"/v1/contacts/{ada}", headers=admin.headers).json()["lead_score"] == 60
    profile = client.get(f"/v1/persons/{ada}", headers=admin.headers).json()
    assert profile["scores"]["lead_score"] == {"value": 60, "automatic": 60, "overridden": False}
    predictive = scores(client, admin, ada)["predictive_lead_score"]
    assert predictive["value"] is None
    assert predictive["note"] == "no model has been trained yet"


def test_points_decay_from_the_time_of_their_evidence(
    client: TestClient, admin: User, people: People
) -> None:
    add_rules(
        client,
        admin,
        {
            "name": "Webinar",
            "conditions": [{"kind": "event", "event": "Webinar Attended", "within_days": 365}],
            "points": 40,
            "half_life_days": 10,
        },
        {
            "name": "Enterprise plan",
            "conditions": [{"kind": "trait", "name": "plan", "op": "eq", "value": "enterprise"}],
            "points": 30,
            "half_life_days": 30,
        },
    )
    person = people(
        {
            "email": "cy@example.com",
            "traits": {"plan": "enterprise"},
            "seen_days_ago": 30,
            "events": [("Webinar Attended", 20, {})],
        }
    )["cy@example.com"]
    factors = {f["name"]: f for f in scores(client, admin, person)["lead_score"]["factors"]}
    # Two half-lives: a quarter of 40; one half-life: half of 30.
    assert factors["Webinar"]["effect"] == pytest.approx(10, abs=0.1)
    assert factors["Webinar"]["age_days"] == pytest.approx(20, abs=0.1)
    assert factors["Enterprise plan"]["effect"] == pytest.approx(15, abs=0.1)
    assert scores(client, admin, person)["lead_score"]["value"] == pytest.approx(25, abs=0.2)


def test_rule_changes_rescore_everyone_through_the_refresh_job(
    client: TestClient, admin: User, people: People, runtime: Runtime
) -> None:
    person = people({"email": "di@example.com", "traits": {"country": "DE"}})["di@example.com"]
    rule = add_rules(client, admin, GERMAN)[0]
    assert scores(client, admin, person)["lead_score"]["value"] is None
    model = client.get("/v1/lead-scoring/model", headers=admin.headers).json()
    assert model["rescore_pending"] is True
    assert refresh_scores(runtime.sessions, runtime.settings) == 1
    assert scores(client, admin, person)["lead_score"]["value"] == 20
    assert (
        client.get("/v1/lead-scoring/model", headers=admin.headers).json()["rescore_pending"]
        is False
    )
    changed = client.patch(
        f"/v1/lead-scoring/rules/{rule['id']}", json={"points": 35}, headers=admin.headers
    )
    assert changed.status_code == 200, changed.text
    refresh_scores(runtime.sessions, runtime.settings)
    assert scores(client, admin, person)["lead_score"]["value"] == 35
    # Nothing changed: only stale scores are looked at, and there are none.
    assert refresh_scores(runtime.sessions, runtime.settings) == 0
    paused = client.patch(
        f"/v1/lead-scoring/rules/{rule['id']}", json={"active": False}, headers=admin.headers
    )
    assert paused.json()["active"] is False
    refresh_scores(runtime.sessions, runtime.settings)
    assert scores(client, admin, person)["lead_score"]["value"] is None
    gone = client.delete(f"/v1/lead-scoring/rules/{rule['id']}", headers=admin.headers)
    assert gone.status_code == 204
    assert client.get("/v1/lead-scoring/rules", headers=admin.headers).json() == []
    audit = client.get(
        "/v1/audit", params={"record_type": "lead_scoring_rule"}, headers=admin.headers
    ).json()
    assert [e["action"] for e in audit["items"]] == ["delete", "update", "update", "create"]


@pytest.mark.parametrize(
    ("change", "status", "field"),
    [
        ({"points": "lots"}, 400, "points"),
        ({"points": True}, 400, "points"),
        ({"points": 500}, 400, "points"),
        ({"points": 0}, 400, "points"),
        ({"half_life_days": 0}, 400, "half_life_days"),
        ({"half_life_days": -3}, 400, "half_life_days"),
        ({"half_life_days": "weekly"}, 400, "half_life_days"),
        ({"half_life_days": 1e9}, 400, "half_life_days"),
        (
            {"conditions": [{"kind": "trait", "name": "plan", "op": "~", "value": 1}]},
            400,
            "conditions[0].op",
        ),
        ({"conditions": "plan is pro"}, 400, "conditions"),
        ({"conditions": []}, 400, "conditions"),
        ({"name": " "}, 400, "name"),
        ({"name": "German"}, 409, "name"),
        ({"surprise": 1}, 422, "surprise"),
    ],
)
def test_bad_scoring_rules_are_refused_naming_the_field(
    client: TestClient, admin: User, change: dict[str, Any], status: int, field: str
) -> None:
    add_rules(client, admin, GERMAN)
    rule = {**RECENT, **change}
    assert_error(
        client.post("/v1/lead-scoring/rules", json=rule, headers=admin.headers), status, field
    )
    assert len(client.get("/v1/lead-scoring/rules", headers=admin.headers).json()) == 1


def test_decay_needs_evidence_with_a_time_and_rules_need_an_admin(
    client: TestClient, admin: User, make_user: MakeUser
) -> None:
    decaying_field = {**GERMAN, "half_life_days": 7}
    answer = client.post("/v1/lead-scoring/rules", json=decaying_field, headers=admin.headers)
    assert_error(answer, 400, "half_life_days")
    manager = make_user("manager")
    assert_error(client.post("/v1/lead-scoring/rules", json=GERMAN, headers=manager.headers), 403)
    assert_error(client.get("/v1/lead-scoring/rules/999", headers=admin.headers), 404, "rule_id")
    missing = {"conditions": GERMAN["conditions"], "points": 5}
    assert_error(client.post("/v1/lead-scoring/rules", json=missing, headers=admin.headers), 422)


def test_an_override_is_shown_until_removed_while_the_automatic_value_goes_on(
    client: TestClient,
    admin: User,
    make_user: MakeUser,
    people: People,
    tracker: Tracker,
    runtime: Runtime,
) -> None:
    add_rules(client, admin, GERMAN, RECENT)
    person = people({"email": "ed@example.com", "traits": {"country": "DE"}})["ed@example.com"]
    url = f"/v1/persons/{person}/scores/lead_score"
    for body, status, field in [
        ({"value": 101, "reason": "x"}, 400, "value"),
        ({"value": "high", "reason": "x"}, 400, "value"),
        ({"value": 90, "reason": "  "}, 400, "reason"),
        ({"value": 90}, 422, "reason"),
    ]:
        assert_error(client.put(url, json=body, headers=admin.headers), status, field)
    wrong_kind = client.put(
        f"/v1/persons/{person}/scores/karma",
        json={"value": 1, "reason": "x"},
        headers=admin.headers,
    )
    assert_error(wrong_kind, 404, "kind")
    analyst = make_user("analyst")
    assert_error(client.put(url, json={"value": 9, "reason": "x"}, headers=analyst.headers), 403)
    rep = make_user("sales")
    assert_error(client.put(url, json={"value": 9, "reason": "x"}, headers=rep.headers), 404)
    done = client.put(url, json={"value": 90, "reason": "Met at the fair"}, headers=admin.headers)
    assert done.status_code == 200, done.text
    score = done.json()["lead_score"]
    assert (score["value"], score["automatic"]) == (90, 30)
    assert score["override"]["reason"] == "Met at the fair"
    assert score["override"]["by"] == admin.email
    # New evidence changes the automatic value; the override stays what everyone sees.
    tracker.send({"type": "identify", "userId": "u-ed@example.com", "traits": {"country": "FR"}})
    score = scores(client, admin, person)["lead_score"]
    assert (score["value"], score["automatic"]) == (90, 10)
    listed = client.get(
        "/v1/contacts", params={"filter": "lead_score:eq:90"}, headers=admin.headers
    )
    assert listed.json()["total"] == 1
    removed = client.delete(url, headers=admin.headers)
    assert removed.status_code == 200
    assert removed.json()["lead_score"]["value"] == 10
    assert_error(client.delete(url, headers=admin.headers), 404, "kind")
    audit = client.get(
        "/v1/audit", params={"record_type": "person", "record_id": person}, headers=admin.headers
    ).json()
    actions = [e["action"] for e in audit["items"]]
    assert actions == ["remove_score_override", "override_score"]
    assert audit["items"][1]["after"]["lead_score"]["override"] == 90
    with runtime.readers() as session:
        names = list(session.scalars(select(Event.event).where(Event.event.like("Lead Score%"))))
    assert names == ["Lead Score Overridden", "Lead Score Override Removed"]


def test_a_merge_keeps_an_override_from_either_side_and_rescores_the_survivor(
    client: TestClient, admin: User, people: People, runtime: Runtime
) -> None:
    add_rules(client, admin, GERMAN, PRICING)
    found = people(
        {"email": "old@example.com", "traits": {"country": "DE"}},
        {
            "email": "new@example.com",
            "events": [
                ("Pricing Viewed", 1, {}),
                ("Pricing Viewed", 2, {}),
                ("Pricing Viewed", 3, {}),
            ],
        },
    )
    older, newer = found["old@example.com"], found["new@example.com"]
    body = {"value": 75, "reason": "Asked for a quote"}
    client.put(f"/v1/persons/{newer}/scores/lead_score", json=body, headers=admin.headers)
    merged = client.post(
        f"/v1/persons/{older}/merge", json={"other_id": newer}, headers=admin.headers
    )
    assert merged.status_code == 200, merged.text
    assert merged.json()["survivor_id"] == older
    score = scores(client, admin, older)["lead_score"]
    assert score["value"] == 75
    assert score["override"]["reason"] == "Asked for a quote"
    assert score["automatic"] == 50  # the survivor now has both sides' evidence
    # A rebuild derives persons again from the log; the override, a decision, stays.
    rebuild(runtime.sessions, runtime.settings)
    score = scores(client, admin, older)["lead_score"]
    assert (score["value"], score["automatic"]) == (75, 50)
    with runtime.readers() as session:
        assert not list(session.scalars(select(LeadScore).where(LeadScore.stale)))


def test_an_override_follows_a_chain_of_merges_made_in_one_batch(
    client: TestClient, admin: User, tracker: Tracker, runtime: Runtime, lookup: Any
) -> None:
    for anonymous, email in (("desk", "first"), ("phone", "mid"), ("tablet", "new")):
        tracker.send(
            {"type": "identify", "anonymousId": anonymous, "traits": {"email": f"{email}@ex.com"}}
        )
    # Rules from now on: the persons in the middle of the chain have no score row yet.
    add_rules(client, admin, GERMAN)
    oldest = lookup(email="first@ex.com")["id"]
    newest = lookup(email="new@ex.com")["id"]
    body = {"value": 75, "reason": "Met at the fair"}
    put = f"/v1/persons/{newest}/scores/lead_score"
    assert client.put(put, json=body, headers=admin.headers).status_code == 200
    # Processed together: the tablet's person merges into the phone's, then the phone's
    # (holding it) into the desk's.
    tracker.send(
        {
            "type": "track",
            "anonymousId": "tablet",
            "event": "Seen",
            "context": {"traits": {"email": "mid@ex.com"}},
        },
        {
            "type": "identify",
            "anonymousId": "desk",
            "traits": {"email": "mid@ex.com", "country": "DE"},
        },
    )
    assert lookup(email="new@ex.com")["id"] == oldest
    score = scores(client, admin, oldest)["lead_score"]
    assert (score["value"], score["override"]["reason"]) == (75, "Met at the fair")
    assert score["automatic"] == 20  # rescored once the merged traits were in


def test_an_unmerge_marks_both_sides_for_the_refresh_job(
    client: TestClient, admin: User, people: People, runtime: Runtime
) -> None:
    add_rules(client, admin, GERMAN)
    found = people(
        {"email": "p1@example.com", "traits": {"country": "DE"}},
        {"email": "p2@example.com", "traits": {"country": "FR"}},
    )
    first, second = found["p1@example.com"], found["p2@example.com"]
    merge = client.post(
        f"/v1/persons/{first}/merge", json={"other_id": second}, headers=admin.headers
    ).json()
    undone = client.post(f"/v1/merges/{merge['id']}/undo", json={}, headers=admin.headers)
    assert undone.status_code == 200, undone.text
    with runtime.readers() as session:
        assert list(session.scalars(select(LeadScore.stale)))
    assert refresh_scores(runtime.sessions, runtime.settings) >= 1
    assert scores(client, admin, first)["lead_score"]["value"] == 20
    assert scores(client, admin, second)["lead_score"]["value"] == 0
    with runtime.readers() as session:
        assert not list(session.scalars(select(LeadScore).where(LeadScore.stale)))
