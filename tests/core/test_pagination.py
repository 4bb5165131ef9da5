"""The shared list helper: nulls last in either direction, cursors that walk every row
exactly once (on nulls and ties too), and totals counted up to a limit."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select
from sqlalchemy.orm import Session

from patron.core.pagination import count_up_to
from patron.identity.models import Person
from tests.conftest import MakePerson, User

NAMES = ["Cleo", None, "Ada", "Bea", None, "Ada", "Dan"]


def walk(client: TestClient, user: User, sort: str) -> list[dict[str, Any]]:
    seen: list[dict[str, Any]] = []
    cursor = None
    while True:
        params: dict[str, Any] = {"sort": sort, "limit": 2}
        if cursor:
            params["cursor"] = cursor
        page = client.get("/v1/contacts", params=params, headers=user.headers).json()
        seen += page["items"]
        cursor = page["next_cursor"]
        if cursor is None:
            return seen


@pytest.mark.parametrize("sort", ["name", "-name"])
def test_nulls_come_last_and_cursors_walk_every_row_once(
    client: TestClient, admin: User, make_person: MakePerson, sort: str
) -> None:
    for n, name in enumerate(NAMES):
        traits = {"name": name} if name else {}
        make_person(f"p{n}@example.com", **traits)
    seen = walk(client, admin, sort)
    assert len({c["id"] for c in seen}) == len(seen) == len(NAMES)
    names = [c["traits"].get("name") for c in seen]
    present = sorted(n for n in NAMES if n)
    expected = (present if sort == "name" else present[::-1]) + [None, None]
    assert names == expected
    whole = client.get("/v1/contacts", params={"sort": sort}, headers=admin.headers).json()
    assert [c["id"] for c in whole["items"]] == [c["id"] for c in seen]
    assert (whole["total"], whole["total_exact"]) == (len(NAMES), True)


def test_a_total_is_exact_up_to_its_limit(
    make_person: MakePerson, db: Session, client: TestClient, admin: User
) -> None:
    for n in range(5):
        make_person(f"c{n}@example.com")
    persons = select(Person).where(Person.merged_into.is_(None))
    db.rollback()
    assert count_up_to(db, persons, limit=10) == (5, True)
    assert count_up_to(db, persons, limit=5) == (5, True)
    assert count_up_to(db, persons, limit=3) == (3, False)
    assert count_up_to(db, persons.where(Person.id.is_(None)), limit=3) == (0, True)
