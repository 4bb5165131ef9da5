"""Identity services: look persons up, merge and unmerge them, manage rules and blocks,
and rebuild the graph from the log."""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import ColumnElement, Select, and_, delete, func, or_, select, update
from sqlalchemy.orm import Session

from patron.auth.service import Actor, record_audit
from patron.collect.models import Event, EventCatalogEntry, LogEntry, ProcessingCursor
from patron.collect.service import read_log
from patron.core.clock import utcnow
from patron.core.dialect import lock_row_for_update
from patron.core.errors import Conflict, InvalidInput, NotFound
from patron.core.pagination import Page, decode_int_cursor, encode_cursor
from patron.core.settings import Settings
from patron.identity.graph import Resolver, forget_persons, load_policy
from patron.identity.hooks import HOOKS
from patron.identity.identifiers import (
    BUILTIN_RULES,
    DEFAULT_RULE,
    KIND_PATTERN,
    Normaliser,
    extract,
)
from patron.identity.models import (
    BlockedValue,
    Identity,
    IdentityConflict,
    IdentityRule,
    MatchCandidate,
    Merge,
    Person,
    PersonEvent,
    Separation,
)

REPLAY_CHUNK = 500
DECISION_REASONS = ("manual", "match")


def hold_processing(session: Session) -> None:
    """Take the processor's turn: no batch is resolved while this transaction changes persons.

    On PostgreSQL this locks the main cursor row, which every processing step locks too; on
    SQLite the IMMEDIATE write transaction already excludes the processor.
    """
    if lock_row_for_update(session):
        session.execute(
            select(ProcessingCursor.name).where(ProcessingCursor.name == "main").with_for_update()
        )


# --- finding persons -------------------------------------------------------------------


def live_person(session: Session, person_id: uuid.UUID) -> Person:
    """The person with this id, following merges to the survivor; 404 if there is none."""
    person = session.get(Person, person_id)
    for _ in range(64):  # merges keep chains flat; the bound only guards against a cycle
        if person is None:
            break
        if person.merged_into is None:
            return person
        person = session.get(Person, person.merged_into)
    raise NotFound(f"no person with id {person_id}", field="person_id")


def find_by_identifier(session: Session, *, kind: str, value: str, settings: Settings) -> Person:
    """The person an identifier resolves to, after the same normalisation as ingestion."""
    normal = Normaliser(settings.phone_region, settings.email_provider_rules).normalise(kind, value)
    if normal is None:
        raise InvalidInput(f"{value!r} is not a valid {kind}", field=kind)
    person_id = session.scalar(
        select(Identity.person_id).where(Identity.kind == kind, Identity.value == normal)
    )
    if person_id is None:
        raise NotFound(f"no person has {kind} {normal!r}", field=kind)
    return live_person(session, person_id)


def identities_of(session: Session, person_id: uuid.UUID) -> list[Identity]:
    return list(
        session.scalars(
            select(Identity).where(Identity.person_id == person_id).order_by(Identity.id)
        )
    )


def merged_ids(session: Session, person_id: uuid.UUID) -> list[uuid.UUID]:
    """The persons merged into this one (their ids still find it)."""
    return list(session.scalars(select(Person.id).where(Person.merged_into == person_id)))


def merge_history(
    session: Session, person_id: uuid.UUID, merged: list[uuid.UUID] | None = None
) -> list[Merge]:
    """Every merge this person took part in, undone ones included, newest first;
    ``merged``: the persons merged into it, when the caller has them already."""
    ids = [person_id, *(merged_ids(session, person_id) if merged is None else merged)]
    return list(
        session.scalars(
            select(Merge)
            .where(or_(Merge.survivor_id.in_(ids), Merge.merged_id.in_(ids)))
            .order_by(Merge.id.desc())
        )
    )


def list_persons(
    session: Session, *, limit: int, cursor: str | None, where: ColumnElement[bool] | None = None
) -> Page[Person]:
    """Live persons (those ``where`` admits), the most recently created first."""
    base = select(Person).where(Person.merged_into.is_(None))
    if where is not None:
        base = base.where(where)
    total = session.scalar(select(func.count()).select_from(base.subquery())) or 0
    after = decode_int_cursor(cursor)
    statement = base.order_by(Person.created_seq.desc()).limit(limit + 1)
    if after is not None:
        statement = statement.where(Person.created_seq < after)
    rows = list(session.scalars(statement))
    more = len(rows) > limit
    rows = rows[:limit]
    return Page(rows, total, encode_cursor([rows[-1].created_seq]) if more and rows else None)


