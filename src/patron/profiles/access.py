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
from typing import Any

from sqlalchemy import ColumnElement, CompoundSelect, Select, or_, select, true
from sqlalchemy.orm import Session

from patron.auth.models import Role
from patron.auth.service import (
    Actor,
    owned_or_shared,
    owned_or_shared_arms,
    owned_or_shared_ids,
)
from patron.core.errors import Forbidden, NotFound
from patron.identity import service as identity
from patron.identity.models import Person

RECORD_TYPE = "person"
# Roles that may change persons' CRM fields (the others only read).
WRITERS = (Role.manager, Role.sales, Role.marketing)
# Domains above (tickets) add the persons a support user works with here.
SUPPORT_SCOPES: list[Callable[[Actor], Select[uuid.UUID]]] = []


def sees_every_person(actor: Actor | None) -> bool:
    """Whether ``actor`` sees every person (None: the system), so that nothing needs
    filtering or counting per person."""
    return actor is None or actor.sees_everything


def readable_persons(actor: Actor | None) -> ColumnElement[bool]:
    """A condition on :class:`Person` true for the persons ``actor`` may see (None: the
    system, which sees everyone)."""
    if sees_every_person(actor) or actor is None:  # (the second test only tells the type checker)
        return true()
    scope = owned_or_shared(
        actor, owner=Person.owner_id, record_id=Person.id, record_type=RECORD_TYPE
    )
    extras = _support_scopes(actor)
    return or_(scope, *(Person.id.in_(extra) for extra in extras)) if extras else scope


def person_count_arms(actor: Actor | None) -> list[ColumnElement[bool]]:
    """:func:`readable_persons` split for counting (see ``owned_or_shared_arms``); empty
    for a caller who sees every person."""
    if sees_every_person(actor) or actor is None:
        return []
    return owned_or_shared_arms(
        actor,
        owner=Person.owner_id,
        record_id=Person.id,
        record_type=RECORD_TYPE,
        more=_support_scopes(actor),
    )


def _support_scopes(actor: Actor) -> list[Select[uuid.UUID]]:
    """The persons a support user sees beyond shares: those the registered domains add."""
    return [extra(actor) for extra in SUPPORT_SCOPES] if actor.role is Role.support else []


def readable_person_ids(actor: Actor) -> Select[Any] | CompoundSelect[Any]:
    """The ids of the persons ``actor`` may see (:func:`readable_persons` as a set, for
    ``IN`` conditions over many rows)."""
    if actor.sees_everything:
        return select(Person.id)
    return owned_or_shared_ids(
        actor,
        owner=Person.owner_id,
        record_id=Person.id,
        record_type=RECORD_TYPE,
        more=_support_scopes(actor),
    )


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
