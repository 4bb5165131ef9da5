"""Companies through the API: create, edit, archive, restore, list, search, merge."""

from __future__ import annotations

import csv
import io

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select
from sqlalchemy.orm import Session

from patron.auth.models import AuditEntry
from patron.core.errors import InvalidInput
from patron.core.pagination import ListQuery
from patron.core.runtime import Runtime
from patron.crm import search
from patron.crm.companies import normalise_domain
from patron.crm.exports import export_csv
from patron.crm.models import Company
from patron.pipeline import rebuild
from tests.conftest import MakePerson, MakeUser, Tracker, User, assert_error, search_pages


def create(client: TestClient, user: User, **body: object) -> dict[str, object]:
    answer = client.post("/v1/companies", json=body, headers=user.headers)
    assert answer.status_code == 201, answer.text
    created: dict[str, object] = answer.json()
    return created


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("Acme.com", "acme.com"),
        ("https://www.Acme.com/about?x=1", "acme.com"),
        ("  shop.acme.co.uk. ", "shop.acme.co.uk"),
        ("bücher.de", "xn--bcher-kva.de"),
    ],
)
def test_domains_are_normalised(given: str, expected: str) -> None:
    assert normalise_domain(given) == expected


@pytest.mark.parametrize("bad", ["acme", "", "acme..com", "-acme.com", "a b.com", "http://"])
def test_bad_domains_are_refused(bad: str) -> None:
    with pytest.raises(InvalidInput) as error:
        normalise_domain(bad)
    assert error.value.field == "domain"


def test_create_edit_fetch_and_audit(client: TestClient, make_user: MakeUser, db: Session) -> None:
    rep = make_user("sales")
    made = create(client, rep, name="Acme", domain="https://www.ACME.com", size=40, tags=["b2b"])
    assert made["domain"] == "acme.com"
    assert made["owner_id"] == rep.id  # the creator owns it
    edited = client.patch(
        f"/v1/companies/{made['id']}", json={"industry": "Retail", "size": 45}, headers=rep.headers
    )
    assert edited.status_code == 200, edited.text
    assert edited.json()["industry"] == "Retail"
    fetched = client.get(f"/v1/companies/{made['id']}", headers=rep.headers).json()
    assert fetched["size"] == 45
    entries = list(
        db.scalars(
            select(AuditEntry)
            .where(AuditEntry.record_type == "company", AuditEntry.record_id == made["id"])
            .order_by(AuditEntry.id)
        )
    )
    assert [e.action for e in entries] == ["create", "update"]
    assert entries[1].before == {"industry": None, "size": 40}
    assert entries[1].after == {"industry": "Retail", "size": 45}
    assert entries[1].actor_label == rep.email


def test_bad_input_names_the_field_and_writes_nothing(
    client: TestClient, admin: User, db: Session
) -> None:
    create(client, admin, name="Acme", domain="acme.com")
    cases = [
        ({"name": "Dup", "domain": "www.acme.com"}, 409, "domain"),
        ({"name": "X", "domain": "not a domain"}, 400, "domain"),
        ({"name": "X", "size": "forty"}, 422, "size"),
        ({"name": "X", "size": -1}, 400, "size"),
        ({"name": "X", "owner_id": "7b0e1f64-8c36-4c4e-9d43-111111111111"}, 400, "owner_id"),
        ({"name": "X", "tags": [""]}, 400, "tags"),
        ({"name": "X", "colour": "red"}, 422, "colour"),
        ({"domain": "x.com"}, 422, "name"),
        ({"name": "X", "custom": {"nope": 1}}, 400, "custom.nope"),
        ({"name": "A\u0000B"}, 422, "name"),
        ({"name": "X", "tags": ["a\u0000"]}, 422, "tags"),
    ]
    for body, status, field in cases:
        assert_error(client.post("/v1/companies", json=body, headers=admin.headers), status, field)
    listed = client.get("/v1/companies", headers=admin.headers).json()
    assert listed["total"] == 1


def test_archive_restore_and_twice_is_a_conflict(client: TestClient, admin: User) -> None:
    made = create(client, admin, name="Old Co")
    url = f"/v1/companies/{made['id']}"
    assert client.post(f"{url}/archive", headers=admin.headers).json()["archived_at"]
    assert_error(client.post(f"{url}/archive", headers=admin.headers), 409, "company_id")
    assert client.get("/v1/companies", headers=admin.headers).json()["total"] == 0
    archived = client.get("/v1/companies?archived=true", headers=admin.headers).json()
    assert [c["id"] for c in archived["items"]] == [made["id"]]
    assert client.post(f"{url}/restore", headers=admin.headers).json()["archived_at"] is None
    assert_error(client.post(f"{url}/restore", headers=admin.headers), 409, "company_id")
    assert client.get("/v1/companies", headers=admin.headers).json()["total"] == 1


