"""Users, API tokens and sign-in, as JSON."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Query, Request, Response, status
from sqlalchemy import select

from patron.auth import service
from patron.auth.deps import SESSION_COOKIE, AdminActor, CurrentActor
from patron.auth.models import Role, User
from patron.auth.schemas import (
    AuditEntryOut,
    AuditPage,
    LoginIn,
    MemberIn,
    TeamIn,
    TeamOut,
    TokenCreate,
    TokenOut,
    UserCreate,
    UserOut,
)
from patron.core.web import DB, ListParams, RuntimeDep

router = APIRouter(prefix="/v1", tags=["access"])


@router.post("/users", response_model=UserOut, status_code=status.HTTP_201_CREATED)
def create_user(body: UserCreate, db: DB, actor: AdminActor) -> User:
    """Create a user with a role."""
    user = service.create_user(
        db, email=body.email, role=body.role, password=body.password, name=body.name
    )
    service.record_audit(
        db,
        actor=actor,
        action="create",
        record_type="user",
        record_id=str(user.id),
        after={"email": user.email, "role": user.role},
    )
    db.commit()
    return user


@router.get("/users", response_model=list[UserOut])
def list_users(db: DB, actor: CurrentActor) -> list[User]:
    """Every user (admins and managers)."""
    actor.require(Role.manager)
    return list(db.scalars(select(User).order_by(User.email)))


@router.get("/me", response_model=UserOut)
def me(db: DB, actor: CurrentActor) -> User:
    """The user the credential belongs to."""
    return service.get_user_by_email(db, actor.email)


@router.post("/tokens", response_model=TokenOut, status_code=status.HTTP_201_CREATED)
def create_token(body: TokenCreate, db: DB, actor: CurrentActor) -> TokenOut:
    """Create an API token for yourself (or, as an admin, for anyone)."""
    email = body.email or actor.email
    if email != actor.email:
        actor.require()
    user = service.get_user_by_email(db, email)
    token, secret = service.create_token(db, user=user, name=body.name)
    service.record_audit(
        db, actor=actor, action="create", record_type="api_token", record_id=str(token.id)
    )
    db.commit()
    return TokenOut(id=token.id, name=token.name, prefix=token.prefix, token=secret)


@router.delete("/tokens/{token_id}", status_code=status.HTTP_204_NO_CONTENT)
def revoke_token(token_id: uuid.UUID, db: DB, actor: AdminActor) -> Response:
    """Revoke an API token."""
    service.revoke_token(db, token_id=token_id)
    service.record_audit(
        db, actor=actor, action="revoke", record_type="api_token", record_id=str(token_id)
    )
    db.commit()
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.post("/session", response_model=UserOut)
def sign_in(body: LoginIn, response: Response, db: DB, runtime: RuntimeDep) -> User:
    """Sign in with email and password; sets the UI session cookie."""
    user = service.authenticate(db, email=body.email, password=body.password)
    cookie = service.create_login_session(db, user=user, days=runtime.settings.session_days)
    db.commit()
    set_session_cookie(
        response, cookie, runtime.settings.session_days, runtime.settings.cookie_secure
    )
    return user


@router.delete("/session", status_code=status.HTTP_204_NO_CONTENT)
def sign_out(request: Request, db: DB) -> Response:
    """End the UI session of this browser."""
    cookie = request.cookies.get(SESSION_COOKIE)
    if cookie:
        service.end_login_session(db, cookie)
        db.commit()
    response = Response(status_code=status.HTTP_204_NO_CONTENT)
    response.delete_cookie(SESSION_COOKIE)
    return response


def set_session_cookie(response: Response, value: str, days: int, secure: bool) -> None:
    response.set_cookie(
        SESSION_COOKIE, value, max_age=days * 86400, httponly=True, samesite="lax", secure=secure
    )


@router.post("/teams", response_model=TeamOut, status_code=status.HTTP_201_CREATED)
def create_team(body: TeamIn, db: DB, actor: AdminActor) -> TeamOut:
    """Create a team; managers see the records owned by the members of their teams."""
    team = service.create_team(db, name=body.name, actor=actor)
    db.commit()
    return TeamOut(id=team.id, name=team.name, members=[], created_at=team.created_at)


@router.get("/teams", response_model=list[TeamOut])
def list_teams(db: DB, _actor: CurrentActor) -> list[TeamOut]:
    """Every team with its members' user ids."""
    return [
        TeamOut(id=t.id, name=t.name, members=members, created_at=t.created_at)
        for t, members in service.list_teams(db)
    ]


@router.post("/teams/{team_id}/members", status_code=status.HTTP_204_NO_CONTENT)
def add_member(team_id: uuid.UUID, body: MemberIn, db: DB, actor: AdminActor) -> Response:
    """Put a user in a team."""
    service.add_member(db, team_id=team_id, user_id=body.user_id, actor=actor)
    db.commit()
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.delete("/teams/{team_id}/members/{user_id}", status_code=status.HTTP_204_NO_CONTENT)
def remove_member(team_id: uuid.UUID, user_id: uuid.UUID, db: DB, actor: AdminActor) -> Response:
    """Take a user out of a team."""
    service.remove_member(db, team_id=team_id, user_id=user_id, actor=actor)
    db.commit()
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.get("/audit", response_model=AuditPage)
def list_audit(
    db: DB,
    actor: CurrentActor,
    params: ListParams,
    record_type: Annotated[str | None, Query(description="person, company, user, ...")] = None,
    record_id: str | None = None,
    actor_id: Annotated[uuid.UUID | None, Query(description="Changes made by this user.")] = None,
) -> AuditPage:
    """The audit log, newest first: by record (`record_type` and `record_id`), by actor
    (`actor_id`), or all of it. Admins see every entry, managers their teams' changes."""
    actor.require(Role.manager)
    page = service.list_audit(
        db,
        viewer=actor,
        query=params,
        record_type=record_type,
        record_id=record_id,
        actor_id=actor_id,
    )
    return AuditPage(
        items=[AuditEntryOut.model_validate(e) for e in page.items],
        total=page.total,
        total_exact=page.total_exact,
        next_cursor=page.next_cursor,
    )
