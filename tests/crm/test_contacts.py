"""Contacts: CRM fields on the identity-resolved person, lists, search, merges."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest
from alembic import command
from fastapi.testclient import TestClient
from sqlalchemy import delete, select, text, update
from sqlalchemy.orm import Session
from typer.testing import CliRunner

from patron.auth.models import ApiToken
from patron.auth.models import User as UserModel
from patron.cli import app
from patron.core.db import create_db_engine
from patron.core.migrations import alembic_config
from patron.core.pagination import ListQuery
from patron.core.runtime import Runtime
from patron.core.settings import Settings
from patron.crm import search
from patron.crm.contacts import list_contacts
from patron.crm.models import Company, SearchDocument
from patron.identity.models import Person
from tests.conftest import MakePerson, MakeUser, Tracker, User, assert_error, search_pages


def test_crm_fields_are_edited_checked_and_audited(
    client: TestClient, admin: User, make_person: MakePerson, make_user: MakeUser
) -> None:
    person = make_person("ann@example.com", name="Ann Lee")
    rep = make_user("sales")
    changed = client.patch(
        f"/v1/contacts/{person}",
        json={"owner_id": rep.id, "lifecycle_stage": "lead", "lead_status": "new", "tags": ["a"]},
        headers=admin.headers,
    )
    assert changed.status_code == 200, changed.text
    body = changed.json()
    assert (body["owner_id"], body["lifecycle_stage"], body["tags"]) == (rep.id, "lead", ["a"])
    for payload, status, field in [
        ({"lifecycle_stage": "prospect"}, 400, "lifecycle_stage"),
        ({"lead_status": "hot"}, 400, "lead_status"),
        ({"owner_id": "nobody"}, 422, "owner_id"),
        ({"tags": "vip"}, 422, "tags"),
        ({"custom": {"x": 1}}, 400, "custom.x"),
    ]:
        answer = client.patch(f"/v1/contacts/{person}", json=payload, headers=admin.headers)
        assert_error(answer, status, field)
    audit = client.get(
        f"/v1/audit?record_type=person&record_id={person}", headers=admin.headers
    ).json()
    assert audit["total"] == 1
    assert audit["items"][0]["after"]["lifecycle_stage"] == "lead"
    assert audit["items"][0]["before"]["lifecycle_stage"] is None
    profile = client.get(f"/v1/persons/{person}", headers=admin.headers).json()
    assert profile["lifecycle_stage"] == "lead"


def test_search_by_name_email_phone_and_company(
    client: TestClient, admin: User, make_person: MakePerson, tracker: Tracker
) -> None:
    ann = make_person("ann@example.com", name="Ann Lee", phone="+1 202 555 0143")
    bob = make_person("bob@other.org", firstName="Bob", lastName="Stone")
    tracker.send(
        {
            "type": "group",
            "userId": "u-bob@other.org",
            "groupId": "g1",
            "traits": {"name": "Globex"},
        }
    )

    def found(q: str) -> list[str]:
        answer = client.get("/v1/contacts", params={"q": q}, headers=admin.headers)
        assert answer.status_code == 200, answer.text
        return [p["id"] for p in answer.json()["items"]]

    assert found("ann") == [ann]
    assert found("STONE") == [bob]
    assert found("other.org") == [bob]
    assert found("555-0143") == [ann]
    assert found("globex bob") == [bob]
    assert found("globex ann") == []
    assert found("100%") == []
    # LIKE's wildcards are literal: "n_l" would otherwise find "Ann Lee".
    assert found("n_l") == []
    elodie = make_person("elodie@example.com", name="Élodie Ørsted")
    assert found("ØRSTED élodie") == [elodie]


def test_few_and_many_matches_find_and_count_the_same(
    client: TestClient,
    admin: User,
    make_person: MakePerson,
    make_user: MakeUser,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A search with few matches keeps their ids; one with many tests each listed record's
    document. Both give the same pages and totals, to an admin and to a rep, whose
    shared records count and whose others do not."""
    rep = make_user("sales")
    people = [make_person(f"p{n}@example.com", name=f"Ada Turing {n}") for n in range(7)]
    make_person("other@example.com", name="Grace Hopper")
    for person in people[:3]:
        client.patch(f"/v1/contacts/{person}", json={"owner_id": rep.id}, headers=admin.headers)
    shared = client.post(
        f"/v1/contacts/{people[5]}/shares", json={"user_id": rep.id}, headers=admin.headers
    )
    assert shared.status_code == 201, shared.text

    def every_search() -> dict[tuple[str, str], tuple[list[str], int]]:
        users = {"admin": admin, "rep": rep}
        return {
            (w, q): search_pages(client, "/v1/contacts", u, q, limit=2, key="id")
            for w, u in users.items()
            for q in ("turing", "ada tur", "hopper")
        }

    few = every_search()
    monkeypatch.setattr(search, "DENSE", 1)  # every search with two or more matches is dense
    many = every_search()
    assert many == few
    assert sorted(few["admin", "turing"][0]) == sorted(people)
    assert few["admin", "turing"][1] == 7
    assert sorted(few["rep", "ada tur"][0]) == sorted([*people[:3], people[5]])
    assert few["rep", "ada tur"][1] == 4
    assert few["rep", "hopper"] == ([], 0)


