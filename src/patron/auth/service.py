"""Users, passwords, API tokens, UI sessions and the audit trail."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from email_validator import EmailNotValidError, validate_email
from sqlalchemy import (
    ColumnElement,
    CompoundSelect,
    Select,
    SQLColumnExpression,
    and_,
    false,
    func,
    or_,
    select,
    true,
    union_all,
    update,
)
from sqlalchemy.orm import Session

from patron.auth.models import (
    ApiToken,
    AuditEntry,
    LoginSession,
    RecordShare,
    Role,
    Team,
    TeamMember,
    User,
)
from patron.core.clock import as_utc, utcnow
from patron.core.errors import Conflict, Forbidden, InvalidInput, NotFound, Unauthenticated
from patron.core.ids import hash_secret, new_secret
from patron.core.pagination import Field, ListQuery, Page, keyset_page

_hasher = PasswordHasher()
MIN_PASSWORD_LENGTH = 10


@dataclass(frozen=True)
class Actor:
    """Who is making a request: a signed-in user or an API token's owner."""

    user_id: uuid.UUID
    email: str
    role: Role

    @property
    def sees_everything(self) -> bool:
        """Admins, marketing and analysts read every person and company."""
        return self.role in (Role.admin, Role.marketing, Role.analyst)

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
    """Append an audit entry in the caller's transaction, so it commits with the change,
    and hand it to the :data:`AUDIT_LISTENERS` (in the same transaction too)."""
    entry = AuditEntry(
        actor_id=actor.user_id if actor else None,
        actor_label=actor_label(actor),
        action=action,
        record_type=record_type,
        record_id=record_id,
        before=before,
        after=after,
    )
    session.add(entry)
    for listener in AUDIT_LISTENERS:
        listener(session, entry)


# Called with every audit entry as it is added (not yet flushed), in the transaction of the
# change: domains above (workflow rules) react to CRM changes here without auth knowing them.
# The composition root (pipeline.py) registers them.
AUDIT_LISTENERS: list[Callable[[Session, AuditEntry], None]] = []

# Who "the system" is in audit entries, CRM events and created_by columns, when no user acts.
_SYSTEM_LABEL: ContextVar[str] = ContextVar("patron_system_label", default="system")


def actor_label(actor: Actor | None) -> str:
    """The name a change is recorded under: the user's email, or the system's label."""
    return actor.email if actor else _SYSTEM_LABEL.get()


@contextmanager
def acting_as_system(label: str) -> Iterator[None]:
    """Record what the system does inside the block under ``label`` (e.g. a workflow rule's
    ``workflow:<name>``) instead of plain ``system``."""
    token = _SYSTEM_LABEL.set(label)
    try:
        yield
    finally:
        _SYSTEM_LABEL.reset(token)


# --- teams -----------------------------------------------------------------------------


def create_team(session: Session, *, name: str, actor: Actor | None) -> Team:
    """Create a team of users."""
    name = name.strip()
    if not 1 <= len(name) <= 200 or "\x00" in name:
        raise InvalidInput("a team name has 1 to 200 characters, and no NUL", field="name")
    if session.scalar(select(Team.id).where(Team.name == name)) is not None:
        raise Conflict(f"a team named {name!r} exists", field="name")
    team = Team(name=name)
    session.add(team)
    session.flush()
    record_audit(
        session,
        actor=actor,
        action="create",
        record_type="team",
        record_id=str(team.id),
        after={"name": name},
    )
    return team


def get_team(session: Session, team_id: uuid.UUID) -> Team:
    team = session.get(Team, team_id)
    if team is None:
        raise NotFound(f"no team with id {team_id}", field="team_id")
    return team


def list_teams(session: Session) -> list[tuple[Team, list[uuid.UUID]]]:
    """Every team with the ids of its members."""
    members: dict[uuid.UUID, list[uuid.UUID]] = {}
    for team_id, user_id in session.execute(select(TeamMember.team_id, TeamMember.user_id)):
        members.setdefault(team_id, []).append(user_id)
    teams = session.scalars(select(Team).order_by(Team.name))
    return [(t, sorted(members.get(t.id, []), key=str)) for t in teams]


