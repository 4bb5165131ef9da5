"""Companies from ``group`` calls and the links between persons and companies."""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from typing import Any

from sqlalchemy import delete, inspect, select
from sqlalchemy.orm import Session

from patron.auth.service import Actor
from patron.collect.models import LogEntry
from patron.core.clock import utcnow
from patron.core.ids import new_id
from patron.crm.access import live_company, readable_companies
from patron.crm.models import Company, PersonCompany
from patron.crm.search import index_companies


def record_groups(
    session: Session, events: Sequence[LogEntry], owners: Mapping[int, uuid.UUID]
) -> None:
    """Each group call creates or updates its company and links the person to it."""
    groups = [e for e in events if e.type == "group"]
    if not groups:
        return
    keys = {str(e.payload.get("groupId")) for e in groups}
    companies = {
        c.group_id: live_company(session, c.id) if c.merged_into else c
        for c in session.scalars(select(Company).where(Company.group_id.in_(keys)))
    }
    renamed: set[str] = set()
    linking: list[tuple[uuid.UUID, uuid.UUID, str | None, int]] = []
    for e in groups:
        group_id = str(e.payload.get("groupId"))
        traits: dict[str, Any] = e.payload.get("traits") or {}
        company = companies.get(group_id)
        if company is None:
            company = Company(id=new_id(), group_id=group_id, traits={})
            session.add(company)
            companies[group_id] = company
            renamed.add(group_id)
        company.traits = {**company.traits, **traits}
        if isinstance(traits.get("name"), str) and company.name != traits["name"][:300]:
            company.name = traits["name"][:300]
            renamed.add(group_id)
        company.updated_at = utcnow()
        person = owners.get(e.seq)
        if person is not None:
            linking.append((person, company.id, _role(e), e.seq))
    _link_all(session, linking)
    # New or renamed companies are found by their name, and so are the people at them.
    session.flush()
    index_companies(session, [companies[g].id for g in renamed])


def _link_all(
    session: Session, linking: Sequence[tuple[uuid.UUID, uuid.UUID, str | None, int]]
) -> None:
    """:func:`link_person` for each (person, company, role, seq) in order, with the links
    that exist read in one query (a flush and a query per group call cost more)."""
    if not linking:
        return
    persons = list({person for person, _, _, _ in linking})
    found = {
        (link.person_id, link.company_id): link
        for link in session.scalars(
            select(PersonCompany).where(
                PersonCompany.person_id.in_(persons),
                PersonCompany.company_id.in_(list({c for _, c, _, _ in linking})),
            )
        )
    }
    for person, company, role, seq in linking:
        key = (person, company)
        found[key] = _set_link(session, found.get(key), person, company, role=role, seq=seq)


def _role(event: LogEntry) -> str | None:
    context = event.payload.get("context")
    traits = context.get("traits") if isinstance(context, dict) else None
    role = traits.get("title") or traits.get("role") if isinstance(traits, dict) else None
    return str(role)[:200] if role else None


def link_person(
    session: Session, person: uuid.UUID, company: uuid.UUID, *, role: str | None, seq: int | None
) -> None:
    link = session.get(PersonCompany, (person, company))
    _set_link(session, link, person, company, role=role, seq=seq)


def _set_link(
    session: Session,
    link: PersonCompany | None,
    person: uuid.UUID,
    company: uuid.UUID,
    *,
    role: str | None,
    seq: int | None,
) -> PersonCompany:
    """The person's link to the company, made if ``link`` (the existing one) is None;
    a role given replaces the link's."""
    if link is None:
        link = PersonCompany(person_id=person, company_id=company, role=role, since_seq=seq)
        session.add(link)
    elif role:
        link.role = role
    return link


def companies_of(
    session: Session, person: uuid.UUID, *, actor: Actor | None = None
) -> list[tuple[Company, PersonCompany]]:
    """The person's companies that ``actor`` may see (all of them without an actor)."""
    rows = session.execute(
        select(Company, PersonCompany)
        .join(PersonCompany, PersonCompany.company_id == Company.id)
        .where(PersonCompany.person_id == person, readable_companies(actor))
        .order_by(Company.name)
    )
    return [(c, link) for c, link in rows]


def move_links(session: Session, pairs: Sequence[tuple[uuid.UUID, uuid.UUID]]) -> None:
    """Merge hook, for a group of merges in order: the merged persons' companies become
    their survivors' (a role the survivor lacks is taken from the merged person)."""
    session.flush()
    persons = list({p for pair in pairs for p in pair})
    links: dict[uuid.UUID, dict[uuid.UUID, PersonCompany]] = {p: {} for p in persons}
    for link in session.scalars(select(PersonCompany).where(PersonCompany.person_id.in_(persons))):
        links[link.person_id][link.company_id] = link
    if not any(links.values()):
        return
    for survivor, merged in pairs:
        mine = links[survivor]
        for company, link in links.pop(merged, {}).items():
            own = mine.get(company)
            if own is None:
                own = mine[company] = PersonCompany(
                    person_id=survivor, company_id=company, role=None, since_seq=link.since_seq
                )
                session.add(own)
            if link.role:
                own.role = link.role
            if inspect(link).pending:  # made for a survivor earlier in this group
                session.expunge(link)
            else:
                session.delete(link)
        links[merged] = {}
    session.flush()


def forget_links(session: Session, persons: Sequence[uuid.UUID]) -> None:
    """Reset hook: links from group calls come back on replay; links people made by hand
    (no log position) are decisions, and stay."""
    session.flush()
    session.execute(
        delete(PersonCompany).where(
            PersonCompany.person_id.in_(list(persons)), PersonCompany.since_seq.is_not(None)
        )
    )