def test_list_filters_sorts_searches_and_pages(client: TestClient, admin: User) -> None:
    for i in range(7):
        create(
            client,
            admin,
            name=f"Company {i}",
            domain=f"c{i}.com",
            size=i * 10 if i != 3 else None,
            industry="Retail" if i % 2 else "Software",
            tags=["vip"] if i < 2 else [],
        )
    h = admin.headers
    page = client.get("/v1/companies?sort=-size&limit=3", headers=h).json()
    assert page["total"] == 7
    seen = [c["size"] for c in page["items"]]
    cursor = page["next_cursor"]
    while cursor:
        page = client.get(f"/v1/companies?sort=-size&limit=3&cursor={cursor}", headers=h).json()
        seen += [c["size"] for c in page["items"]]
        cursor = page["next_cursor"]
    assert seen == [60, 50, 40, 20, 10, 0, None]  # nulls last, each once
    retail = client.get("/v1/companies?filter=industry:eq:Retail&filter=size:gte:20", headers=h)
    assert sorted(c["name"] for c in retail.json()["items"]) == ["Company 5"]
    vip = client.get("/v1/companies?filter=tags:has:vip", headers=h).json()
    assert sorted(c["name"] for c in vip["items"]) == ["Company 0", "Company 1"]
    empty = client.get("/v1/companies?filter=size:empty:", headers=h).json()
    assert [c["name"] for c in empty["items"]] == ["Company 3"]
    found = client.get("/v1/companies", params={"q": "c4.com"}, headers=h).json()
    assert [c["name"] for c in found["items"]] == ["Company 4"]
    words = client.get("/v1/companies", params={"q": "company 6"}, headers=h).json()
    assert [c["name"] for c in words["items"]] == ["Company 6"]


