"""Who may see which companies, deals, activities and tickets: the one place that decides
it, for every list, fetch, search, export and count of them.

Companies follow the rule of persons (``patron.profiles.access``): admins, marketing and
analysts see every company; managers their team's; sales their own; support the companies
on their tickets; everyone the companies shared with them or their teams.
"""

from __future__ import annotations

import uuid

from sqlalchemy import ColumnElement, Select, and_, func, or_, select, true
from sqlalchemy.orm import Session

from patron.auth.models import Role
from patron.auth.service import (
    Actor,
    OwnedRecords,
    exclusive_arms,
    owned_or_shared,
    sees_everything,
    shared_with,
    teammates,
)
from patron.core.errors import Forbidden, NotFound
from patron.crm.fields import CanSee
from patron.crm.models import NO_OWNER, Activity, Company, Deal
from patron.crm.tickets.models import Ticket
from patron.identity.models import Person
from patron.profiles.access import RECORD_TYPE as PERSON
from patron.profiles.access import readable_person_ids, readable_persons

RECORD_TYPE = "company"
WRITERS = (Role.manager, Role.sales, Role.marketing)
DEAL = "deal"
# Marketing reads deals but does not work them.
DEAL_WRITERS = (Role.manager, Role.sales)
# How many merge pointers to follow before giving up (merges keep chains flat).
MAX_HOPS = 64


def _support_companies(actor: Actor) -> list[Select[uuid.UUID | None]]:
    """The companies a support user sees beyond shares: those on their tickets."""
    if actor.role is not Role.support:
        return []
    return [select(Ticket.company_id).where(support_tickets(actor))]


# Companies follow the rule of persons; support users also see those on their tickets.
COMPANIES = OwnedRecords(Company.owner_id, Company.id, RECORD_TYPE, _support_companies)
sees_every_company = sees_everything
# A condition on :class:`Company`, true for the companies an actor may see.
readable_companies = COMPANIES.condition
# Their ids, as a set (see ``owned_or_shared_ids``).
readable_company_ids = COMPANIES.ids
# The rule in parts for counting (see ``owned_or_shared_arms``).
company_count_arms = COMPANIES.count_arms


def live_company(session: Session, company_id: uuid.UUID) -> Company:
    """The company with this id, following merges to the survivor; 404 if none."""
    company = session.get(Company, company_id)
    for _ in range(MAX_HOPS):
        if company is None:
            break
        if company.merged_into is None:
            return company
        company = session.get(Company, company.merged_into)
    raise NotFound(f"no company with id {company_id}", field="company_id")


def visible_company(session: Session, actor: Actor | None, company_id: uuid.UUID) -> Company:
    """The company if ``actor`` may see it; otherwise 404, as for one that does not exist."""
    company = live_company(session, company_id)
    statement = select(Company.id).where(Company.id == company.id, readable_companies(actor))
    if session.scalar(statement) is None:
        raise NotFound(f"no company with id {company_id}", field="company_id")
    return company


def writable_company(session: Session, actor: Actor | None, company_id: uuid.UUID) -> Company:
    """A company ``actor`` may change: visible (else 404) and a role that writes (else 403)."""
    company = visible_company(session, actor, company_id)
    require_writer(actor)
    return company


def require_writer(actor: Actor | None) -> None:
    if actor is not None and actor.role is not Role.admin and actor.role not in WRITERS:
        raise Forbidden(f"a {actor.role} user cannot change companies")


def can_see_for(session: Session, actor: Actor | None) -> CanSee:
    """Whether ``actor`` may see a record, for references in custom fields."""

    def can_see(record_type: str, record_id: uuid.UUID) -> bool:
        if record_type == "person":
            statement = select(Person.id).where(
                Person.id == record_id, Person.merged_into.is_(None), readable_persons(actor)
            )
        elif record_type == "company":
            statement = select(Company.id).where(
                Company.id == record_id, Company.merged_into.is_(None), readable_companies(actor)
            )
        elif record_type == "deal":
            statement = select(Deal.id).where(Deal.id == record_id, readable_deals(actor))
        elif record_type == TICKET:
            statement = select(Ticket.id).where(Ticket.id == record_id, readable_tickets(actor))
        else:
            return False
        return session.scalar(statement) is not None

    return can_see


# --- deals -----------------------------------------------------------------------------


# Deals: the same rule as companies (support sees the deals of no one: tickets bring
# persons and companies).
DEALS = OwnedRecords(Deal.owner_id, Deal.id, DEAL)
readable_deals = DEALS.condition
readable_deal_ids = DEALS.ids
deal_count_arms = DEALS.count_arms


