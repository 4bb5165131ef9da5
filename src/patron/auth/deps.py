"""FastAPI dependencies that turn credentials into an :class:`Actor`."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Annotated

from fastapi import Depends, Request

from patron.auth.models import Role
from patron.auth.service import Actor, actor_from_login_session, actor_from_token
from patron.core.errors import Unauthenticated
from patron.core.web import DB

SESSION_COOKIE = "patron_session"


def current_actor(request: Request, db: DB) -> Actor:
    """A bearer API token, or the UI session cookie; 401 without either."""
    header = request.headers.get("authorization", "")
    scheme, _, credential = header.partition(" ")
    if scheme.lower() == "bearer" and credential.strip():
        return actor_from_token(db, credential.strip())
    cookie = request.cookies.get(SESSION_COOKIE)
    if cookie:
        return actor_from_login_session(db, cookie)
    raise Unauthenticated("send an API token as `Authorization: Bearer <token>`")


CurrentActor = Annotated[Actor, Depends(current_actor)]


def require(*roles: Role) -> Callable[[Actor], Awaitable[Actor]]:
    """A dependency that admits admins and ``roles``, and answers 403 to everyone else."""

    async def dependency(actor: CurrentActor) -> Actor:
        actor.require(*roles)
        return actor

    return dependency


AdminActor = Annotated[Actor, Depends(require())]