def test_few_and_many_matches_find_and_count_the_same_companies(
    client: TestClient, admin: User, make_user: MakeUser, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A search with many matches tests each company's own name and domain where a few
    matches are looked up by their documents: both find and count the same companies, in
    any case, by name or domain, for an admin and for a rep (their own and shared ones)."""
    rep = make_user("sales")
    names = ["Acme Øresund", "acme north", "Beta ACME", "Gamma", "Delta Tools", "ØRESUND Zeta"]
    domains = ["a.io", "an.io", "beta.io", "acme-gamma.io", "d.io", "z.io"]
    ids = [
        create(client, admin, name=n, domain=d)["id"] for n, d in zip(names, domains, strict=True)
    ]
    for company in ids[:2]:
        client.patch(f"/v1/companies/{company}", json={"owner_id": rep.id}, headers=admin.headers)
    client.post(f"/v1/companies/{ids[3]}/shares", json={"user_id": rep.id}, headers=admin.headers)
    archived = client.post(f"/v1/companies/{ids[2]}/archive", headers=admin.headers)
    assert archived.status_code == 200, archived.text

    def every_search() -> dict[tuple[str, str], tuple[list[str], int]]:
        users = {"admin": admin, "rep": rep}
        words = ("acme", "ACME io", "øresund", "gamma.io", "delta")
        return {
            (w, q): search_pages(client, "/v1/companies", u, q, limit=1, key="name")
            for w, u in users.items()
            for q in words
        }

    few = every_search()
    monkeypatch.setattr(search, "DENSE", 1)  # every search with two or more matches is dense
    assert every_search() == few
    assert few["admin", "acme"] == (["Acme Øresund", "Gamma", "acme north"], 3)
    assert few["admin", "ACME io"] == (["Acme Øresund", "Gamma", "acme north"], 3)
    assert few["admin", "øresund"] == (["Acme Øresund", "ØRESUND Zeta"], 2)
    assert few["admin", "gamma.io"] == (["Gamma"], 1)
    assert few["rep", "acme"] == (["Acme Øresund", "Gamma", "acme north"], 3)
    assert few["rep", "delta"] == ([], 0)


def test_bad_list_parameters_are_400s(client: TestClient, admin: User) -> None:
    h = admin.headers
    assert_error(client.get("/v1/companies?filter=colour:eq:red", headers=h), 400, "filter")
    assert_error(client.get("/v1/companies?filter=size", headers=h), 400, "filter")
    assert_error(client.get("/v1/companies?filter=size:gt:big", headers=h), 400, "filter")
    assert_error(client.get("/v1/companies?filter=tags:eq:x", headers=h), 400, "filter")
    assert_error(client.get("/v1/companies?sort=tags", headers=h), 400, "sort")
    assert_error(client.get("/v1/companies?cursor=garbage!", headers=h), 400, "cursor")
    for i in range(3):
        create(client, admin, name=f"N{i}")
    cursor = client.get("/v1/companies?limit=1&sort=name", headers=h).json()["next_cursor"]
    mixed = client.get(f"/v1/companies?limit=1&sort=-size&cursor={cursor}", headers=h)
    assert_error(mixed, 400, "cursor")


def test_merge_preview_and_merge(
    client: TestClient, admin: User, make_person: MakePerson, tracker: Tracker
) -> None:
    keep = create(client, admin, name="Acme Inc", domain="acme.com", size=50)
    dupe = create(client, admin, name="ACME", industry="Retail", size=55, tags=["old"])
    person = make_person("ann@acme.com")
    tracker.send({"type": "group", "userId": "u-ann@acme.com", "groupId": "g-acme"})
    # the group call made a third company; merge it too, later
    h = admin.headers
    preview = client.get(
        f"/v1/companies/{keep['id']}/merge-preview?other_id={dupe['id']}", headers=h
    ).json()
    assert {c["field"] for c in preview["conflicts"]} == {"name", "size"}
    assert preview["result"]["industry"] == "Retail"
    assert preview["result"]["name"] == "Acme Inc"
    merged = client.post(
        f"/v1/companies/{keep['id']}/merge",
        json={"other_id": dupe["id"], "prefer": ["size"]},
        headers=h,
    )
    assert merged.status_code == 200, merged.text
    after = client.get(f"/v1/companies/{keep['id']}", headers=h).json()
    assert (after["name"], after["size"], after["industry"]) == ("Acme Inc", 55, "Retail")
    assert after["tags"] == ["old"]
    # the duplicate's id now answers with the survivor, and it left the lists
    assert client.get(f"/v1/companies/{dupe['id']}", headers=h).json()["id"] == keep["id"]
    assert client.get("/v1/companies?q=acme", headers=h).json()["total"] == 1
    group = client.get("/v1/companies?filter=group_id:eq:g-acme", headers=h).json()["items"][0]
    client.post(f"/v1/companies/{keep['id']}/merge", json={"other_id": group["id"]}, headers=h)
    people = client.get(f"/v1/companies/{keep['id']}/persons", headers=h).json()
    assert [p["id"] for p in people] == [person]
    # a later group call with the merged groupId lands on the survivor
    tracker.send(
        {
            "type": "group",
            "userId": "u-ann@acme.com",
            "groupId": "g-acme",
            "traits": {"plan": "gold"},
        }
    )
    assert client.get(f"/v1/companies/{keep['id']}", headers=h).json()["traits"]["plan"] == "gold"
    assert client.get("/v1/companies", headers=h).json()["total"] == 1


def test_merge_refusals(client: TestClient, admin: User) -> None:
    one = create(client, admin, name="One")
    h = admin.headers
    itself = client.post(
        f"/v1/companies/{one['id']}/merge", json={"other_id": one["id"]}, headers=h
    )
    assert_error(itself, 409, "other_id")
    missing = client.post(
        f"/v1/companies/{one['id']}/merge",
        json={"other_id": "7b0e1f64-8c36-4c4e-9d43-111111111111"},
        headers=h,
    )
    assert_error(missing, 404, "company_id")
    two = create(client, admin, name="Two")
    unknown = client.post(
        f"/v1/companies/{one['id']}/merge", json={"other_id": two["id"], "prefer": ["x"]}, headers=h
    )
    assert_error(unknown, 400, "prefer")
    assert client.get("/v1/companies", headers=h).json()["total"] == 2


def test_persons_are_linked_by_hand_with_a_role_and_keep_it_through_a_rebuild(
    client: TestClient,
    admin: User,
    make_user: MakeUser,
    make_person: MakePerson,
    runtime: Runtime,
) -> None:
    company = create(client, admin, name="Initech")
    person = make_person("peter@example.com")
    url = f"/v1/companies/{company['id']}/persons/{person}"
    h = admin.headers
    assert client.put(url, json={"role": "Buyer"}, headers=h).status_code == 204
    assert client.put(url, json={"role": "CTO"}, headers=h).status_code == 204
    listed = client.get(f"/v1/companies/{company['id']}/persons", headers=h).json()
    assert [(p["id"], p["role"]) for p in listed] == [(person, "CTO")]
    found = client.get("/v1/contacts", params={"q": "initech"}, headers=h).json()
    assert [p["id"] for p in found["items"]] == [person]
    rebuild(runtime.sessions, runtime.settings)
    listed = client.get(f"/v1/companies/{company['id']}/persons", headers=h).json()
    assert [(p["id"], p["role"]) for p in listed] == [(person, "CTO")]
    rep = make_user("sales")
    own = create(client, rep, name="Rep Co")
    hidden = client.put(f"/v1/companies/{own['id']}/persons/{person}", json={}, headers=rep.headers)
    assert_error(hidden, 400, "person_id")
    assert client.delete(url, headers=h).status_code == 204
    assert_error(client.delete(url, headers=h), 404, "person_id")
    assert client.get(f"/v1/companies/{company['id']}/persons", headers=h).json() == []


def test_filtered_lists_export_as_csv_with_visibility(
    client: TestClient, admin: User, make_user: MakeUser
) -> None:
    client.post(
        "/v1/custom-fields",
        json={"record_type": "company", "key": "tier", "type": "text"},
        headers=admin.headers,
    )
    rep = make_user("sales")
    for i in range(3):
        create(
            client,
            rep,
            name=f"Rep {i}",
            domain=f"rep{i}.com",
            tags=["a", "b"],
            custom={"tier": "gold"},
        )
    create(client, admin, name="Admin's", size=5)
    answer = client.get("/v1/companies/export.csv?sort=name", headers=rep.headers)
    assert answer.status_code == 200
    assert answer.headers["content-type"].startswith("text/csv")
    rows = list(csv.reader(io.StringIO(answer.text)))
    assert rows[0][:3] == ["id", "name", "domain"]
    assert rows[0][-1] == "custom.tier"
    assert [r[1] for r in rows[1:]] == ["Rep 0", "Rep 1", "Rep 2"]  # not the admin's
    assert rows[1][6] == "a;b"
    assert rows[1][-1] == "gold"
    everything = client.get("/v1/companies/export.csv?filter=size:gt:1", headers=admin.headers)
    assert [r[1] for r in list(csv.reader(io.StringIO(everything.text)))[1:]] == ["Admin's"]
    bad = client.get("/v1/companies/export.csv?filter=nope:eq:1", headers=admin.headers)
    assert_error(bad, 400, "filter")
    contacts = client.get("/v1/contacts/export.csv", headers=admin.headers)
    assert contacts.status_code == 200
    assert contacts.text.splitlines()[0].startswith("id,name,email")


def test_csv_export_walks_every_page(client: TestClient, admin: User, runtime: Runtime) -> None:
    for i in range(5):
        create(client, admin, name=f"Co {i}")
    rows = export_csv(
        runtime.readers,
        kind="companies",
        actor=None,
        query=ListQuery(sort="-name"),
        search=None,
        archived=False,
        page_size=2,
    )
    lines = list(csv.reader(io.StringIO("".join(rows))))
    assert [r[1] for r in lines[1:]] == [f"Co {i}" for i in (4, 3, 2, 1, 0)]


def test_company_search_statistics_describe_the_expression_it_tests(
    runtime: Runtime, dialect: str
) -> None:
    """Migration 0023 gives PostgreSQL's planner statistics on a company's searchable text,
    written as PostgreSQL deparses the expression a dense company search tests: if the
    two drift apart, the planner silently loses them."""
    if dialect != "postgresql":
        pytest.skip("statistics on an expression are PostgreSQL's")
    searched = select(search.company_document("postgresql")).select_from(Company)
    sql = str(searched.compile(runtime.engine, compile_kwargs={"literal_binds": True}))
    with runtime.engine.connect() as connection:
        plan = connection.exec_driver_sql("EXPLAIN (VERBOSE, FORMAT JSON) " + sql).scalar_one()
        kept = connection.exec_driver_sql(
            "SELECT pg_get_statisticsobjdef_expressions(oid) FROM pg_statistic_ext "
            "WHERE stxname = 'st_companies_document'"
        ).scalar_one()
    tested = plan[0]["Plan"]["Output"][0].replace("companies.", "")
    assert kept == [tested]
