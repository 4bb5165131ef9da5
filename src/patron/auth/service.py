"""Users, passwords, API tokens, UI sessions and the audit trail."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from email_validator import EmailNotValidError, validate_email
from sqlalchemy import select
from sqlalchemy.orm import Session

from patron.auth.models import ApiToken, AuditEntry, LoginSession, Role, User
from patron.core.clock import as_utc, utcnow
from patron.core.errors import Conflict, Forbidden, InvalidInput, NotFound, Unauthenticated
from patron.core.ids import hash_secret, new_secret

_hasher = PasswordHasher()
MIN_PASSWORD_LENGTH = 10


@dataclass(frozen=True)
class Actor:
    """Who is making a request: a signed-in user or an API token's owner."""

    user_id: uuid.UUID
    email: str
    role: Role

    def require(self, *roles: Role) -> None:
        """Raise 403 unless the actor is an admin or holds one of ``roles``."""
        if self.role is not Role.admin and self.role not in roles:
            allowed = ", ".join(sorted({"admin", *roles}))
            raise Forbidden(f"this needs one of the roles: {allowed}; you are {self.role}")


def normalise_email(email: str) -> str:
    try:
        return validate_email(email.strip(), check_deliverability=False).normalized.lower()
    except EmailNotValidError as exc:
        raise InvalidInput(f"not a valid email address: {exc}", field="email") from exc


def parse_role(role: str) -> Role:
    try:
        return Role(role)
    except ValueError as exc:
        names = ", ".join(r.value for r in Role)
        raise InvalidInput(f"unknown role {role!r}; roles are {names}", field="role") from exc


def create_user(
    session: Session, *, email: str, role: str, password: str | None = None, name: str = ""
) -> User:
    """Create a user; without a password the user can use API tokens but not sign in."""
    email = normalise_email(email)
    parsed_role = parse_role(role)
    if session.scalar(select(User.id).where(User.email == email)) is not None:
        raise Conflict(f"a user with email {email} already exists", field="email")
    user = User(email=email, role=parsed_role.value, name=name)
    if password is not None:
        user.password_hash = hash_password(password)
    session.add(user)
    session.flush()
    return user


def hash_password(password: str) -> str:
    if len(password) < MIN_PASSWORD_LENGTH:
        raise InvalidInput(
            f"the password must have at least {MIN_PASSWORD_LENGTH} characters", field="password"
        )
    return _hasher.hash(password)


def get_user_by_email(session: Session, email: str) -> User:
    user = session.scalar(select(User).where(User.email == normalise_email(email)))
    if user is None:
        raise NotFound(f"no user with email {email}", field="email")
    return user


def authenticate(session: Session, *, email: str, password: str) -> User:
    """Check a password; the same error for an unknown email and a wrong password."""
    failure = Unauthenticated("wrong email or password")
    try:
        email = normalise_email(email)
    except InvalidInput:
        raise failure from None
    user = session.scalar(select(User).where(User.email == email, User.active.is_(True)))
    if user is None or user.password_hash is None:
        _hasher.hash("equalise timing")
        raise failure
    try:
        _hasher.verify(user.password_hash, password)
    except (VerificationError, InvalidHashError):
        raise failure from None
    if _hasher.check_needs_rehash(user.password_hash):
        user.password_hash = _hasher.hash(password)
    return user


def create_token(session: Session, *, user: User, name: str = "") -> tuple[ApiToken, str]:
    """Create an API token; the secret is returned once and only its hash is kept."""
    secret = new_secret("pt")
    token = ApiToken(user_id=user.id, name=name, token_hash=hash_secret(secret), prefix=secret[:8])
    session.add(token)
    session.flush()
    return token, secret


def actor_from_token(session: Session, secret: str) -> Actor:
    row = session.execute(
        select(ApiToken, User)
        .join(User, User.id == ApiToken.user_id)
        .where(ApiToken.token_hash == hash_secret(secret))
    ).first()
    if row is None:
        raise Unauthenticated("unknown API token")
    token, user = row
    if token.revoked_at is not None or not user.active:
        raise Unauthenticated("this API token has been revoked")
    return Actor(user_id=user.id, email=user.email, role=Role(user.role))


def revoke_token(session: Session, *, token_id: uuid.UUID) -> None:
    token = session.get(ApiToken, token_id)
    if token is None:
        raise NotFound("no such API token")
    token.revoked_at = utcnow()


def create_login_session(session: Session, *, user: User, days: int) -> str:
    """Start a UI session; returns the cookie value."""
    secret = new_secret("ps")
    session.add(
        LoginSession(
            id_hash=hash_secret(secret), user_id=user.id, expires_at=utcnow() + timedelta(days=days)
        )
    )
    return secret


def actor_from_login_session(session: Session, secret: str) -> Actor:
    row = session.execute(
        select(LoginSession, User)
        .join(User, User.id == LoginSession.user_id)
        .where(LoginSession.id_hash == hash_secret(secret))
    ).first()
    if row is None:
        raise Unauthenticated("not signed in")
    login, user = row
    if as_utc(login.expires_at) < utcnow() or not user.active:
        raise Unauthenticated("the session has expired; sign in again")
    return Actor(user_id=user.id, email=user.email, role=Role(user.role))


def end_login_session(session: Session, secret: str) -> None:
    login = session.get(LoginSession, hash_secret(secret))
    if login is not None:
        session.delete(login)


def record_audit(
    session: Session,
    *,
    actor: Actor | None,
    action: str,
    record_type: str,
    record_id: str,
    before: dict[str, Any] | None = None,
    after: dict[str, Any] | None = None,
) -> None:
    """Append an audit entry in the caller's transaction, so it commits with the change."""
    session.add(
        AuditEntry(
            actor_id=actor.user_id if actor else None,
            actor_label=actor.email if actor else "system",
            action=action,
            record_type=record_type,
            record_id=record_id,
            before=before,
            after=after,
        )
    )