def add_member(
    session: Session, *, team_id: uuid.UUID, user_id: uuid.UUID, actor: Actor | None
) -> None:
    """Put a user in a team (doing it twice changes nothing)."""
    get_team(session, team_id)
    get_user(session, user_id)
    if session.get(TeamMember, (team_id, user_id)) is None:
        session.add(TeamMember(team_id=team_id, user_id=user_id))
        session.flush()
        record_audit(
            session,
            actor=actor,
            action="add_member",
            record_type="team",
            record_id=str(team_id),
            after={"user_id": str(user_id)},
        )


def remove_member(
    session: Session, *, team_id: uuid.UUID, user_id: uuid.UUID, actor: Actor | None
) -> None:
    member = session.get(TeamMember, (team_id, user_id))
    if member is None:
        raise NotFound("that user is not in that team", field="user_id")
    session.delete(member)
    record_audit(
        session,
        actor=actor,
        action="remove_member",
        record_type="team",
        record_id=str(team_id),
        before={"user_id": str(user_id)},
    )


def get_user(session: Session, user_id: uuid.UUID) -> User:
    user = session.get(User, user_id)
    if user is None:
        raise NotFound(f"no user with id {user_id}", field="user_id")
    return user


def teammates(actor: Actor) -> CompoundSelect[uuid.UUID]:
    """The users who share a team with ``actor``, the actor included."""
    mine = select(TeamMember.team_id).where(TeamMember.user_id == actor.user_id)
    return (
        select(TeamMember.user_id)
        .where(TeamMember.team_id.in_(mine))
        .union(select(User.id).where(User.id == actor.user_id))
    )


# --- sharing ---------------------------------------------------------------------------


def shared_with(actor: Actor, record_type: str) -> Select[uuid.UUID]:
    """Ids of the records of a type shared with ``actor`` or one of their teams."""
    teams = select(TeamMember.team_id).where(TeamMember.user_id == actor.user_id)
    return select(RecordShare.record_id).where(
        RecordShare.record_type == record_type,
        or_(RecordShare.user_id == actor.user_id, RecordShare.team_id.in_(teams)),
    )


def share_record(
    session: Session,
    *,
    record_type: str,
    record_id: uuid.UUID,
    user_id: uuid.UUID | None,
    team_id: uuid.UUID | None,
    actor: Actor | None,
) -> RecordShare:
    """Share a record with one user or one team; sharing it again returns the same share.

    The caller checks that ``actor`` may change the record."""
    if (user_id is None) == (team_id is None):
        raise InvalidInput("share with exactly one of user_id or team_id", field="user_id")
    if user_id is not None:
        get_user(session, user_id)
    if team_id is not None:
        get_team(session, team_id)
    existing = session.scalar(
        select(RecordShare).where(
            RecordShare.record_type == record_type,
            RecordShare.record_id == record_id,
            _same(RecordShare.user_id, user_id),
            _same(RecordShare.team_id, team_id),
        )
    )
    if existing is not None:
        return existing
    share = RecordShare(
        record_type=record_type,
        record_id=record_id,
        user_id=user_id,
        team_id=team_id,
        created_by=actor.email if actor else "system",
    )
    session.add(share)
    session.flush()
    record_audit(
        session,
        actor=actor,
        action="share",
        record_type=record_type,
        record_id=str(record_id),
        after={"user_id": _text(user_id), "team_id": _text(team_id)},
    )
    return share


def _same(column: Any, value: uuid.UUID | None) -> ColumnElement[bool]:
    return column.is_(None) if value is None else column == value  # type: ignore[no-any-return]


def _text(value: uuid.UUID | None) -> str | None:
    return None if value is None else str(value)


def list_shares(session: Session, *, record_type: str, record_id: uuid.UUID) -> list[RecordShare]:
    return list(
        session.scalars(
            select(RecordShare)
            .where(RecordShare.record_type == record_type, RecordShare.record_id == record_id)
            .order_by(RecordShare.id)
        )
    )


def unshare_record(
    session: Session,
    *,
    record_type: str,
    record_id: uuid.UUID,
    share_id: int,
    actor: Actor | None,
) -> None:
    share = session.get(RecordShare, share_id)
    if share is None or share.record_type != record_type or share.record_id != record_id:
        raise NotFound(f"no share {share_id} on this record", field="share_id")
    session.delete(share)
    record_audit(
        session,
        actor=actor,
        action="unshare",
        record_type=record_type,
        record_id=str(record_id),
        before={"user_id": _text(share.user_id), "team_id": _text(share.team_id)},
    )


