"""Lead assignment: rules, default team, weighted round robin, capacity, availability,
preferred teams, the log, rebalancing, and bad input."""

from __future__ import annotations

import threading
import time
import uuid
from collections import Counter
from typing import Any

from fastapi.testclient import TestClient
from sqlalchemy import select
from typer.testing import CliRunner

from patron.collect.models import Event
from patron.core.runtime import Runtime
from patron.crm.leads.assignment import assign_leads
from patron.crm.leads.models import AssignmentMember, LeadAssignment
from patron.crm.models import Company
from patron.identity.models import Person
from tests.conftest import MakeUser, Tracker, User, assert_error, run_json
from tests.crm.leads.conftest import People, SetCrm


def team(client: TestClient, admin: User, name: str, *members: User) -> str:
    made = client.post("/v1/teams", json={"name": name}, headers=admin.headers)
    assert made.status_code == 201, made.text
    team_id: str = made.json()["id"]
    for member in members:
        added = client.post(
            f"/v1/teams/{team_id}/members", json={"user_id": member.id}, headers=admin.headers
        )
        assert added.status_code == 204, added.text
    return team_id


def settle(client: TestClient, admin: User, team_id: str, member: User, **settings: Any) -> None:
    answer = client.put(
        f"/v1/assignment/teams/{team_id}/members/{member.id}", json=settings, headers=admin.headers
    )
    assert answer.status_code == 200, answer.text


def default_team(client: TestClient, admin: User, team_id: str | None) -> None:
    answer = client.put(
        "/v1/assignment/default-team", json={"team_id": team_id}, headers=admin.headers
    )
    assert answer.status_code == 200, answer.text


def leads(people: People, set_crm: SetCrm, *specs: dict[str, Any]) -> dict[str, str]:
    found = people(*specs)
    set_crm(list(found.values()), lifecycle_stage="lead")
    return found


def run(client: TestClient, user: User, **body: Any) -> dict[str, Any]:
    answer = client.post("/v1/assignment/run", json=body or None, headers=user.headers)
    assert answer.status_code == 200, answer.text
    result: dict[str, Any] = answer.json()
    return result


def owners(runtime: Runtime, persons: list[str]) -> dict[str, str | None]:
    with runtime.readers() as session:
        rows = session.execute(
            select(Person.id, Person.owner_id).where(Person.id.in_([uuid.UUID(p) for p in persons]))
        )
        return {str(p): str(o) if o else None for p, o in rows}


def test_weighted_round_robin_is_fair_across_runs(
    client: TestClient,
    admin: User,
    make_user: MakeUser,
    people: People,
    set_crm: SetCrm,
    runtime: Runtime,
) -> None:
    ann, bob = make_user("sales"), make_user("sales")
    inside = team(client, admin, "Inside sales", ann, bob)
    settle(client, admin, inside, ann, weight=2)
    default_team(client, admin, inside)
    first = leads(people, set_crm, *({"email": f"a{i}@example.com"} for i in range(6)))
    assert run(client, admin)["assigned"] == 6
    # A later run, as a later process would, goes on from where the round robin stood.
    second = leads(people, set_crm, *({"email": f"b{i}@example.com"} for i in range(9)))
    report = run(client, admin)
    assert report["assigned"] == 9
    assert report["by_team"] == {"Inside sales": 9}
    got = Counter(owners(runtime, [*first.values(), *second.values()]).values())
    assert got == {ann.id: 10, bob.id: 5}
    log = client.get("/v1/assignment/log", params={"limit": 3}, headers=admin.headers).json()
    assert log["total"] == 15
    assert log["items"][0]["reason"] == (
        "no rule matched; default team Inside sales, weighted round robin, unscored"
    )
    assert log["items"][0]["kind"] == "assign"
    assert log["items"][0]["actor_label"] == admin.email
    teams = client.get("/v1/assignment/teams", headers=admin.headers).json()
    loads = {m["user_id"]: m["assigned_30d"] for m in teams[0]["members"]}
    assert loads == {ann.id: 10, bob.id: 5}
    assert teams[0]["is_default"] is True
    # Nothing is left to do, and a second run changes nothing.
    assert run(client, admin) == {
        "assigned": 0,
        "waiting": 0,
        "assignments": [],
        "waiting_leads": [],
        "by_team": {},
    }


