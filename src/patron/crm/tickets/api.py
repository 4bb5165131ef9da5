"""The tickets API: tickets, their comments, and SLA policies."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Query, Response, status
from fastapi.responses import StreamingResponse

from patron.auth.deps import AdminActor, CurrentActor
from patron.core.clock import utcnow
from patron.core.web import DB, ListParams, RuntimeDep
from patron.crm import exports
from patron.crm.tickets import policies, service
from patron.crm.tickets.models import SlaPolicy, Ticket, TicketComment
from patron.crm.tickets.schemas import (
    CommentIn,
    CommentOut,
    CommentPage,
    SlaOut,
    SlaPolicyIn,
    SlaPolicyOut,
    SlaPolicyPatch,
    TargetOut,
    TicketIn,
    TicketOut,
    TicketPage,
    TicketPatch,
)
from patron.crm.tickets.service import SlaView

router = APIRouter(prefix="/v1", tags=["tickets"])
Search = Annotated[str | None, Query(description="Words that must all be in the subject.")]


def ticket_out(db: DB, ticket: Ticket, view: SlaView | None = None) -> TicketOut:
    """A ticket with its SLA as of now."""
    view = view or service.sla_view(db, ticket)
    targets = {
        name: TargetOut(**{k: v for k, v in vars(t).items() if k != "target"})
        for name, t in view.targets.items()
    }
    sla = SlaOut(
        policy_id=view.policy_id,
        policy_name=view.policy_name,
        state=view.state,
        paused=view.paused,
        due_at=view.due_at,
        first_response=targets.get("first_response"),
        resolution=targets.get("resolution"),
    )
    return TicketOut(
        id=ticket.id,
        subject=ticket.subject,
        description=ticket.description,
        person_id=ticket.person_id,
        company_id=ticket.company_id,
        status=ticket.status,
        priority=ticket.priority,
        channel=ticket.channel,
        assignee_id=ticket.assignee_id,
        tags=ticket.tags,
        custom=ticket.custom,
        created_by=ticket.created_by,
        created_at=ticket.created_at,
        updated_at=ticket.updated_at,
        first_responded_at=ticket.first_responded_at,
        solved_at=ticket.solved_at,
        closed_at=ticket.closed_at,
        first_response_minutes=ticket.first_response_minutes,
        resolution_minutes=ticket.resolution_minutes,
        sla=sla,
    )


@router.post("/tickets", response_model=TicketOut, status_code=status.HTTP_201_CREATED)
def create_ticket(body: TicketIn, db: DB, actor: CurrentActor) -> TicketOut:
    """Open a ticket (admins, managers, support); the first SLA policy that covers its
    priority and channel sets its targets."""
    ticket = service.create_ticket(db, actor=actor, values=body.model_dump(exclude_unset=True))
    db.commit()
    return ticket_out(db, ticket)


@router.get("/tickets", response_model=TicketPage)
def list_tickets(db: DB, actor: CurrentActor, params: ListParams, q: Search = None) -> TicketPage:
    """Tickets you may see, with filters (`status:in:new,open`, `sla_state:eq:breached`,
    `sla_due_at:lt:<time>` for those breaching soon, `custom.<key>`...), search, sort
    (`-priority_rank`, `sla_due_at`...) and keyset pages; newest first."""
    now = utcnow()
    page = service.list_tickets(db, actor=actor, query=params, search=q, now=now)
    items = [ticket_out(db, t, service.sla_view(db, t, now)) for t in page.items]
    return TicketPage(
        items=items, total=page.total, total_exact=page.total_exact, next_cursor=page.next_cursor
    )


@router.get("/tickets/export.csv", response_class=StreamingResponse)
def export_tickets(
    actor: CurrentActor, runtime: RuntimeDep, params: ListParams, q: Search = None
) -> StreamingResponse:
    """The filtered ticket list (everything `GET /v1/tickets` takes) as CSV, every page."""
    rows = exports.export_csv(runtime.readers, kind="tickets", actor=actor, query=params, search=q)
    return StreamingResponse(
        rows,
        media_type="text/csv",
        headers={"Content-Disposition": 'attachment; filename="tickets.csv"'},
    )


@router.get("/tickets/{ticket_id}", response_model=TicketOut)
def get_ticket(ticket_id: uuid.UUID, db: DB, actor: CurrentActor) -> TicketOut:
    """A ticket, with each SLA target's due time, business minutes elapsed and left, and
    state (ok, warning, breached, met) as of now."""
    return ticket_out(db, service.get_ticket(db, actor=actor, ticket_id=ticket_id))


@router.patch("/tickets/{ticket_id}", response_model=TicketOut)
def update_ticket(
    ticket_id: uuid.UUID, body: TicketPatch, db: DB, actor: CurrentActor
) -> TicketOut:
    """Change a ticket: fields, assignee, status (pending pauses the SLA clock, solved
    stops it; a solved ticket can be reopened; closed is final)."""
    ticket = service.update_ticket(
        db, actor=actor, ticket_id=ticket_id, changes=body.model_dump(exclude_unset=True)
    )
    db.commit()
    return ticket_out(db, ticket)


@router.get("/tickets/{ticket_id}/comments", response_model=CommentPage)
def list_comments(
    ticket_id: uuid.UUID, db: DB, actor: CurrentActor, params: ListParams
) -> CommentPage:
    """A ticket's replies and notes, oldest first (internal notes for those who work
    tickets: admins, managers, support)."""
    page = service.list_comments(db, actor=actor, ticket_id=ticket_id, query=params)
    items = [CommentOut.model_validate(c) for c in page.items]
    return CommentPage(
        items=items, total=page.total, total_exact=page.total_exact, next_cursor=page.next_cursor
    )


@router.post(
    "/tickets/{ticket_id}/comments", response_model=CommentOut, status_code=status.HTTP_201_CREATED
)
def add_comment(
    ticket_id: uuid.UUID, body: CommentIn, db: DB, actor: CurrentActor
) -> TicketComment:
    """Reply (public) or add an internal note; the first public reply is the first
    response. `from_requester` logs the requester's own words (it reopens a pending or
    solved ticket)."""
    comment = service.add_comment(
        db,
        actor=actor,
        ticket_id=ticket_id,
        body=body.body,
        public=body.public,
        from_requester=body.from_requester,
    )
    db.commit()
    return comment


# --- SLA policies ----------------------------------------------------------------------


@router.get("/sla-policies", response_model=list[SlaPolicyOut])
def list_policies(db: DB, _actor: CurrentActor) -> list[SlaPolicy]:
    """The SLA policies in the order they are tried; the first that covers a new ticket's
    priority and channel applies."""
    return policies.list_policies(db)


@router.post("/sla-policies", response_model=SlaPolicyOut, status_code=status.HTTP_201_CREATED)
def create_policy(body: SlaPolicyIn, db: DB, actor: AdminActor) -> SlaPolicy:
    """Create an SLA policy (admins): whom it covers, targets per priority in business
    minutes, and business hours."""
    policy = policies.create_policy(db, actor=actor, values=body.model_dump(exclude_unset=True))
    db.commit()
    return policy


@router.get("/sla-policies/{policy_id}", response_model=SlaPolicyOut)
def get_policy(policy_id: uuid.UUID, db: DB, _actor: CurrentActor) -> SlaPolicy:
    """One SLA policy."""
    return policies.get_policy(db, policy_id)


@router.patch("/sla-policies/{policy_id}", response_model=SlaPolicyOut)
def update_policy(
    policy_id: uuid.UUID, body: SlaPolicyPatch, db: DB, actor: AdminActor
) -> SlaPolicy:
    """Change an SLA policy (admins). Tickets keep the targets they were given; new
    business hours count from now on for the open tickets that have the policy."""
    policy = policies.update_policy(
        db, actor=actor, policy_id=policy_id, changes=body.model_dump(exclude_unset=True)
    )
    db.commit()
    return policy


@router.delete("/sla-policies/{policy_id}", status_code=status.HTTP_204_NO_CONTENT)
def delete_policy(policy_id: uuid.UUID, db: DB, actor: AdminActor) -> Response:
    """Retire an SLA policy (admins): no new ticket gets it; tickets that have it keep it."""
    policies.delete_policy(db, actor=actor, policy_id=policy_id)
    db.commit()
    return Response(status_code=status.HTTP_204_NO_CONTENT)