def move_shares(
    session: Session, *, record_type: str, source: uuid.UUID, target: uuid.UUID
) -> None:
    """A merged record's shares apply to the record it was merged into."""
    session.execute(
        update(RecordShare)
        .where(RecordShare.record_type == record_type, RecordShare.record_id == source)
        .values(record_id=target)
    )


def _owned(actor: Actor, owner: SQLColumnExpression[Any]) -> ColumnElement[bool] | None:
    """What a restricted role owns: a manager their team's and the unassigned records (the
    pool a manager assigns from, and the persons identity review needs), a sales user their
    own; None for a role that owns nothing."""
    if actor.role is Role.manager:
        return or_(owner.in_(teammates(actor)), owner.is_(None))
    if actor.role is Role.sales:
        return owner == actor.user_id
    return None


def owns_alone(actor: Actor | None) -> bool:
    """Whether what ``actor`` owns is one owner's records (a sales user's): an index that
    holds the owner then serves their part exactly, where a manager's (a team, and the
    unassigned pool) needs a scan."""
    return actor is not None and actor.role is Role.sales


def owned_or_shared(
    actor: Actor,
    *,
    owner: SQLColumnExpression[Any],
    record_id: SQLColumnExpression[Any],
    record_type: str,
) -> ColumnElement[bool]:
    """The records of a restricted role: those it owns (:func:`_owned`), and for everyone
    the records shared with them or their teams."""
    shared = record_id.in_(shared_with(actor, record_type))
    # The owner is tested row by row, not looked up in its index: a query that walks its
    # own order then stops after a page, where the planner would otherwise gather every
    # record of the owner through the index, and of the shares, and sort them all
    # (SQLite's "multi-index OR"). On PostgreSQL the contact, company and deal lists page
    # by ``owned_or_shared_arms`` instead, one index-served part at a time.
    owned = _owned(actor, func.coalesce(owner, owner))
    return shared if owned is None else or_(owned, shared)


def owned_or_shared_arms(
    actor: Actor,
    *,
    owner: SQLColumnExpression[Any],
    record_id: SQLColumnExpression[Any],
    record_type: str,
    more: Sequence[Select[Any]] = (),
) -> list[ColumnElement[bool]]:
    """The records :func:`owned_or_shared` keeps (and those of ``more``), as conditions that
    exclude each other and that an index can serve, for counting: a count of each adds up
    to the count of all. The owner is tested as a plain column, which its index serves
    (where the row-by-row test of :func:`owned_or_shared` makes a rep's count read twenty
    rows for each of theirs); each later arm leaves out the rows of the earlier ones."""
    owned = _owned(actor, owner)
    parts = [record_id.in_(part) for part in (shared_with(actor, record_type), *more)]
    return exclusive_arms(parts if owned is None else [owned, *parts])


def exclusive_arms(conditions: Sequence[ColumnElement[bool]]) -> list[ColumnElement[bool]]:
    """``conditions`` made to exclude each other: each keeps the rows it matches that no
    earlier one does, so that counts of each add up to the count of their ``OR``, and each
    is still served by the index its own condition is (the exclusions only filter)."""
    arms: list[ColumnElement[bool]] = []
    for at, kept in enumerate(conditions):
        # An unknown (null) test counts as false, so that no row falls between the arms.
        arms.append(and_(kept, *(~func.coalesce(e, false()) for e in conditions[:at])))
    return arms


def owned_or_shared_ids(
    actor: Actor,
    *,
    owner: SQLColumnExpression[Any],
    record_id: SQLColumnExpression[Any],
    record_type: str,
    more: Sequence[Select[Any]] = (),
) -> Select[Any] | CompoundSelect[Any]:
    """The ids of the records :func:`owned_or_shared` keeps (and those of ``more``), as a
    union of an owner lookup and the shares: for ``IN`` conditions that need the whole set
    (an activity on a visible person, a report over every visible record). PostgreSQL
    estimates each part from its statistics and hashes the set once, where an ``OR`` of
    the owner and a subquery is guessed at half the table and rescanned per outer row."""
    parts: list[Select[Any]] = [shared_with(actor, record_type), *more]
    owned = _owned(actor, owner)
    if owned is not None:
        parts.append(select(record_id).where(owned))
    return parts[0] if len(parts) == 1 else union_all(*parts)