def test_search_documents_follow_owner_changes_made_by_any_code(
    client: TestClient,
    admin: User,
    make_person: MakePerson,
    make_user: MakeUser,
    runtime: Runtime,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A document keeps a copy of its record's owner, which a rep's dense search counts
    by: a change of owner reaches it whether it came through the API or through a plain
    UPDATE that no CRM code saw (a trigger keeps it), and a user's deletion clears it."""
    first, second = make_user("sales"), make_user("sales")
    people = [make_person(f"o{n}@example.com", name=f"Ada Owner {n}") for n in range(3)]
    company = client.post("/v1/companies", json={"name": "Owned Co"}, headers=admin.headers)
    company_id = uuid.UUID(company.json()["id"])
    for person in people:
        answer = client.patch(
            f"/v1/contacts/{person}", json={"owner_id": first.id}, headers=admin.headers
        )
        assert answer.status_code == 200, answer.text

    def owners() -> dict[uuid.UUID, uuid.UUID | None]:
        with runtime.sessions() as session:
            rows = session.execute(select(SearchDocument.record_id, SearchDocument.owner_id))
            return dict(rows.tuples().all())

    def rep_finds(user: User) -> tuple[list[str], int]:
        answer = client.get("/v1/contacts", params={"q": "ada owner"}, headers=user.headers)
        assert answer.status_code == 200, answer.text
        return sorted(p["id"] for p in answer.json()["items"]), answer.json()["total"]

    monkeypatch.setattr(search, "DENSE", 1)  # counted from the documents where they can be
    assert [owners()[uuid.UUID(p)] for p in people] == [uuid.UUID(first.id)] * 3
    assert rep_finds(first) == (sorted(people), 3)
    with runtime.sessions() as session:  # behind the CRM's back, as a bulk job would
        session.execute(
            update(Person)
            .where(Person.id == uuid.UUID(people[0]))
            .values(owner_id=uuid.UUID(second.id))
        )
        session.execute(
            update(Company).where(Company.id == company_id).values(owner_id=uuid.UUID(second.id))
        )
        session.commit()
    assert owners()[uuid.UUID(people[0])] == uuid.UUID(second.id)
    assert owners()[company_id] == uuid.UUID(second.id)
    assert rep_finds(first) == (sorted(people[1:]), 2)
    assert rep_finds(second) == ([people[0]], 1)
    with runtime.sessions() as session:  # owners' foreign keys are ON DELETE SET NULL
        session.execute(delete(ApiToken).where(ApiToken.user_id == uuid.UUID(second.id)))
        session.execute(delete(UserModel).where(UserModel.id == uuid.UUID(second.id)))
        session.commit()
    assert owners()[uuid.UUID(people[0])] is None
    assert owners()[company_id] is None
    assert rep_finds(first) == (sorted(people[1:]), 2)


def test_filters_on_crm_fields_traits_and_custom(
    client: TestClient, admin: User, make_person: MakePerson
) -> None:
    client.post(
        "/v1/custom-fields",
        json={"record_type": "person", "key": "score", "type": "number"},
        headers=admin.headers,
    )
    a = make_person("a@example.com", city="Paris")
    b = make_person("b@example.com", city="Oslo")
    h = admin.headers
    client.patch(
        f"/v1/contacts/{a}",
        json={"lifecycle_stage": "customer", "custom": {"score": 7}, "tags": ["vip"]},
        headers=h,
    )
    client.patch(
        f"/v1/contacts/{b}", json={"lifecycle_stage": "lead", "custom": {"score": 2}}, headers=h
    )

    def ids(query: str) -> list[str]:
        answer = client.get(f"/v1/contacts?{query}", headers=h)
        assert answer.status_code == 200, answer.text
        return [p["id"] for p in answer.json()["items"]]

    assert ids("filter=lifecycle_stage:eq:customer") == [a]
    assert ids("filter=lifecycle_stage:in:customer,lead&sort=custom.score") == [b, a]
    assert ids("filter=traits.city:eq:Oslo") == [b]
    assert ids("filter=tags:has:vip") == [a]
    assert ids("filter=custom.score:lt:5") == [b]
    assert ids("sort=-traits.city") == [a, b]


def test_archive_restore_contacts(client: TestClient, admin: User, make_person: MakePerson) -> None:
    person = make_person("c@example.com")
    h = admin.headers
    assert client.post(f"/v1/contacts/{person}/archive", headers=h).status_code == 200
    assert_error(client.post(f"/v1/contacts/{person}/archive", headers=h), 409, "person_id")
    assert client.get("/v1/contacts", headers=h).json()["total"] == 0
    assert client.get("/v1/contacts?archived=true", headers=h).json()["total"] == 1
    assert client.post(f"/v1/contacts/{person}/restore", headers=h).status_code == 200
    assert client.get("/v1/contacts", headers=h).json()["total"] == 1


def test_a_merge_fills_the_survivors_empty_fields_and_an_unmerge_gives_them_back(
    client: TestClient, admin: User, make_person: MakePerson, make_user: MakeUser
) -> None:
    old = make_person("old@example.com")
    new = make_person("new@example.com")
    rep = make_user("sales")
    h = admin.headers
    client.patch(f"/v1/contacts/{old}", json={"lifecycle_stage": "lead", "tags": ["a"]}, headers=h)
    client.patch(
        f"/v1/contacts/{new}",
        json={"lifecycle_stage": "customer", "owner_id": rep.id, "tags": ["b"]},
        headers=h,
    )
    merge = client.post(f"/v1/persons/{old}/merge", json={"other_id": new}, headers=h)
    assert merge.status_code == 200, merge.text
    merged = client.get(f"/v1/contacts/{old}", headers=h).json()
    assert (merged["owner_id"], merged["lifecycle_stage"]) == (rep.id, "customer")
    assert merged["tags"] == ["a", "b"]
    assert client.get("/v1/contacts", headers=h).json()["total"] == 1
    undo = client.post(f"/v1/merges/{merge.json()['id']}/undo", json={}, headers=h)
    assert undo.status_code == 200, undo.text
    back = client.get(f"/v1/contacts/{new}", headers=h).json()
    assert (back["owner_id"], back["lifecycle_stage"], back["tags"]) == (rep.id, "customer", ["b"])


def test_export_people_carries_crm_fields(
    client: TestClient, admin: User, make_person: MakePerson, cli: CliRunner, tmp_path: object
) -> None:
    import json
    from pathlib import Path

    person = make_person("e@example.com")
    client.patch(
        f"/v1/contacts/{person}", json={"lifecycle_stage": "opportunity"}, headers=admin.headers
    )
    out = Path(str(tmp_path)) / "people.jsonl"
    result = cli.invoke(app, ["export", "people", str(out)])
    assert result.exit_code == 0, result.output
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert rows[0]["crm"]["lifecycle_stage"] == "opportunity"


def test_search_follows_what_contacts_are_found_by(
    client: TestClient, admin: User, make_person: MakePerson, tracker: Tracker
) -> None:
    """Search documents follow renames, links, merges and new identities; short words and
    LIKE wildcards are matched literally."""
    ann = make_person("ann@example.com", name="Ann Lee")
    company = client.post("/v1/companies", json={"name": "Initech"}, headers=admin.headers).json()

    def found(q: str, path: str = "/v1/contacts") -> list[str]:
        answer = client.get(path, params={"q": q}, headers=admin.headers)
        assert answer.status_code == 200, answer.text
        return [p["id"] for p in answer.json()["items"]]

    linked = client.put(
        f"/v1/companies/{company['id']}/persons/{ann}", json={}, headers=admin.headers
    )
    assert linked.status_code == 204, linked.text
    assert found("initech") == [ann]
    assert found("initech", "/v1/companies") == [company["id"]]
    client.patch(
        f"/v1/companies/{company['id']}", json={"name": "Intertrode"}, headers=admin.headers
    )
    assert (found("initech"), found("intertrode")) == ([], [ann])
    assert found("intertrode", "/v1/companies") == [company["id"]]
    client.delete(f"/v1/companies/{company['id']}/persons/{ann}", headers=admin.headers)
    assert found("intertrode") == []
    # A second email arrives; then another person's history merges in.
    tracker.send(
        {"type": "identify", "userId": "u-ann@example.com", "traits": {"email": "al@work.io"}}
    )
    assert found("work.io") == [ann]
    tracker.send({"type": "identify", "anonymousId": "tablet", "traits": {"name": "Tablet Annie"}})
    assert len(found("annie")) == 1
    tracker.send({"type": "identify", "userId": "u-ann@example.com", "anonymousId": "tablet"})
    assert found("annie") == found("al@work") == [ann]  # the survivor, found once
    assert found("le") == [ann]  # a short word is found too (by a scan)
    assert found("a_n") == []
    assert found("%") == []


def test_the_migration_folds_the_documents_it_finds(
    empty_database_url: str, tmp_path: Path
) -> None:
    """Documents written before 0021 were in their records' case: searches now test them
    with LIKE on folded words, so they are folded, by Unicode's rules on either database
    (PostgreSQL by 0021, SQLite by 0024)."""
    engine = create_db_engine(Settings(database_url=empty_database_url, data_dir=tmp_path))
    try:
        config = alembic_config(engine)
        command.upgrade(config, "0020")
        record_id = uuid.uuid4()
        with engine.begin() as connection:
            connection.execute(
                SearchDocument.__table__.insert().values(
                    record_type="person", record_id=record_id, document="Élodie TURING\nada@x.org"
                )
            )
        command.upgrade(config, "head")
        with Session(engine) as session:
            stored = session.scalar(select(SearchDocument.document))
            found = session.scalars(
                select(SearchDocument.record_id).where(
                    search._documents_matching(session, "person", ["ÉLODIE", "Turing"])
                    .with_only_columns(SearchDocument.id)
                    .scalar_subquery()
                    == SearchDocument.id
                )
            ).all()
        assert stored == "élodie turing\nada@x.org"
        assert found == [record_id]
    finally:
        engine.dispose()


def test_a_search_plans_its_statements_for_its_words_and_without_workers(
    runtime: Runtime, dialect: str, make_person: MakePerson
) -> None:
    """On PostgreSQL a search's transaction plans each statement for its own words (no
    generic plan of a prepared statement) and without parallel workers; a list without a
    search, and the next transaction, keep the server's settings."""
    if dialect != "postgresql":
        pytest.skip("plan settings are PostgreSQL's")
    make_person("ada@example.com", name="Ada Lovelace")
    settings = ("plan_cache_mode", "max_parallel_workers_per_gather")

    def shown(session: Session) -> list[str]:
        return [str(session.execute(text(f"SHOW {name}")).scalar_one()) for name in settings]

    with runtime.sessions() as session:
        server = shown(session)
        list_contacts(session, actor=None, query=ListQuery())
        assert shown(session) == server
        list_contacts(session, actor=None, query=ListQuery(), search="lovelace")
        assert shown(session) == ["force_custom_plan", "0"]
        session.rollback()
        assert shown(session) == server
    assert server != ["force_custom_plan", "0"]
