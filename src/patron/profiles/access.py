"""Who may see which persons: the one place that decides it, for every list, fetch, search,
timeline, export and count of persons.

Admins, marketing and analysts see everyone; a manager the persons owned by the members of
their teams; a sales user their own; a support user the persons on their tickets (tickets
come later and register themselves in ``SUPPORT_SCOPES``); everyone also the persons shared
with them or one of their teams.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable

from sqlalchemy import Select, select
from sqlalchemy.orm import Session

from patron.auth.models import Role
from patron.auth.service import Actor, OwnedRecords, sees_everything
from patron.core.errors import Forbidden, NotFound
from patron.identity import service as identity
from patron.identity.models import Person

RECORD_TYPE = "person"
# Roles that may change persons' CRM fields (the others only read).
WRITERS = (Role.manager, Role.sales, Role.marketing)
# Domains above (tickets) add the persons a support user works with here.
SUPPORT_SCOPES: list[Callable[[Actor], Select[uuid.UUID]]] = []


def _support_scopes(actor: Actor) -> list[Select[uuid.UUID]]:
    """The persons a support user sees beyond shares: those the registered domains add."""
    return [extra(actor) for extra in SUPPORT_SCOPES] if actor.role is Role.support else []


PERSONS = OwnedRecords(Person.owner_id, Person.id, RECORD_TYPE, _support_scopes)
# Whether an actor sees every person (None: the system), so that nothing needs filtering
# or counting per person.
sees_every_person = sees_everything
# A condition on :class:`Person`, true for the persons an actor may see (None: everyone).
readable_persons = PERSONS.condition
# The ids of the persons an actor may see, as a set for ``IN`` over many rows.
readable_person_ids = PERSONS.ids
# The same rule in parts that exclude each other, for counting; empty for who sees all.
person_count_arms = PERSONS.count_arms


def visible_person(session: Session, actor: Actor | None, person_id: uuid.UUID) -> Person:
    """The live person with this id if ``actor`` may see it; otherwise 404, the same answer
    as for a person that does not exist, so that ids leak nothing."""
    person = identity.live_person(session, person_id)
    seen = session.scalar(select(Person.id).where(Person.id == person.id, readable_persons(actor)))
    if seen is None:
        raise NotFound(f"no person with id {person_id}", field="person_id")
    return person


def writable_person(session: Session, actor: Actor | None, person_id: uuid.UUID) -> Person:
    """A person ``actor`` may change: visible (else 404) and a role that writes (else 403)."""
    person = visible_person(session, actor, person_id)
    if actor is not None and actor.role is not Role.admin and actor.role not in WRITERS:
        raise Forbidden(f"a {actor.role} user cannot change persons")
    return person