def sees_everything(actor: Actor | None) -> bool:
    """Whether ``actor`` reads every person, company and deal (None: the system)."""
    return actor is None or actor.sees_everything


def _no_extras(_actor: Actor) -> Sequence[Select[Any]]:
    return ()


@dataclass(frozen=True)
class OwnedRecords:
    """Who may see one kind of record that has an owner: everyone who sees everything;
    restricted roles what they own (:func:`_owned`), what is shared with them, and what
    ``extras`` adds for them (a support user: the records on their tickets).

    The rule has three forms, each for its kind of query, derived here from one
    description so that they cannot drift apart: a test per row (:meth:`condition`,
    for pages that walk their own order), a set of ids (:meth:`ids`, for ``IN`` over many
    rows) and parts that exclude each other (:meth:`count_arms`, for counting)."""

    owner: SQLColumnExpression[Any]
    record_id: SQLColumnExpression[Any]
    record_type: str
    extras: Callable[[Actor], Sequence[Select[Any]]] = _no_extras

    def condition(self, actor: Actor | None) -> ColumnElement[bool]:
        """True for the records ``actor`` may see."""
        if sees_everything(actor) or actor is None:  # (the second test tells the type checker)
            return true()
        scope = owned_or_shared(
            actor, owner=self.owner, record_id=self.record_id, record_type=self.record_type
        )
        extras = self.extras(actor)
        return or_(scope, *(self.record_id.in_(extra) for extra in extras)) if extras else scope

    def over(
        self, owner: SQLColumnExpression[Any], record_id: SQLColumnExpression[Any]
    ) -> OwnedRecords:
        """The same rule, tested on copies of the owner and the id kept in another table
        (a search document's)."""
        return replace(self, owner=owner, record_id=record_id)

    def ids(self, actor: Actor) -> Select[Any] | CompoundSelect[Any]:
        """The ids of the records ``actor`` may see (see :func:`owned_or_shared_ids`)."""
        if sees_everything(actor):
            return select(self.record_id)
        return owned_or_shared_ids(
            actor,
            owner=self.owner,
            record_id=self.record_id,
            record_type=self.record_type,
            more=self.extras(actor),
        )

    def count_arms(self, actor: Actor | None) -> list[ColumnElement[bool]]:
        """The rule in parts for counting (see :func:`owned_or_shared_arms`); empty for a
        caller who sees everything."""
        if sees_everything(actor) or actor is None:
            return []
        return owned_or_shared_arms(
            actor,
            owner=self.owner,
            record_id=self.record_id,
            record_type=self.record_type,
            more=self.extras(actor),
        )


# --- the audit log ---------------------------------------------------------------------

AUDIT_FIELDS = {
    "id": Field(AuditEntry.id, "number", int),
    "at": Field(AuditEntry.at, "datetime", datetime.fromisoformat),
    "action": Field(AuditEntry.action),
    "record_type": Field(AuditEntry.record_type),
    "record_id": Field(AuditEntry.record_id),
    "actor_id": Field(AuditEntry.actor_id, "uuid", uuid.UUID),
}


def list_audit(
    session: Session,
    *,
    viewer: Actor | None,
    query: ListQuery,
    record_type: str | None = None,
    record_id: str | None = None,
    actor_id: uuid.UUID | None = None,
) -> Page[AuditEntry]:
    """Audit entries, newest first, for one record, one actor, or everything. Admins see
    every entry; a manager the changes made by the members of their teams."""
    if record_id is not None and record_type is None:
        raise InvalidInput("record_id needs record_type", field="record_type")
    statement = select(AuditEntry)
    if viewer is not None and viewer.role is not Role.admin:
        statement = statement.where(AuditEntry.actor_id.in_(teammates(viewer)))
    if record_type is not None:
        statement = statement.where(AuditEntry.record_type == record_type)
    if record_id is not None:
        statement = statement.where(AuditEntry.record_id == record_id)
    if actor_id is not None:
        statement = statement.where(AuditEntry.actor_id == actor_id)
    return keyset_page(
        session,
        statement,
        fields=AUDIT_FIELDS,
        query=query,
        default_sort="-id",
        tiebreak=AUDIT_FIELDS["id"],
    )