# --- merging and unmerging -------------------------------------------------------------


def merge_persons(
    session: Session,
    *,
    first: uuid.UUID,
    second: uuid.UUID,
    settings: Settings,
    actor: Actor | None,
    reason: str = "manual",
    evidence: dict[str, object] | None = None,
) -> Merge:
    """Merge two persons by decision (a person's, or the matcher's); the older survives."""
    hold_processing(session)
    a, b = live_person(session, first), live_person(session, second)
    if a.id == b.id:
        raise Conflict("these are already the same person", field="other_id")
    survivor, merged = sorted((a, b), key=lambda p: (p.created_seq, str(p.id)))
    resolver = Resolver(session, load_policy(session, settings))
    record = resolver.merge(
        survivor,
        merged,
        reason=reason,
        seq=None,
        evidence=dict(evidence or {}),
        actor=actor.email if actor else None,
    )
    resolver.write()
    # A person overruling an earlier unmerge of these two lifts that separation.
    for separation in _separations_between(session, record):
        session.delete(separation)
    session.flush()
    record_audit(
        session,
        actor=actor,
        action="merge",
        record_type="person",
        record_id=str(survivor.id),
        after={"merged": str(merged.id), "reason": reason, "merge_id": record.id},
    )
    return record


def _separations_between(session: Session, merge: Merge) -> list[Separation]:
    left, right = set(merge.survivor_identities), set(merge.merged_identities)
    return [
        s
        for s in session.scalars(select(Separation))
        if (set(s.left) & left and set(s.right) & right)
        or (set(s.left) & right and set(s.right) & left)
    ]


def get_merge(session: Session, merge_id: int) -> Merge:
    found = session.get(Merge, merge_id)
    if found is None:
        raise NotFound(f"no merge with id {merge_id}", field="merge_id")
    return found


def unmerge(
    session: Session,
    *,
    merge_id: int,
    settings: Settings,
    actor: Actor | None,
    block: Sequence[str] = (),
) -> Merge:
    """Undo a merge exactly: both persons come back as if it had never happened.

    The two sides are kept apart from now on (a separation), and ``block`` may name
    identifiers of the merge's evidence (``kind:value``) to block for good.
    """
    hold_processing(session)
    merge = get_merge(session, merge_id)
    if merge.undone_at is not None:
        raise Conflict(f"merge {merge_id} was already undone", field="merge_id")
    evidence = set(map(str, merge.evidence.get("identifiers", [])))
    evidence |= set(map(str, merge.merged_identities)) | set(map(str, merge.survivor_identities))
    for key in block:
        if key not in evidence:
            raise InvalidInput(
                f"{key!r} is not one of the identifiers of this merge", field="block"
            )
    root = live_person(session, merge.survivor_id)
    merge.undone_at = utcnow()
    merge.undone_by = actor.email if actor else "system"
    session.add(
        Separation(
            merge_id=merge.id,
            left=list(merge.survivor_identities),
            right=list(merge.merged_identities),
            created_by=merge.undone_by,
        )
    )
    for key in block:
        kind, _, value = key.partition(":")
        session.add(
            BlockedValue(
                kind=kind, pattern=value, origin="unmerge", reason=f"blocked by unmerge {merge_id}"
            )
        )
    session.flush()
    reresolve(session, root.id, settings)
    record_audit(
        session,
        actor=actor,
        action="unmerge",
        record_type="person",
        record_id=str(merge.survivor_id),
        before={"merged": str(merge.merged_id), "merge_id": merge.id},
        after={"blocked": list(block)},
    )
    return merge