def visible_deal(session: Session, actor: Actor | None, deal_id: uuid.UUID) -> Deal:
    """The deal if ``actor`` may see it; otherwise 404, as for one that does not exist."""
    deal = session.scalar(select(Deal).where(Deal.id == deal_id, readable_deals(actor)))
    if deal is None:
        raise NotFound(f"no deal with id {deal_id}", field="deal_id")
    return deal


def writable_deal(session: Session, actor: Actor | None, deal_id: uuid.UUID) -> Deal:
    deal = visible_deal(session, actor, deal_id)
    require_deal_writer(actor)
    return deal


def require_deal_writer(actor: Actor | None) -> None:
    if actor is not None and actor.role is not Role.admin and actor.role not in DEAL_WRITERS:
        raise Forbidden(f"a {actor.role} user cannot change deals")


# --- activities ------------------------------------------------------------------------

ACTIVITY = "activity"
ACTIVITY_WRITERS = (Role.manager, Role.sales, Role.marketing)


def readable_activities(actor: Actor | None) -> ColumnElement[bool]:
    """A condition on :class:`Activity`: an activity is visible with any record it is
    linked to, and to whoever owns it (a manager: their team's)."""
    if actor is None or actor.sees_everything:
        return true()
    return or_(
        owned_or_shared(
            actor, owner=Activity.owner_id, record_id=Activity.id, record_type=ACTIVITY
        ),
        Activity.person_id.in_(readable_person_ids(actor)),
        Activity.company_id.in_(readable_company_ids(actor)),
        Activity.deal_id.in_(readable_deal_ids(actor)),
        Activity.ticket_id.in_(select(Ticket.id).where(readable_tickets(actor))),
    )


def activity_count_arms(session: Session, actor: Actor | None) -> list[ColumnElement[bool]] | None:
    """:func:`readable_activities` for a sales rep or a manager, in parts that exclude each
    other (``patron.auth.service.exclusive_arms``), for counting: their own activities and
    those on the persons, companies and deals they own, each a range of an index on the
    owner columns the database keeps on activities (:class:`Activity`); then those shared
    with them, on records shared with them, and on tickets they see. None for everyone
    else: who sees every activity needs no test, and a support user's come with tickets.

    The rule row by row tests every activity against the records the rep owns; at
    2,000,000 activities that is a scan of all of them, where these ranges read about the
    rep's share of one index."""
    if actor is None or actor.role not in (Role.sales, Role.manager):
        return None
    owned: list[ColumnElement[bool]]
    if actor.role is Role.sales:
        owned = [Activity.owner_id == actor.user_id]
        owners = [actor.user_id]
    else:
        # The team as a list of ids, not a subquery, so that each test is an index range;
        # and the unowned in an arm of their own, so that neither needs the table's rows.
        team = list(session.scalars(teammates(actor)))
        owned = [Activity.owner_id.in_(team), Activity.owner_id.is_(None)]
        owners = [*team, NO_OWNER]  # a manager also sees the records nobody owns
    linked = (Activity.person_owner_id, Activity.company_owner_id, Activity.deal_owner_id)
    tickets = select(Ticket.id).where(readable_tickets(actor))
    company_shares = Activity.company_id.in_(shared_with(actor, RECORD_TYPE))
    return exclusive_arms(
        [
            *owned,
            *(column.in_(owners) for column in linked),
            Activity.id.in_(shared_with(actor, ACTIVITY)),
            Activity.person_id.in_(shared_with(actor, PERSON)),
            # "is not null" spelled out, for the partial indexes on these two links.
            and_(Activity.company_id.is_not(None), company_shares),
            Activity.deal_id.in_(shared_with(actor, DEAL)),
            and_(Activity.ticket_id.is_not(None), Activity.ticket_id.in_(tickets)),
        ]
    )


def activities_on_visible_record(actor: Actor | None) -> ColumnElement[bool]:
    """:func:`readable_activities` for activities already known to be linked to a person,
    company or deal ``actor`` sees (a record's timeline): all of them, since an activity is
    visible with any record it is linked to. Testing them against the actor's visible sets
    again would cost a rep the building of those sets, on every page, for nothing."""
    del actor  # the same for every role: the rule above has no exception
    return true()


def visible_activity(session: Session, actor: Actor | None, activity_id: uuid.UUID) -> Activity:
    found = session.scalar(
        select(Activity).where(Activity.id == activity_id, readable_activities(actor))
    )
    if found is None:
        raise NotFound(f"no activity with id {activity_id}", field="activity_id")
    return found


