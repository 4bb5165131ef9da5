"""Companies: create, edit, archive, restore, fetch, list and search, merge duplicates."""

from __future__ import annotations

import re
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from patron.auth.service import Actor, move_shares, record_audit
from patron.core.clock import utcnow
from patron.core.dialect import dialect_name
from patron.core.errors import Conflict, InvalidInput, NotFound
from patron.core.pagination import COUNT_LIMIT, Field, ListQuery, Page, keyset_page
from patron.crm import fields as custom_fields
from patron.crm import search as search_index
from patron.crm.access import (
    RECORD_TYPE,
    can_see_for,
    company_count_arms,
    readable_companies,
    require_writer,
    visible_company,
    writable_company,
)
from patron.crm.models import Activity, Company, Deal, PersonCompany
from patron.crm.records import (
    changed,
    check_owner,
    check_tags,
    jsonable,
    snapshot,
    toggle_archived,
)
from patron.crm.search import SEARCH_COUNT_LIMIT
from patron.crm.service import link_person
from patron.crm.tickets.models import Ticket
from patron.identity.models import Person
from patron.profiles.access import readable_persons, visible_person

EDITABLE = ("name", "domain", "industry", "size", "owner_id", "tags", "custom")
AUDITED = (*EDITABLE, "archived_at")
LABEL = re.compile(r"^(?!-)[a-z0-9-]{1,63}(?<!-)$")
MAX_SIZE = 10_000_000

BASE_FIELDS: dict[str, Field] = {
    "id": Field(Company.id, "uuid", uuid.UUID),
    "name": Field(Company.name),
    "domain": Field(Company.domain),
    "industry": Field(Company.industry),
    "size": Field(Company.size, "number", int),
    "owner_id": Field(Company.owner_id, "uuid", uuid.UUID),
    "tags": Field(Company.tags, "list", sortable=False),
    "group_id": Field(Company.group_id),
    "created_at": Field(Company.created_at, "datetime", datetime.fromisoformat),
    "updated_at": Field(Company.updated_at, "datetime", datetime.fromisoformat),
    "archived_at": Field(Company.archived_at, "datetime", datetime.fromisoformat),
}


def normalise_domain(value: str) -> str:
    """``https://www.Example.com/about`` -> ``example.com``; a 400 naming ``domain`` if it is
    not a host name."""
    text = value.strip().lower()
    host = urlsplit(text if "//" in text else f"//{text}").hostname or ""
    host = host.rstrip(".").removeprefix("www.")
    try:
        host = host.encode("idna").decode("ascii")
    except UnicodeError as exc:
        raise InvalidInput(f"{value!r} is not a domain name", field="domain") from exc
    labels = host.split(".")
    if len(host) > 253 or len(labels) < 2 or not all(LABEL.match(p) for p in labels):
        raise InvalidInput(f"{value!r} is not a domain name", field="domain")
    return host


def _cleaned(
    session: Session, changes: Mapping[str, Any], company: Company | None
) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name, value in changes.items():
        if name == "name":
            if value is None or not str(value).strip():
                raise InvalidInput("a company needs a name", field="name")
            out[name] = str(value).strip()[:300]
        elif name == "domain":
            out[name] = None if value is None else normalise_domain(value)
        elif name == "size":
            if value is not None and not 0 <= value <= MAX_SIZE:
                raise InvalidInput(f"size is a number of employees, 0 to {MAX_SIZE}", field="size")
            out[name] = value
        elif name == "owner_id":
            out[name] = check_owner(session, value)
        elif name == "tags":
            out[name] = check_tags(value or [])
        elif name == "industry":
            out[name] = value.strip()[:200] if value else None
    if out.get("domain") is not None:
        _check_domain_free(session, out["domain"], company.id if company else None)
    return out


def _check_domain_free(session: Session, domain: str, own_id: uuid.UUID | None) -> None:
    holder = session.scalar(select(Company.id).where(Company.domain == domain))
    if holder is not None and holder != own_id:
        raise Conflict(f"company {holder} already has the domain {domain}", field="domain")


def _custom(
    session: Session, actor: Actor | None, current: Mapping[str, Any], changes: Mapping[str, Any]
) -> dict[str, Any]:
    return custom_fields.apply_values(
        current,
        changes,
        custom_fields.fields_of(session, RECORD_TYPE),
        record_type=RECORD_TYPE,
        can_see=can_see_for(session, actor),
    )


def create_company(session: Session, *, actor: Actor | None, values: Mapping[str, Any]) -> Company:
    """Create a company; its owner is the creating user unless ``owner_id`` is given."""
    require_writer(actor)
    if "name" not in values:
        raise InvalidInput("a company needs a name", field="name")
    cleaned = _cleaned(session, values, None)
    if "owner_id" not in values and actor is not None:
        cleaned["owner_id"] = actor.user_id
    company = Company(**{"traits": {}, "tags": [], **cleaned})
    company.custom = _custom(session, actor, {}, values.get("custom") or {})
    session.add(company)
    session.flush()
    search_index.index_companies(session, [company.id])
    record_audit(
        session,
        actor=actor,
        action="create",
        record_type=RECORD_TYPE,
        record_id=str(company.id),
        after=snapshot(company, EDITABLE),
    )
    return company