def reresolve(session: Session, root_id: uuid.UUID, settings: Settings) -> list[uuid.UUID]:
    """Derive one person (and everyone merged into it) again from its events.

    Used by unmerge and by blocking a value a person holds: what the person owned is
    forgotten, its events are replayed in log order through the live resolver under the
    rules in force now, and the merges people decided are applied again. Returns the
    live persons that came out.
    """
    cluster = [root_id, *merged_ids(session, root_id)]
    replayed = select(PersonEvent.seq).where(PersonEvent.person_id == root_id)
    events = read_log(session, Event.seq.in_(replayed), limit=None)
    decisions = _decisions_among(session, cluster)
    HOOKS.on_reset(session, cluster)
    forget_persons(session, cluster)
    session.execute(
        update(Person).where(Person.id.in_(cluster)).values(merged_into=root_id, traits={})
    )
    _replay(session, events, settings)
    _reapply(session, decisions, settings)
    return _settle(session, cluster)


def _decisions_among(session: Session, cluster: Sequence[uuid.UUID]) -> list[Merge]:
    return list(
        session.scalars(
            select(Merge)
            .where(
                Merge.reason.in_(DECISION_REASONS),
                Merge.undone_at.is_(None),
                or_(Merge.survivor_id.in_(cluster), Merge.merged_id.in_(cluster)),
            )
            .order_by(Merge.id)
        )
    )


def _replay(session: Session, events: Sequence[LogEntry], settings: Settings) -> None:
    if HOOKS.replay is None:
        raise RuntimeError("identity replay needs patron.pipeline to be imported")
    for start in range(0, len(events), REPLAY_CHUNK):
        HOOKS.replay(session, events[start : start + REPLAY_CHUNK], settings)


def _reapply(session: Session, decisions: Sequence[Merge], settings: Settings) -> None:
    """Apply again the merges people (or the matcher) decided, over the replayed persons."""
    for decision in decisions:
        try:
            a = live_person(session, decision.survivor_id)
            b = live_person(session, decision.merged_id)
        except NotFound:
            continue
        if a.id == b.id:
            continue
        survivor, merged = sorted((a, b), key=lambda p: (p.created_seq, str(p.id)))
        resolver = Resolver(session, load_policy(session, settings))
        again = resolver.merge(
            survivor, merged, reason=decision.reason, seq=None, evidence=dict(decision.evidence)
        )
        resolver.write()
        # The merge just made records the same decision again; what pointed at the old
        # record (the matcher's review queue) follows it.
        session.execute(
            update(MatchCandidate)
            .where(MatchCandidate.merge_id == decision.id)
            .values(merge_id=again.id)
        )
        session.delete(decision)
    session.flush()


def _settle(session: Session, cluster: Sequence[uuid.UUID]) -> list[uuid.UUID]:
    """Persons of the old cluster that no message recreated point at whoever owns their
    first event now."""
    session.flush()
    survivors: list[uuid.UUID] = []
    for person in session.scalars(select(Person).where(Person.id.in_(list(cluster)))):
        if person.merged_into is None:
            survivors.append(person.id)
            continue
        owner = session.scalar(
            select(PersonEvent.person_id).where(PersonEvent.seq == person.created_seq)
        )
        person.merged_into = owner if owner != person.id else None
    session.flush()
    return survivors


# --- rules and blocked values ----------------------------------------------------------


@dataclass(frozen=True)
class RuleView:
    kind: str
    max_per_person: int | None
    priority: int
    trait: str | None
    builtin: bool


def list_rules(session: Session) -> list[RuleView]:
    """Every identifier kind with its limit and priority: the built-in ones and the declared."""
    stored = {r.kind: r for r in session.scalars(select(IdentityRule))}
    views = []
    for kind in sorted(set(BUILTIN_RULES) | set(stored), key=str):
        limit, priority = BUILTIN_RULES.get(kind, DEFAULT_RULE)
        row = stored.get(kind)
        if row is not None:
            limit, priority = row.max_per_person, row.priority
        views.append(
            RuleView(kind, limit, priority, row.trait if row else None, kind in BUILTIN_RULES)
        )
    return sorted(views, key=lambda v: (v.priority, v.kind))