def require_activity_writer(actor: Actor | None) -> None:
    if actor is not None and actor.role is not Role.admin and actor.role not in ACTIVITY_WRITERS:
        raise Forbidden(f"a {actor.role} user cannot log activities")


# --- tickets ---------------------------------------------------------------------------

TICKET = "ticket"
# Who works tickets (create, change, comment); a manager only their team's and the queue.
TICKET_WRITERS = (Role.manager, Role.support)
# Who reads internal notes: the people who work tickets.
TICKET_STAFF = (Role.admin, Role.manager, Role.support)


def readable_tickets(actor: Actor | None) -> ColumnElement[bool]:
    """A condition on :class:`Ticket` true for the tickets ``actor`` may see.

    Admins, marketing and analysts: all. Support: their own, their teammates' and the
    unassigned queue. Managers: their team's and the queue, and (to read) the tickets of
    the persons and companies they see. Sales: the tickets of the persons and companies
    they see.
    """
    if actor is None or actor.sees_everything:
        return true()
    if actor.role is Role.support:
        return support_tickets(actor)
    by_customer = or_(
        Ticket.person_id.in_(readable_person_ids(actor)),
        Ticket.person_id.in_(_merged_into_readable(actor)),
        Ticket.company_id.in_(readable_company_ids(actor)),
    )
    if actor.role is Role.manager:
        return or_(team_tickets(actor), by_customer)
    return by_customer


def tickets_on_visible_record(actor: Actor | None) -> ColumnElement[bool]:
    """:func:`readable_tickets` for tickets already known to be on a person or company
    ``actor`` sees (a record's timeline): all of them, except for support users, who see
    tickets by team and queue rather than by customer."""
    if actor is not None and actor.role is Role.support:
        return support_tickets(actor)
    return true()


def team_tickets(actor: Actor) -> ColumnElement[bool]:
    """Tickets assigned to the actor or a teammate, and the unassigned queue."""
    return or_(Ticket.assignee_id.in_(teammates(actor)), Ticket.assignee_id.is_(None))


def support_tickets(actor: Actor) -> ColumnElement[bool]:
    """The tickets a support user works: theirs, their teammates' and the queue."""
    return team_tickets(actor)


def support_ticket_persons(actor: Actor) -> Select[uuid.UUID]:
    """The persons on a support user's tickets (a merged requester: the survivor), for
    ``patron.profiles.access.SUPPORT_SCOPES``."""
    requesters = select(Ticket.person_id).where(
        support_tickets(actor), Ticket.person_id.is_not(None)
    )
    return select(func.coalesce(Person.merged_into, Person.id)).where(Person.id.in_(requesters))


def _merged_into_readable(actor: Actor) -> Select[uuid.UUID]:
    """The persons merged into those the actor sees (tickets keep the id of the person
    they were made for)."""
    return select(Person.id).where(Person.merged_into.in_(readable_person_ids(actor)))


def visible_ticket(session: Session, actor: Actor | None, ticket_id: uuid.UUID) -> Ticket:
    """The ticket if ``actor`` may see it; otherwise 404, as for one that does not exist."""
    found = session.scalar(select(Ticket).where(Ticket.id == ticket_id, readable_tickets(actor)))
    if found is None:
        raise NotFound(f"no ticket with id {ticket_id}", field="ticket_id")
    return found


def writable_ticket(session: Session, actor: Actor | None, ticket_id: uuid.UUID) -> Ticket:
    """A ticket ``actor`` may work: visible (else 404), a role that works tickets and, for
    a manager, their team's or unassigned (else 403)."""
    ticket = visible_ticket(session, actor, ticket_id)
    require_ticket_writer(actor)
    if actor is not None and actor.role is Role.manager:
        mine = session.scalar(select(Ticket.id).where(Ticket.id == ticket.id, team_tickets(actor)))
        if mine is None:
            raise Forbidden("a manager works the tickets of their team and the unassigned ones")
    return ticket


def require_ticket_writer(actor: Actor | None) -> None:
    """403 unless the actor works tickets (admins, managers, support)."""
    if actor is not None and actor.role is not Role.admin and actor.role not in TICKET_WRITERS:
        raise Forbidden(f"a {actor.role} user cannot work tickets")


def reads_internal_notes(actor: Actor | None) -> bool:
    """Internal notes are for the people who work tickets."""
    return actor is None or actor.role in TICKET_STAFF
