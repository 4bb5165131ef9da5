"""Record linkage wired to persons: automatic merges, the review queue, incremental runs."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from patron.core.runtime import Runtime
from patron.identity import linkage
from patron.pipeline import Processor
from tests.conftest import Credentials, Lookup, Tracker, run_json

JONATHAN = {
    "firstName": "Jonathan",
    "lastName": "Quennell",
    "birthday": "1984-03-02",
    "address": {
        "street": "12 Mill Lane",
        "city": "Ashford",
        "postalCode": "TN24 8AB",
        "country": "GB",
    },
}
OTHERS = (
    ("u-maria", {"name": "Maria Garcia", "birthday": "1990-05-05", "city": "Leeds"}),
    ("u-mario", {"name": "Mario Garcia", "birthday": "1970-01-09", "city": "York"}),
    ("u-ada", {"firstName": "Ada", "lastName": "Lovelace", "birthday": "1815-12-10"}),
)


def identify(tracker: Tracker, who: str, email: str, traits: dict[str, Any]) -> None:
    """Web accounts (``u-...``) have a user id; the shop and the CRM only their own ids."""
    key = "userId" if who.startswith("u-") else "anonymousId"
    tracker.send({"type": "identify", key: who, "traits": {"email": email, **traits}})


def base(tracker: Tracker) -> None:
    """Jonathan as a web customer, and three people unlike him or each other."""
    identify(tracker, "u-1", "jo.quennell@example.com", JONATHAN)
    for user_id, traits in OTHERS:
        identify(tracker, user_id, f"{user_id}@example.com", traits)


def match(client: TestClient, headers: dict[str, str], **body: Any) -> dict[str, Any]:
    answer = client.post("/v1/identity/match", json=body, headers=headers)
    assert answer.status_code == 200, answer.text
    result: dict[str, Any] = answer.json()
    return result


def test_a_near_certain_duplicate_merges_with_its_evidence_and_can_be_undone(
    tracker: Tracker, lookup: Lookup, client: TestClient, admin_headers: dict[str, str]
) -> None:
    base(tracker)
    # The same man buys in the shop under another email: no identifier in common.
    identify(tracker, "shop-77", "jq84@hotel.com", JONATHAN)
    web, shop = lookup(user_id="u-1"), lookup(anonymous_id="shop-77")
    assert web["id"] != shop["id"]

    run = match(client, admin_headers)
    assert (run["mode"], run["compared"], run["merged"], run["queued"]) == ("full", 5, 1, 0)
    one = lookup(anonymous_id="shop-77")
    assert one["id"] == web["id"] == lookup(user_id="u-1")["id"]
    assert {"email:jo.quennell@example.com", "email:jq84@hotel.com", "user_id:u-1"} <= {
        f"{i['kind']}:{i['value']}" for i in one["identities"]
    }
    [merge] = one["merges"]
    assert merge["reason"] == "match"
    assert merge["id"] == run["merge_ids"][0]
    assert merge["evidence"]["match_probability"] >= 0.99
    voted = {f["field"]: f for f in merge["evidence"]["fields"]}
    assert voted["first_name"]["match_weight"] > 0
    assert voted["birth_date"]["match_weight"] > 0
    [candidate] = client.get(
        "/v1/identity/match/candidates", params={"status": "merged"}, headers=admin_headers
    ).json()["items"]
    assert candidate["merge_id"] == merge["id"]

    undo = client.post(f"/v1/merges/{merge['id']}/undo", json={}, headers=admin_headers)
    assert undo.status_code == 200, undo.text
    assert lookup(anonymous_id="shop-77")["id"] != lookup(user_id="u-1")["id"]
    # A person split them: no later run merges or proposes them again.
    again = match(client, admin_headers, full=True)
    assert (again["merged"], again["queued"], again["pairs"]) == (0, 0, 1)
    assert lookup(anonymous_id="shop-77")["id"] != lookup(user_id="u-1")["id"]


def test_a_likely_duplicate_waits_for_a_person_who_accepts_it(
    tracker: Tracker, lookup: Lookup, client: TestClient, admin_headers: dict[str, str]
) -> None:
    base(tracker)
    identify(
        tracker,
        "crm-5",
        "jq@hotel.com",
        {"firstName": "Jonathan", "lastName": "Quennell", "city": "Ashford", "country": "GB"},
    )
    run = match(client, admin_headers)
    assert (run["merged"], run["queued"]) == (0, 1)
    assert lookup(anonymous_id="crm-5")["id"] != lookup(user_id="u-1")["id"]

    page = client.get(
        "/v1/identity/match/candidates", params={"status": "pending"}, headers=admin_headers
    ).json()
    assert page["total"] == 1
    [candidate] = page["items"]
    assert 0.8 <= candidate["match_probability"] < 0.99
    assert {candidate["left_id"], candidate["right_id"]} == {
        lookup(anonymous_id="crm-5")["id"],
        lookup(user_id="u-1")["id"],
    }
    by_field = {e["field"]: e for e in candidate["evidence"]}
    assert by_field["last_name"]["left"] == by_field["last_name"]["right"] == "quennell"

    accepted = client.post(
        f"/v1/identity/match/candidates/{candidate['id']}/accept", headers=admin_headers
    )
    assert accepted.status_code == 200, accepted.text
    assert accepted.json()["candidate"]["status"] == "accepted"
    assert accepted.json()["merge"]["reason"] == "match"
    assert lookup(anonymous_id="crm-5")["id"] == lookup(user_id="u-1")["id"]
    twice = client.post(
        f"/v1/identity/match/candidates/{candidate['id']}/accept", headers=admin_headers
    )
    assert twice.status_code == 409
    assert "already accepted" in twice.json()["message"]


def test_a_rejected_pair_is_never_proposed_again_even_after_more_merges(
    tracker: Tracker, lookup: Lookup, client: TestClient, admin_headers: dict[str, str]
) -> None:
    base(tracker)
    identify(tracker, "crm-5", "jq@hotel.com", {"name": "Jonathan Quennell", "city": "Ashford"})
    match(client, admin_headers)
    [candidate] = client.get(
        "/v1/identity/match/candidates", params={"status": "pending"}, headers=admin_headers
    ).json()["items"]
    rejected = client.post(
        f"/v1/identity/match/candidates/{candidate['id']}/reject", headers=admin_headers
    )
    assert rejected.status_code == 200, rejected.text
    assert rejected.json()["candidate"]["status"] == "rejected"

    # crm-5 gains an anonymous history (a merge in the graph); the pair is still decided.
    tracker.send({"type": "identify", "userId": "u-crm-5", "anonymousId": "tab-9"})
    tracker.send({"type": "identify", "userId": "u-crm-5", "anonymousId": "crm-5"})
    assert lookup(anonymous_id="tab-9")["id"] == lookup(anonymous_id="crm-5")["id"]
    again = match(client, admin_headers, full=True)
    assert (again["merged"], again["queued"]) == (0, 0)
    assert lookup(anonymous_id="crm-5")["id"] != lookup(user_id="u-1")["id"]
    pending = client.get(
        "/v1/identity/match/candidates", params={"status": "pending"}, headers=admin_headers
    ).json()
    assert pending["total"] == 0


def test_an_incremental_run_compares_only_the_persons_new_or_changed_since(
    tracker: Tracker, runtime: Runtime, lookup: Lookup
) -> None:
    base(tracker)
    processor = Processor(runtime.sessions, settings=runtime.settings, readers=runtime.readers)
    first = processor.match()
    assert first is not None
    assert processor.match() is None  # nothing changed: no run at all

    identify(tracker, "shop-77", "jq84@hotel.com", JONATHAN)
    summary = linkage.run_matching(
        runtime.readers, runtime.sessions, settings=runtime.settings, actor=None
    )
    assert (summary.run.mode, summary.run.compared, summary.run.merged) == ("incremental", 1, 1)
    assert lookup(anonymous_id="shop-77")["id"] == lookup(user_id="u-1")["id"]

    # A trait the matcher reads changes on an old person: that person is compared again.
    identify(tracker, "u-ada", "u-ada@example.com", {"city": "London"})
    tracker.send({"type": "track", "userId": "u-maria", "event": "Page Viewed"})
    third = linkage.run_matching(
        runtime.readers, runtime.sessions, settings=runtime.settings, actor=None
    )
    assert third.run.compared == 1


def test_thresholds_come_from_the_settings(tracker: Tracker, runtime: Runtime) -> None:
    base(tracker)
    identify(tracker, "crm-5", "jq@hotel.com", {"name": "Jonathan Quennell", "city": "Ashford"})
    strict = runtime.settings.model_copy(update={"match_review": 0.999, "match_auto_merge": 1.0})
    summary = linkage.run_matching(
        runtime.readers, runtime.sessions, settings=strict, actor=None, full=True
    )
    assert (summary.run.merged, summary.run.queued) == (0, 0)
    eager = runtime.settings.model_copy(update={"match_auto_merge": 0.5})
    summary = linkage.run_matching(
        runtime.readers, runtime.sessions, settings=eager, actor=None, full=True
    )
    assert (summary.run.merged, summary.run.queued) == (1, 0)


def test_the_review_queue_refuses_bad_requests_and_other_roles(
    client: TestClient, admin_headers: dict[str, str], credentials: Credentials
) -> None:
    bogus = client.get(
        "/v1/identity/match/candidates", params={"status": "maybe"}, headers=admin_headers
    )
    assert bogus.status_code == 400
    assert "status" in bogus.json()["message"]
    missing = client.post("/v1/identity/match/candidates/999/accept", headers=admin_headers)
    assert missing.status_code == 404
    assert client.get("/v1/identity/match/candidates/999", headers=admin_headers).status_code == 404
    bad_body = client.post("/v1/identity/match", json={"full": "sometimes"}, headers=admin_headers)
    assert bad_body.status_code == 422
    analyst = credentials.headers("analyst")
    listed = client.get("/v1/identity/match/candidates", headers=analyst)
    assert listed.status_code == 403
    assert client.post("/v1/identity/match", json={}, headers=analyst).status_code == 403
    assert client.post("/v1/identity/match/candidates/1/reject", headers=analyst).status_code == 403
    assert client.post("/v1/identity/match", json={}).status_code == 401


def test_the_cli_runs_a_match(tracker: Tracker, cli: CliRunner, lookup: Lookup) -> None:
    base(tracker)
    identify(tracker, "shop-77", "jq84@hotel.com", JONATHAN)
    out = run_json(cli, "identity", "match", "--full")
    assert (out["mode"], out["compared"], out["merged"]) == ("full", 5, 1)
    assert lookup(anonymous_id="shop-77")["id"] == lookup(user_id="u-1")["id"]


@pytest.mark.parametrize(
    ("traits", "expected"),
    [
        ({"name": "Ada King Lovelace"}, {"first_name": "Ada King", "last_name": "Lovelace"}),
        ({"name": "Cher"}, {"first_name": "Cher", "last_name": None}),
        ({"first_name": " Ada ", "surname": "Lovelace"}, {"first_name": "Ada"}),
        ({"birthday": "1815-12-10T00:00:00Z", "name": "A B"}, {"birth_date": "1815-12-10"}),
        ({"birthday": "the tenth", "name": "A B"}, {"birth_date": None}),
        ({"zip": 10001, "city": "New York"}, {"postcode": "10001", "city": "New York"}),
        ({"address": "1 Main St", "name": "A B"}, {"street": "1 Main St"}),
        ({"address": {"street": "1 Main St", "postalCode": "E1 6AN"}}, {"postcode": "E1 6AN"}),
        ({"firstName": True, "lastName": ["x"], "name": {"a": 1}}, None),
    ],
)
def test_persons_become_match_records(
    traits: dict[str, Any], expected: dict[str, Any] | None
) -> None:
    record = linkage.record_of("p", traits, email="a@example.com", phone=None)
    if expected is None:
        assert record is None
        return
    assert record is not None
    assert record.email == "a@example.com"
    for name, value in expected.items():
        assert getattr(record, name) == value


def test_persons_with_nothing_but_contacts_are_left_to_the_identity_graph(
    tracker: Tracker, runtime: Runtime
) -> None:
    tracker.send({"type": "identify", "userId": "u-2", "traits": {"email": "x@example.com"}})
    identify(tracker, "u-1", "jo.quennell@example.com", JONATHAN)
    with runtime.readers() as session:
        records = linkage.person_records(session)
    assert [r.first_name for r in records.values()] == ["Jonathan"]
    [record] = records.values()
    assert (record.email, record.postcode, record.country) == (
        "jo.quennell@example.com",
        "TN24 8AB",
        "GB",
    )


def test_the_review_queue_follows_a_match_merge_through_a_later_unmerge(
    tracker: Tracker, lookup: Lookup, client: TestClient, admin_headers: dict[str, str]
) -> None:
    base(tracker)
    identify(tracker, "shop-77", "jq84@hotel.com", JONATHAN)
    match(client, admin_headers)
    # Another merge in the same cluster, then undone: the match decision is applied again.
    tracker.send({"type": "page", "anonymousId": "kiosk", "name": "Home"})
    tracker.send({"type": "identify", "userId": "u-1", "anonymousId": "kiosk"})
    graph_merge = next(m for m in lookup(user_id="u-1")["merges"] if m["reason"] != "match")
    undo = client.post(f"/v1/merges/{graph_merge['id']}/undo", json={}, headers=admin_headers)
    assert undo.status_code == 200, undo.text

    person = lookup(user_id="u-1")
    assert person["id"] == lookup(anonymous_id="shop-77")["id"]
    [match_merge] = [m for m in person["merges"] if m["reason"] == "match" and not m["undone_at"]]
    [candidate] = client.get(
        "/v1/identity/match/candidates", params={"status": "merged"}, headers=admin_headers
    ).json()["items"]
    assert candidate["merge_id"] == match_merge["id"]
    assert (
        client.get(f"/v1/merges/{candidate['merge_id']}", headers=admin_headers).status_code == 200
    )


def test_two_accounts_are_never_merged_automatically(
    tracker: Tracker, lookup: Lookup, client: TestClient, admin_headers: dict[str, str]
) -> None:
    base(tracker)
    # The same man, twice signed up: two user ids. Only a person may merge two accounts.
    identify(tracker, "u-2", "jq84@hotel.com", JONATHAN)
    run = match(client, admin_headers)
    assert (run["merged"], run["queued"]) == (0, 1)
    assert lookup(user_id="u-1")["id"] != lookup(user_id="u-2")["id"]
    [candidate] = client.get(
        "/v1/identity/match/candidates", params={"status": "pending"}, headers=admin_headers
    ).json()["items"]
    assert candidate["match_probability"] >= 0.99
    accepted = client.post(
        f"/v1/identity/match/candidates/{candidate['id']}/accept", headers=admin_headers
    )
    assert accepted.status_code == 200, accepted.text
    assert lookup(user_id="u-1")["id"] == lookup(user_id="u-2")["id"]