def set_rule(
    session: Session,
    *,
    kind: str,
    max_per_person: int | None,
    priority: int,
    trait: str | None,
    actor: Actor | None,
) -> RuleView:
    """Declare an identifier kind, or change the limit and priority of one."""
    if not KIND_PATTERN.match(kind):
        raise InvalidInput(
            "a kind is 1-60 lower-case letters, digits and underscores, starting with a letter",
            field="kind",
        )
    if max_per_person is not None and max_per_person < 1:
        raise InvalidInput(
            "max_per_person must be at least 1 (or null: unlimited)", field="max_per_person"
        )
    if kind in BUILTIN_RULES and trait is not None and kind in ("user_id", "anonymous_id"):
        raise InvalidInput(f"{kind} comes from the message itself, not a trait", field="trait")
    row = session.get(IdentityRule, kind)
    before = None
    if row is None:
        row = IdentityRule(kind=kind, builtin=kind in BUILTIN_RULES)
        session.add(row)
    else:
        before = {"max_per_person": row.max_per_person, "priority": row.priority}
    row.max_per_person, row.priority, row.trait = max_per_person, priority, trait
    row.updated_at = utcnow()
    session.flush()
    record_audit(
        session,
        actor=actor,
        action="update" if before else "create",
        record_type="identity_rule",
        record_id=kind,
        before=before,
        after={"max_per_person": max_per_person, "priority": priority, "trait": trait},
    )
    return next(v for v in list_rules(session) if v.kind == kind)


def list_blocked(session: Session, *, status: str | None = None) -> list[BlockedValue]:
    statement: Select[BlockedValue] = select(BlockedValue).order_by(BlockedValue.id.desc())
    if status is not None:
        statement = statement.where(BlockedValue.status == status)
    return list(session.scalars(statement))


def block_value(
    session: Session,
    *,
    pattern: str,
    kind: str | None,
    is_regex: bool,
    reason: str,
    settings: Settings,
    actor: Actor | None,
) -> BlockedValue:
    """Block a value (or a pattern) from linking; persons it already joined are split."""
    pattern = pattern.strip()
    if not pattern or len(pattern) > 320:
        raise InvalidInput("a blocked value needs 1 to 320 characters", field="pattern")
    if is_regex:
        try:
            re.compile(pattern)
        except re.error as exc:
            raise InvalidInput(f"not a valid regular expression: {exc}", field="pattern") from exc
    hold_processing(session)
    row = BlockedValue(
        kind=kind,
        pattern=pattern,
        is_regex=is_regex,
        reason=reason,
        created_by=actor.email if actor else "system",
    )
    session.add(row)
    session.flush()
    for person in _holders(session, row):
        reresolve(session, person, settings)
    record_audit(
        session,
        actor=actor,
        action="create",
        record_type="blocked_value",
        record_id=str(row.id),
        after={"pattern": pattern, "kind": kind, "is_regex": is_regex},
    )
    return row


def _holders(session: Session, row: BlockedValue) -> list[uuid.UUID]:
    """Live persons holding an identity the new block covers and that came from a merge."""
    statement = select(Identity.kind, Identity.value, Identity.person_id)
    if row.kind is not None:
        statement = statement.where(Identity.kind == row.kind)
    if not row.is_regex:
        statement = statement.where(func.lower(Identity.value) == row.pattern.lower())
    pattern = re.compile(row.pattern, re.IGNORECASE) if row.is_regex else None
    persons = {
        person
        for kind, value, person in session.execute(statement)
        if pattern is None or pattern.search(value)
    }
    with_merges = set(
        session.scalars(select(Merge.survivor_id).where(Merge.survivor_id.in_(persons)))
    )
    return sorted(persons & with_merges, key=str)


def release_blocked(session: Session, *, blocked_id: int, actor: Actor | None) -> None:
    """Remove a blocked value (a super-node held for review, or an admin's entry)."""
    row = session.get(BlockedValue, blocked_id)
    if row is None:
        raise NotFound(f"no blocked value with id {blocked_id}", field="blocked_id")
    session.delete(row)
    record_audit(
        session,
        actor=actor,
        action="delete",
        record_type="blocked_value",
        record_id=str(blocked_id),
        before={"pattern": row.pattern, "kind": row.kind},
    )


def confirm_blocked(session: Session, *, blocked_id: int, actor: Actor | None) -> BlockedValue:
    """Keep a value the super-node guard blocked (it leaves the review list)."""
    row = session.get(BlockedValue, blocked_id)
    if row is None:
        raise NotFound(f"no blocked value with id {blocked_id}", field="blocked_id")
    row.status = "active"
    record_audit(
        session,
        actor=actor,
        action="update",
        record_type="blocked_value",
        record_id=str(blocked_id),
        after={"status": "active"},
    )
    return row


