"""Everything derived about persons, in a form two runs can be compared by."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from patron.crm.models import PersonCompany
from patron.identity.models import Identity, Person, PersonEvent


def snapshot(db: Session) -> dict[str, Any]:
    """Everything derived about every live person, comparable across runs."""
    db.rollback()
    out: dict[str, Any] = {}
    for person in db.scalars(select(Person).where(Person.merged_into.is_(None))):
        out[str(person.id)] = {
            "identities": sorted(
                f"{i.kind}:{i.value}"
                for i in db.scalars(select(Identity).where(Identity.person_id == person.id))
            ),
            "traits": person.traits,
            "computed": person.computed,
            "events": sorted(
                db.scalars(select(PersonEvent.seq).where(PersonEvent.person_id == person.id))
            ),
            "companies": sorted(
                str(c)
                for c in db.scalars(
                    select(PersonCompany.company_id).where(PersonCompany.person_id == person.id)
                )
            ),
            "first_seen": person.first_seen,
            "last_seen": person.last_seen,
        }
    return out