def update_company(
    session: Session, *, actor: Actor | None, company_id: uuid.UUID, changes: Mapping[str, Any]
) -> Company:
    """Change the given fields (``custom`` keys are changed one by one; null clears)."""
    company = writable_company(session, actor, company_id)
    before = snapshot(company, EDITABLE)
    for name, value in _cleaned(session, changes, company).items():
        setattr(company, name, value)
    if "custom" in changes:
        company.custom = _custom(session, actor, company.custom, changes["custom"] or {})
    company.updated_at = utcnow()
    session.flush()
    old, new = changed(before, snapshot(company, EDITABLE))
    if "name" in new or "domain" in new:
        search_index.index_companies(session, [company.id])
    if new:
        record_audit(
            session,
            actor=actor,
            action="update",
            record_type=RECORD_TYPE,
            record_id=str(company.id),
            before=old,
            after=new,
        )
    return company


def set_archived(
    session: Session, *, actor: Actor | None, company_id: uuid.UUID, archived: bool
) -> Company:
    """Archive (hide from lists by default) or restore a company; doing it twice is a 409."""
    company = writable_company(session, actor, company_id)
    toggle_archived(
        session, actor=actor, record=company, record_type=RECORD_TYPE, archived=archived
    )
    return company


def get_company(session: Session, *, actor: Actor | None, company_id: uuid.UUID) -> Company:
    return visible_company(session, actor, company_id)


def list_fields(session: Session) -> dict[str, Field]:
    """What company lists filter and sort on: the columns and the custom fields."""
    definitions = custom_fields.fields_of(session, RECORD_TYPE)
    return {**BASE_FIELDS, **custom_fields.list_fields_for(Company.custom, definitions)}


def list_companies(
    session: Session,
    *,
    actor: Actor | None,
    query: ListQuery,
    search: str | None = None,
    archived: bool = False,
) -> Page[Company]:
    """Companies ``actor`` may see, filtered, searched (name and domain), sorted, paged."""
    conditions = [
        Company.merged_into.is_(None),
        Company.archived_at.is_not(None) if archived else Company.archived_at.is_(None),
    ]
    statement = select(Company).where(*conditions)
    # A dense company search tests each row's own name and domain, which the page and the
    # count (up to its limit) walk alike: there is no cheaper shape to count from.
    found = search_index.search_filter(
        session,
        search_index.COMPANY,
        Company.id,
        search or "",
        entity=Company,
        own_document=search_index.company_document(dialect_name(session)),
    )
    if found is not None:
        statement = statement.where(found.condition)
    return keyset_page(
        session,
        statement,
        fields=list_fields(session),
        query=query,
        default_sort="name",
        tiebreak=BASE_FIELDS["id"],
        visible=readable_companies(actor),
        count_arms=company_count_arms(actor),
        count_limit=SEARCH_COUNT_LIMIT if search else COUNT_LIMIT,
    )


def persons_of(
    session: Session, *, actor: Actor | None, company_id: uuid.UUID
) -> list[tuple[Person, PersonCompany]]:
    """The persons linked to a company that ``actor`` may see, with their role there."""
    company = visible_company(session, actor, company_id)
    rows = session.execute(
        select(Person, PersonCompany)
        .join(PersonCompany, PersonCompany.person_id == Person.id)
        .where(PersonCompany.company_id == company.id, readable_persons(actor))
        .order_by(Person.created_seq)
    )
    return [(p, link) for p, link in rows]


def link_person_to_company(
    session: Session,
    *,
    actor: Actor | None,
    company_id: uuid.UUID,
    person_id: uuid.UUID,
    role: str | None,
) -> PersonCompany:
    """Link a person to a company with their role there (again: changes the role)."""
    company = writable_company(session, actor, company_id)
    try:
        person = visible_person(session, actor, person_id)
    except NotFound as exc:
        raise InvalidInput(f"no person {person_id} you can see", field="person_id") from exc
    role = role.strip()[:200] if role and role.strip() else None
    link_person(session, person.id, company.id, role=role, seq=None)
    session.flush()
    search_index.index_persons(session, [person.id])
    record_audit(
        session,
        actor=actor,
        action="link_person",
        record_type=RECORD_TYPE,
        record_id=str(company.id),
        after={"person_id": str(person.id), "role": role},
    )
    return session.get_one(PersonCompany, (person.id, company.id))


def unlink_person(
    session: Session, *, actor: Actor | None, company_id: uuid.UUID, person_id: uuid.UUID
) -> None:
    company = writable_company(session, actor, company_id)
    link = session.get(PersonCompany, (person_id, company.id))
    if link is None:
        raise NotFound("that person is not linked to this company", field="person_id")
    session.delete(link)
    search_index.index_persons(session, [person_id])
    record_audit(
        session,
        actor=actor,
        action="unlink_person",
        record_type=RECORD_TYPE,
        record_id=str(company.id),
        before={"person_id": str(person_id), "role": link.role},
    )