def list_conflicts(
    session: Session, *, person_id: uuid.UUID | None, limit: int, cursor: str | None
) -> Page[IdentityConflict]:
    base = select(IdentityConflict)
    if person_id is not None:
        base = base.where(IdentityConflict.person_id == person_id)
    total = session.scalar(select(func.count()).select_from(base.subquery())) or 0
    after = decode_int_cursor(cursor)
    statement = base.order_by(IdentityConflict.id.desc()).limit(limit + 1)
    if after is not None:
        statement = statement.where(IdentityConflict.id < after)
    rows = list(session.scalars(statement))
    more = len(rows) > limit
    rows = rows[:limit]
    return Page(rows, total, encode_cursor([rows[-1].id]) if more and rows else None)


# --- rebuilding ------------------------------------------------------------------------


def reset_derived(session: Session) -> None:
    """Forget every person and everything derived from the log, keeping human decisions.

    Kept: identity rules, blocked values, separations (unmerges), merges people or the
    matcher decided, and undone merges (history). The processor then derives the rest
    again from position 0.
    """
    persons = list(session.scalars(select(Person.id)))
    HOOKS.on_reset(session, persons)
    session.execute(delete(PersonEvent))
    session.execute(delete(Identity))
    session.execute(delete(IdentityConflict))
    session.execute(
        delete(Merge).where(Merge.reason.in_(("message", "alias")), Merge.undone_at.is_(None))
    )
    session.execute(update(Person).values(merged_into=None, traits={}, computed={}))
    # The catalog is counted by the same processor, so it is counted again from zero.
    session.execute(delete(EventCatalogEntry))
    session.execute(update(ProcessingCursor).values(position=0))


def reapply_decisions(session: Session, settings: Settings) -> int:
    """After a rebuild drained the log: apply the decided merges again, oldest first."""
    decisions = list(
        session.scalars(
            select(Merge)
            .where(Merge.reason.in_(DECISION_REASONS), Merge.undone_at.is_(None))
            .order_by(Merge.id)
        )
    )
    _reapply(session, decisions, settings)
    return len(decisions)


def remove_orphans(session: Session) -> int:
    """Persons that own no event after a rebuild and were not merged anywhere are dropped."""
    owned = select(PersonEvent.person_id).distinct()
    orphans = list(
        session.scalars(
            select(Person.id).where(Person.id.not_in(owned), Person.merged_into.is_(None))
        )
    )
    if orphans:
        HOOKS.on_reset(session, orphans)
        session.execute(delete(Person).where(Person.id.in_(orphans)))
    return len(orphans)


def import_classifier(
    session: Session, settings: Settings
) -> Callable[[uuid.UUID, dict[str, Any]], str]:
    """For people dry runs: what storing a message would do, without storing it.

    "unchanged" when the source already sent it (the log keeps it once), "update" when one of
    its identifiers already belongs to a person, "create" otherwise. The classifier
    remembers the rows it has seen, so a file naming the same new person twice counts one
    creation and one update, and a repeated message id is unchanged, as the import would."""
    policy = load_policy(session, settings)
    # What the earlier rows of this run would have stored.
    seen_messages: set[tuple[uuid.UUID, str]] = set()
    seen_identifiers: set[tuple[str, str]] = set()

    def classify(source_id: uuid.UUID, message: dict[str, Any]) -> str:
        key = (source_id, str(message["messageId"]))
        stored = key in seen_messages or session.scalar(
            select(Event.seq)
            .where(Event.source_id == source_id, Event.message_id == message["messageId"])
            .limit(1)
        )
        if stored:
            return "unchanged"
        seen_messages.add(key)
        found = extract(
            message["type"],
            message,
            rules=policy.rules,
            normaliser=policy.normaliser,
            blocked=policy.blocked,
        )
        if not found:
            return "create"
        pairs = {(i.kind, i.value) for i in found}
        earlier = not seen_identifiers.isdisjoint(pairs)
        seen_identifiers.update(pairs)
        if earlier:
            return "update"
        known = session.scalar(
            select(Identity.id)
            .where(or_(*(and_(Identity.kind == i.kind, Identity.value == i.value) for i in found)))
            .limit(1)
        )
        return "create" if known is None else "update"

    return classify