def test_rules_route_by_country_and_company_highest_score_first(
    client: TestClient,
    admin: User,
    make_user: MakeUser,
    people: People,
    set_crm: SetCrm,
    runtime: Runtime,
    tracker: Tracker,
) -> None:
    eve, fay, gus = make_user("sales"), make_user("sales"), make_user("sales")
    field = team(client, admin, "Field sales", eve)
    big = team(client, admin, "Enterprise", fay)
    inside = team(client, admin, "Inside sales", gus)
    default_team(client, admin, inside)
    emea = {
        "name": "EMEA",
        "team_id": field,
        "conditions": [{"kind": "field", "name": "country", "op": "in", "value": ["DE", "FR"]}],
    }
    sized = {
        "name": "Large companies",
        "team_id": big,
        "priority": 1,
        "conditions": [{"kind": "company", "name": "size", "op": "gte", "value": 1000}],
    }
    for rule in (emea, sized):
        made = client.post("/v1/assignment/rules", json=rule, headers=admin.headers)
        assert made.status_code == 201, made.text
    points = {
        "name": "German",
        "conditions": [{"kind": "field", "name": "country", "op": "eq", "value": "DE"}],
        "points": 72,
    }
    client.post("/v1/lead-scoring/rules", json=points, headers=admin.headers)
    found = leads(
        people,
        set_crm,
        {"email": "de@example.com", "traits": {"address": {"country": "DE"}}},
        {"email": "fr@example.com", "traits": {"country": "FR"}},
        {"email": "us@example.com", "traits": {"country": "US"}},
        {"email": "big@example.com", "traits": {"country": "DE"}},
    )
    tracker.send(
        {
            "type": "group",
            "userId": "u-big@example.com",
            "groupId": "megacorp",
            "traits": {"name": "Megacorp", "employees": 5000},
        }
    )
    with runtime.sessions() as session:
        company = session.scalar(select(Company).where(Company.group_id == "megacorp"))
        assert company is not None
        company.size = 5000
        session.commit()
    settle(client, admin, field, eve, capacity=1)
    report = run(client, admin)
    assert report["assigned"] == 4
    got = owners(runtime, list(found.values()))
    assert got[found["big@example.com"]] == fay.id
    # The German lead scores 72 and goes first: Field sales' one place is hers.
    assert got[found["de@example.com"]] == eve.id
    assert got[found["fr@example.com"]] == gus.id
    assert got[found["us@example.com"]] == gus.id
    reasons = {
        e["person_id"]: e["reason"]
        for e in client.get("/v1/assignment/log", headers=admin.headers).json()["items"]
    }
    assert reasons[found["de@example.com"]] == (
        "rule 'EMEA' (country in DE, FR) -> team Field sales, weighted round robin, score 72"
    )
    assert reasons[found["fr@example.com"]] == (
        "rule 'EMEA' (country in DE, FR) -> team Field sales: nobody available with "
        "capacity; default team Inside sales, weighted round robin, score 0"
    )
    assert reasons[found["big@example.com"]].startswith(
        "rule 'Large companies' (company.size >= 1000) -> team Enterprise"
    )
    listed = client.get("/v1/assignment/rules", headers=admin.headers).json()
    assert [r["name"] for r in listed] == ["Large companies", "EMEA"]
    assert [r["matches_now"] for r in listed] == [1, 3]


def test_leads_no_team_can_take_wait_and_are_reported(
    client: TestClient,
    admin: User,
    make_user: MakeUser,
    people: People,
    set_crm: SetCrm,
    runtime: Runtime,
    cli: CliRunner,
) -> None:
    found = leads(people, set_crm, {"email": "w1@example.com"}, {"email": "w2@example.com"})
    report = run(client, admin)
    assert (report["assigned"], report["waiting"]) == (0, 2)
    assert report["waiting_leads"][0]["reason"] == "no team has an available member with capacity"
    hal, ivy = make_user("sales"), make_user("sales")
    inside = team(client, admin, "Inside", hal, ivy)
    default_team(client, admin, inside)
    settle(client, admin, inside, hal, available=False)
    settle(client, admin, inside, ivy, capacity=1)
    report = run(client, admin)
    assert (report["assigned"], report["waiting"]) == (1, 1)
    assert report["waiting_leads"][0]["reason"] == (
        "no rule matched; default team Inside: nobody available with capacity"
    )
    assert Counter(owners(runtime, list(found.values())).values()) == {None: 1, ivy.id: 1}
    # Back from leave: the waiting lead is taken on the next run, from the CLI this time.
    settle(client, admin, inside, hal, available=True)
    done = run_json(cli, "leads", "assign")
    assert done == {"assigned": 1, "waiting": 0, "by_team": {"Inside": 1}}
    assert set(owners(runtime, list(found.values())).values()) == {hal.id, ivy.id}