# --- merging duplicates ----------------------------------------------------------------


@dataclass
class MergePlan:
    survivor: Company
    merged: Company
    conflicts: list[dict[str, Any]]
    result: dict[str, Any]


MERGED_FIELDS = ("name", "domain", "industry", "size", "owner_id")


def plan_merge(
    session: Session,
    *,
    actor: Actor | None,
    company_id: uuid.UUID,
    other_id: uuid.UUID,
    prefer_other: frozenset[str] = frozenset(),
) -> MergePlan:
    """What merging ``other_id`` into ``company_id`` would give, and which fields conflict.

    A field conflicts when both companies have different values; the survivor's wins unless
    the field is in ``prefer_other``. Empty fields are filled from the other company; tags
    are united; custom values and traits are combined, the winner's value kept on a clash.
    """
    survivor = writable_company(session, actor, company_id)
    merged = writable_company(session, actor, other_id)
    if survivor.id == merged.id:
        raise Conflict("a company cannot be merged into itself", field="other_id")
    unknown = prefer_other - {*MERGED_FIELDS, *merged.custom}
    if unknown:
        raise InvalidInput(
            f"cannot prefer unknown fields: {', '.join(sorted(unknown))}", field="prefer"
        )
    conflicts: list[dict[str, Any]] = []
    result: dict[str, Any] = {}
    for name in MERGED_FIELDS:
        mine, theirs = getattr(survivor, name), getattr(merged, name)
        if mine is not None and theirs is not None and mine != theirs:
            conflicts.append(
                {"field": name, "survivor": jsonable(mine), "merged": jsonable(theirs)}
            )
        pick_other = name in prefer_other or mine is None
        result[name] = jsonable(theirs if pick_other and theirs is not None else mine)
    custom = dict(merged.custom)
    for key, mine in survivor.custom.items():
        theirs = merged.custom.get(key)
        if theirs is not None and theirs != mine:
            conflicts.append({"field": f"custom.{key}", "survivor": mine, "merged": theirs})
        if key not in prefer_other or theirs is None:
            custom[key] = mine
    result["custom"] = custom
    result["tags"] = list(dict.fromkeys([*survivor.tags, *merged.tags]))
    return MergePlan(survivor, merged, conflicts, result)


def merge_companies(
    session: Session,
    *,
    actor: Actor | None,
    company_id: uuid.UUID,
    other_id: uuid.UUID,
    prefer_other: frozenset[str] = frozenset(),
) -> MergePlan:
    """Merge ``other_id`` into ``company_id``: fields as :func:`plan_merge` shows, persons'
    links, traits and shares move over, and the other company's id and groupId lead here."""
    plan = plan_merge(
        session, actor=actor, company_id=company_id, other_id=other_id, prefer_other=prefer_other
    )
    survivor, merged = plan.survivor, plan.merged
    before = {"survivor": snapshot(survivor, EDITABLE), "merged": snapshot(merged, EDITABLE)}
    domain = plan.result["domain"]
    merged.domain = None
    session.flush()  # frees the domain before the survivor takes it
    survivor.name = plan.result["name"]
    survivor.domain = domain
    survivor.industry = plan.result["industry"]
    survivor.size = plan.result["size"]
    survivor.owner_id = (
        None if plan.result["owner_id"] is None else uuid.UUID(plan.result["owner_id"])
    )
    survivor.tags = plan.result["tags"]
    survivor.custom = plan.result["custom"]
    survivor.traits = {**merged.traits, **survivor.traits}
    survivor.updated_at = merged.updated_at = utcnow()
    merged.merged_into = survivor.id
    session.flush()
    _move_people(session, survivor.id, merged.id)
    # The duplicate's deals, activities and tickets are the survivor's.
    for model in (Activity, Deal, Ticket):
        session.execute(
            update(model).where(model.company_id == merged.id).values(company_id=survivor.id)
        )
    move_shares(session, record_type=RECORD_TYPE, source=merged.id, target=survivor.id)
    search_index.index_companies(session, [survivor.id, merged.id])
    # Companies merged into the merged one earlier now point straight at the survivor.
    session.execute(
        update(Company).where(Company.merged_into == merged.id).values(merged_into=survivor.id)
    )
    record_audit(
        session,
        actor=actor,
        action="merge",
        record_type=RECORD_TYPE,
        record_id=str(survivor.id),
        before=before,
        after={"merged": str(merged.id), **snapshot(survivor, EDITABLE)},
    )
    return plan


def _move_people(session: Session, survivor: uuid.UUID, merged: uuid.UUID) -> None:
    links = list(session.scalars(select(PersonCompany).where(PersonCompany.company_id == merged)))
    for link in links:
        link_person(session, link.person_id, survivor, role=link.role, seq=link.since_seq)
        session.delete(link)
    session.flush()