def test_a_preferred_team_goes_first_and_owner_changes_are_contact_changes(
    client: TestClient,
    admin: User,
    make_user: MakeUser,
    people: People,
    set_crm: SetCrm,
    runtime: Runtime,
) -> None:
    jo, kim = make_user("sales"), make_user("sales")
    web = team(client, admin, "Web leads", jo)
    inside = team(client, admin, "Inside", kim)
    default_team(client, admin, inside)
    found = leads(people, set_crm, {"email": "form@example.com"}, {"email": "other@example.com"})
    person = found["form@example.com"]
    with runtime.sessions() as session:
        report = assign_leads(
            session,
            person_ids=[uuid.UUID(person)],
            preferred_teams={uuid.UUID(person): uuid.UUID(web)},
        )
        session.commit()
    assert report.assigned == 1
    assert (
        report.assignments[0].reason == "preferred team Web leads, weighted round robin, unscored"
    )
    assert report.assignments[0].actor_label == "system"
    # Only the lead asked for was assigned.
    assert owners(runtime, list(found.values())) == {
        person: jo.id,
        found["other@example.com"]: None,
    }
    audit = client.get(
        "/v1/audit", params={"record_type": "person", "record_id": person}, headers=admin.headers
    ).json()
    assert audit["items"][0]["after"] == {"owner_id": jo.id}
    with runtime.readers() as session:
        changed = session.scalar(
            select(Event.payload).where(Event.event == "Contact Owner Changed")
        )
    assert changed is not None
    assert changed["properties"] == {"previous_owner_id": None, "owner_id": jo.id}
    only = client.get("/v1/assignment/log", params={"person_id": person}, headers=admin.headers)
    assert only.json()["total"] == 1
    by_owner = client.get("/v1/assignment/log", params={"owner_id": kim.id}, headers=admin.headers)
    assert by_owner.json()["total"] == 0
    by_team = client.get("/v1/assignment/log", params={"team_id": web}, headers=admin.headers)
    assert by_team.json()["total"] == 1
    # Owned, archived, or not a lead (yet): not assigned.
    other = found["other@example.com"]
    set_crm([other], lifecycle_stage="subscriber")
    assert run(client, admin)["assigned"] == 0


def test_rebalance_evens_out_unworked_leads_and_hands_over_a_leavers(
    client: TestClient,
    admin: User,
    make_user: MakeUser,
    people: People,
    set_crm: SetCrm,
    runtime: Runtime,
) -> None:
    lou, max_, ned = make_user("sales"), make_user("sales"), make_user("sales")
    manager = make_user("manager")
    squad = team(client, admin, "Squad", lou, max_, ned, manager)
    settle(client, admin, squad, manager, available=False)
    found = leads(people, set_crm, *({"email": f"r{i}@example.com"} for i in range(7)))
    held = list(found.values())
    set_crm(held, owner_id=uuid.UUID(lou.id))
    worked = held[0]
    note = {"kind": "note", "person_id": worked, "body": "Called, interested."}
    assert client.post("/v1/activities", json=note, headers=admin.headers).status_code == 201
    # Six unworked leads, all Lou's: two each.
    answer = client.post(
        "/v1/assignment/rebalance", json={"team_id": squad}, headers=manager.headers
    )
    assert answer.status_code == 200, answer.text
    report = answer.json()
    assert report["moved"] == 4
    assert report["before"] == {lou.id: 6, max_.id: 0, ned.id: 0}
    assert report["after"] == {lou.id: 2, max_.id: 2, ned.id: 2}
    assert owners(runtime, [worked])[worked] == lou.id
    assert report["moves"][0]["kind"] == "rebalance"
    assert report["moves"][0]["reason"].startswith(f"rebalance of team Squad: {lou.email} had 6")
    # Ned goes on leave: his leads go to the others, by round robin.
    answer = client.post(
        "/v1/assignment/rebalance",
        json={"team_id": squad, "from_user_id": ned.id},
        headers=manager.headers,
    )
    assert answer.json()["moved"] == 2
    got = Counter(owners(runtime, held).values())
    assert got == {lou.id: 4, max_.id: 3}
    log = client.get(
        "/v1/assignment/log", params={"owner_id": ned.id}, headers=manager.headers
    ).json()
    assert log["total"] == 4  # two received, two handed over
    bad = client.post(
        "/v1/assignment/rebalance",
        json={"team_id": squad, "from_user_id": admin.id},
        headers=manager.headers,
    )
    assert_error(bad, 400, "from_user_id")
    outsider = make_user("manager")
    forbidden = client.post(
        "/v1/assignment/rebalance", json={"team_id": squad}, headers=outsider.headers
    )
    assert_error(forbidden, 403)
    missing = client.post(
        "/v1/assignment/rebalance", json={"team_id": str(uuid.uuid4())}, headers=admin.headers
    )
    assert_error(missing, 404, "team_id")


def test_assignment_settings_and_rules_refuse_bad_input(
    client: TestClient, admin: User, make_user: MakeUser
) -> None:
    rep, outsider_rep = make_user("sales"), make_user("sales")
    manager, other_manager = make_user("manager"), make_user("manager")
    crew = team(client, admin, "Crew", rep, manager)
    others = team(client, admin, "Others", outsider_rep, other_manager)
    url = f"/v1/assignment/teams/{crew}/members/{rep.id}"
    for body, field in [
        ({"capacity": -1}, "capacity"),
        ({"capacity": "ten"}, "capacity"),
        ({"capacity": 2.5}, "capacity"),
        ({"weight": 0}, "weight"),
        ({"weight": 1000}, "weight"),
        ({"available": "yes"}, "available"),
    ]:
        assert_error(client.put(url, json=body, headers=admin.headers), 400, field)
    missing = f"/v1/assignment/teams/{crew}/members/{outsider_rep.id}"
    assert_error(client.put(missing, json={"weight": 2}, headers=admin.headers), 404, "user_id")
    assert_error(client.put(url, json={"weight": 2}, headers=other_manager.headers), 403)
    assert_error(client.put(url, json={"weight": 2}, headers=rep.headers), 403)
    ok = client.put(url, json={"weight": 3, "capacity": None}, headers=manager.headers)
    assert ok.json()["weight"] == 3
    assert_error(
        client.put(
            "/v1/assignment/default-team",
            json={"team_id": str(uuid.uuid4())},
            headers=admin.headers,
        ),
        400,
        "team_id",
    )
    assert_error(
        client.put("/v1/assignment/default-team", json={"team_id": crew}, headers=manager.headers),
        403,
    )
    rule = {"name": "R", "team_id": crew, "conditions": []}
    for change, status, field in [
        ({"team_id": str(uuid.uuid4())}, 400, "team_id"),
        ({"team_id": "crew"}, 400, "team_id"),
        (
            {"conditions": [{"kind": "field", "name": "country", "op": "near"}]},
            400,
            "conditions[0].op",
        ),
        ({"conditions": {"country": "DE"}}, 400, "conditions"),
        (
            {
                "conditions": [
                    {"kind": "field", "name": "owner_id", "op": "eq", "value": str(uuid.uuid4())}
                ]
            },
            400,
            "conditions[0].value",
        ),
        ({"priority": "first"}, 400, "priority"),
        ({"name": ""}, 400, "name"),
    ]:
        answer = client.post("/v1/assignment/rules", json={**rule, **change}, headers=admin.headers)
        assert_error(answer, status, field)
    nobody = {
        **rule,
        "conditions": [{"kind": "field", "name": "country", "op": "eq", "value": "AQ"}],
    }
    made = client.post("/v1/assignment/rules", json=nobody, headers=manager.headers)
    assert made.status_code == 201, made.text
    assert made.json()["matches_now"] == 0
    assert made.json()["warning"].startswith("this rule matches none of the 0 current leads")
    again = client.post("/v1/assignment/rules", json=nobody, headers=admin.headers)
    assert_error(again, 409, "name")
    theirs = {**rule, "name": "Theirs", "team_id": others}
    assert_error(client.post("/v1/assignment/rules", json=theirs, headers=manager.headers), 403)
    rule_id = made.json()["id"]
    moved = client.patch(
        f"/v1/assignment/rules/{rule_id}", json={"team_id": others}, headers=manager.headers
    )
    assert_error(moved, 403)
    renamed = client.patch(
        f"/v1/assignment/rules/{rule_id}", json={"name": "Antarctica"}, headers=manager.headers
    )
    assert renamed.json()["name"] == "Antarctica"
    assert_error(
        client.delete(f"/v1/assignment/rules/{rule_id}", headers=other_manager.headers), 403
    )
    assert (
        client.delete(f"/v1/assignment/rules/{rule_id}", headers=manager.headers).status_code == 204
    )
    assert_error(
        client.get(f"/v1/assignment/rules/{rule_id}", headers=admin.headers), 404, "rule_id"
    )
    assert_error(client.post("/v1/assignment/run", headers=rep.headers), 403)


def test_member_settings_go_with_the_membership(
    client: TestClient, admin: User, make_user: MakeUser, runtime: Runtime
) -> None:
    rep = make_user("sales")
    crew = team(client, admin, "Crew", rep)
    settle(client, admin, crew, rep, capacity=5, weight=2)
    removed = client.delete(f"/v1/teams/{crew}/members/{rep.id}", headers=admin.headers)
    assert removed.status_code == 204
    with runtime.readers() as session:
        assert list(session.scalars(select(AssignmentMember))) == []
    assert client.get("/v1/assignment/teams", headers=admin.headers).json()[0]["members"] == []


def test_the_log_shows_each_reader_what_they_may_see(
    client: TestClient,
    admin: User,
    make_user: MakeUser,
    people: People,
    set_crm: SetCrm,
) -> None:
    pat, quinn = make_user("sales"), make_user("sales")
    crew = team(client, admin, "Crew", pat, quinn)
    default_team(client, admin, crew)
    leads(people, set_crm, *({"email": f"v{i}@example.com"} for i in range(4)))
    run(client, admin)
    mine = client.get("/v1/assignment/log", headers=pat.headers).json()
    assert mine["total"] == 2
    assert {e["to_owner_id"] for e in mine["items"]} == {pat.id}
    analyst = make_user("analyst")
    assert client.get("/v1/assignment/log", headers=analyst.headers).json()["total"] == 4
    support = make_user("support")
    assert client.get("/v1/assignment/log", headers=support.headers).json()["total"] == 0
    bad = client.get("/v1/assignment/log", params={"filter": "mood:eq:x"}, headers=admin.headers)
    assert_error(bad, 400, "filter")


def test_concurrent_runs_take_turns_and_never_assign_a_lead_twice(
    client: TestClient,
    admin: User,
    make_user: MakeUser,
    people: People,
    set_crm: SetCrm,
    runtime: Runtime,
) -> None:
    ann, bob = make_user("sales"), make_user("sales")
    crew = team(client, admin, "Crew", ann, bob)
    default_team(client, admin, crew)
    found = leads(people, set_crm, *({"email": f"c{i}@example.com"} for i in range(6)))
    results: list[int] = []

    def second_run() -> None:
        with runtime.sessions() as session:
            results.append(assign_leads(session, limit=3).assigned)
            session.commit()

    with runtime.sessions() as session:
        results.append(assign_leads(session, limit=3).assigned)
        # Another process starts while this run holds the teams: it waits for the commit,
        # then sees these leads taken and the round robin where this run left it.
        other = threading.Thread(target=second_run)
        other.start()
        time.sleep(0.3)
        session.commit()
    other.join(timeout=60)
    assert results == [3, 3]
    with runtime.readers() as session:
        logged = list(session.scalars(select(LeadAssignment.person_id)))
    assert sorted(map(str, logged)) == sorted(found.values())
    assert Counter(owners(runtime, list(found.values())).values()) == {ann.id: 3, bob.id: 3}
