"""Record linkage over persons: the matching engine wired to the identity graph.

A run reads the live persons who carry something to compare (a name, a birth date, an
address), scores pairs with ``identity.matching`` and then, per pair:

- at or above ``PATRON_MATCH_AUTO_MERGE``: merges them (reason ``match``, the per-field
  evidence kept on the merge, undoable like any merge), unless that would break an
  identity rule's limit (two different user ids: two accounts), which only a person may
  decide, so the pair is queued instead;
- at or above ``PATRON_MATCH_REVIEW``: queues the pair for a person to accept or reject;
- a pair decided before (merged, accepted or rejected, by persons that have since merged
  with others too) is never proposed again.

An *incremental* run compares only the persons created or whose traits changed since the
previous run's high-water mark (against everyone); a *full* run compares everyone with
everyone. The engine trains its model on the records of each run, so nothing has to be
stored or kept in step with the base.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from datetime import date, datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from patron.auth.service import Actor, record_audit
from patron.core.clock import utcnow
from patron.core.errors import Conflict, InvalidInput, NotFound
from patron.core.pagination import Page, decode_int_cursor, encode_cursor
from patron.core.settings import Settings
from patron.identity import matching
from patron.identity.graph import Policy, load_policy
from patron.identity.models import (
    Identity,
    MatchCandidate,
    MatchRun,
    Merge,
    Person,
    Separation,
)
from patron.identity.service import hold_processing, live_person, merge_persons
from patron.profiles.models import TraitValue

# Traits the matcher reads, in Segment's spec spelling and the common snake_case one.
FIRST_NAME = ("firstName", "first_name", "firstname")
LAST_NAME = ("lastName", "last_name", "lastname", "surname")
FULL_NAME = ("name",)
BIRTHDAY = ("birthday", "birthDate", "birth_date", "dateOfBirth", "date_of_birth")
ADDRESS = ("address",)
STREET = ("street", "streetAddress", "street_address", "address1", "line1")
CITY = ("city",)
POSTCODE = ("postalCode", "postal_code", "postcode", "zip", "zipCode", "zip_code")
COUNTRY = ("country",)
MATCH_TRAITS: tuple[str, ...] = (
    *FIRST_NAME,
    *LAST_NAME,
    *FULL_NAME,
    *BIRTHDAY,
    *ADDRESS,
    *STREET,
    *CITY,
    *POSTCODE,
    *COUNTRY,
)

DECIDED = ("merged", "accepted", "rejected")
STATUSES = ("pending", *DECIDED)


@dataclass(frozen=True)
class Scoring:
    """What the engine found, before anything is written."""

    mode: str
    high_water: int
    compared: int
    pairs: list[matching.CandidatePair]


@dataclass(frozen=True)
class RunSummary:
    run: MatchRun
    merges: list[int]


def run_matching(
    readers: sessionmaker[Session],
    writers: sessionmaker[Session],
    *,
    settings: Settings,
    actor: Actor | None,
    full: bool = False,
) -> RunSummary:
    """Find likely duplicate persons; merge the near-certain, queue the likely.

    Scoring (seconds on a large base) runs in a read transaction, so ingestion and
    processing go on meanwhile; only the decisions take the write lock.
    """
    with readers() as session, session.begin():
        scoring = score_persons(session, settings=settings, full=full)
    with writers() as session, session.begin():
        summary = apply_scoring(session, scoring, settings=settings, actor=actor)
        session.expunge(summary.run)
        return summary


def score_persons(session: Session, *, settings: Settings, full: bool) -> Scoring:
    """Score the persons created or changed since the last run (``full``: everyone)."""
    previous = session.scalar(
        select(MatchRun.high_water)
        .where(MatchRun.finished_at.is_not(None))
        .order_by(MatchRun.id.desc())
        .limit(1)
    )
    since = 0 if full or previous is None else previous
    high_water = _high_water(session)
    records = person_records(session)
    changed = _changed_since(session, since) if since else set(records)
    new = [r for pid, r in records.items() if pid in changed]
    existing = [r for pid, r in records.items() if pid not in changed]
    pairs: list[matching.CandidatePair] = []
    threshold = min(settings.match_review, settings.match_auto_merge)
    if new and existing:
        pairs = matching.match_new(new, existing, threshold=threshold)
    elif new:
        pairs = matching.find_duplicates(new, threshold=threshold)
    return Scoring("incremental" if since else "full", high_water, len(new), pairs)


def apply_scoring(
    session: Session, scoring: Scoring, *, settings: Settings, actor: Actor | None
) -> RunSummary:
    """Merge, queue or skip each scored pair, and record the run."""
    hold_processing(session)
    run = MatchRun(
        mode=scoring.mode,
        high_water=scoring.high_water,
        compared=scoring.compared,
        pairs=len(scoring.pairs),
    )
    session.add(run)
    session.flush()
    decided = _decided_pairs(session)
    separations = _separations(session)
    policy = load_policy(session, settings)
    merges: list[int] = []
    # The surest pairs first, so a chain of merges follows the strongest evidence.
    for pair in sorted(scoring.pairs, key=lambda p: -p.match_probability):
        live = _live_pair(session, uuid.UUID(pair.left_id), uuid.UUID(pair.right_id))
        if live is None or live in decided:
            continue
        held_a, held_b = _identities(session, live)
        if _kept_apart(held_a, held_b, separations):
            continue
        candidate = _candidate(session, run, pair)
        automatic = not _breaks_limits(held_a, held_b, policy)
        if automatic and pair.match_probability >= settings.match_auto_merge:
            merge = merge_persons(
                session,
                first=live[0],
                second=live[1],
                settings=settings,
                actor=None,
                reason="match",
                evidence=_merge_evidence(candidate),
            )
            candidate.status, candidate.merge_id = "merged", merge.id
            candidate.decided_at = utcnow()
            merges.append(merge.id)
            run.merged += 1
        else:
            run.queued += 1
        decided.add(live)
    run.finished_at = utcnow()
    session.flush()
    record_audit(
        session,
        actor=actor,
        action="match_run",
        record_type="match_run",
        record_id=str(run.id),
        after={
            "mode": run.mode,
            "compared": run.compared,
            "merged": run.merged,
            "queued": run.queued,
        },
    )
    return RunSummary(run, merges)


def needs_run(session: Session) -> bool:
    """True when persons were created or changed since the last finished run."""
    previous = session.scalar(
        select(MatchRun.high_water)
        .where(MatchRun.finished_at.is_not(None))
        .order_by(MatchRun.id.desc())
        .limit(1)
    )
    return _high_water(session) > (previous or 0)


# --- the review queue ------------------------------------------------------------------


def list_candidates(
    session: Session, *, status: str | None, limit: int, cursor: str | None
) -> Page[MatchCandidate]:
    """Pairs the matcher found, the newest first; ``status`` narrows (default: every one)."""
    if status is not None and status not in STATUSES:
        raise InvalidInput(f"status must be one of {', '.join(STATUSES)}", field="status")
    base = select(MatchCandidate)
    if status is not None:
        base = base.where(MatchCandidate.status == status)
    total = session.scalar(select(func.count()).select_from(base.subquery())) or 0
    statement = base.order_by(MatchCandidate.id.desc()).limit(limit + 1)
    after = decode_int_cursor(cursor)
    if after is not None:
        statement = statement.where(MatchCandidate.id < after)
    rows = list(session.scalars(statement))
    more = len(rows) > limit
    rows = rows[:limit]
    return Page(rows, total, encode_cursor([rows[-1].id]) if more and rows else None)


def get_candidate(session: Session, candidate_id: int) -> MatchCandidate:
    found = session.get(MatchCandidate, candidate_id)
    if found is None:
        raise NotFound(f"no match candidate with id {candidate_id}", field="candidate_id")
    return found


def accept_candidate(
    session: Session, *, candidate_id: int, settings: Settings, actor: Actor | None
) -> tuple[MatchCandidate, Merge]:
    """A person confirms the pair: the two are merged (reason ``match``)."""
    hold_processing(session)
    candidate = _pending(session, candidate_id)
    left, right = live_person(session, candidate.left_id), live_person(session, candidate.right_id)
    if left.id == right.id:
        raise Conflict("these two are already the same person", field="candidate_id")
    merge = merge_persons(
        session,
        first=left.id,
        second=right.id,
        settings=settings,
        actor=actor,
        reason="match",
        evidence=_merge_evidence(candidate),
    )
    candidate.status, candidate.merge_id, candidate.decided_at = "accepted", merge.id, utcnow()
    session.flush()
    return candidate, merge


def reject_candidate(session: Session, *, candidate_id: int, actor: Actor | None) -> MatchCandidate:
    """A person says the pair are different people: never proposed again."""
    candidate = _pending(session, candidate_id)
    candidate.status, candidate.decided_at = "rejected", utcnow()
    session.flush()
    record_audit(
        session,
        actor=actor,
        action="reject_match",
        record_type="person",
        record_id=str(candidate.left_id),
        after={"candidate_id": candidate.id, "other": str(candidate.right_id)},
    )
    return candidate


def _pending(session: Session, candidate_id: int) -> MatchCandidate:
    candidate = get_candidate(session, candidate_id)
    if candidate.status != "pending":
        raise Conflict(
            f"match candidate {candidate_id} was already {candidate.status}", field="candidate_id"
        )
    return candidate


# --- persons as the matcher sees them --------------------------------------------------


def person_records(session: Session) -> dict[uuid.UUID, matching.MatchRecord]:
    """Every live person with a name, birth date or address, as a ``MatchRecord``.

    Emails and phones come from the person's identities (already normalised, and only
    the valid ones); everything else from the visible traits.
    """
    first_contact: dict[tuple[uuid.UUID, str], str] = {}
    contacts = (
        select(Identity.person_id, Identity.kind, Identity.value)
        .where(Identity.kind.in_(("email", "phone")))
        .order_by(Identity.id)
    )
    for person_id, kind, value in session.execute(contacts):
        first_contact.setdefault((person_id, kind), value)
    records: dict[uuid.UUID, matching.MatchRecord] = {}
    persons = select(Person.id, Person.traits).where(Person.merged_into.is_(None))
    for person_id, traits in session.execute(persons):
        record = record_of(
            str(person_id),
            traits or {},
            email=first_contact.get((person_id, "email")),
            phone=first_contact.get((person_id, "phone")),
        )
        if record is not None:
            records[person_id] = record
    return records


def record_of(
    person_id: str, traits: Mapping[str, Any], *, email: str | None, phone: str | None
) -> matching.MatchRecord | None:
    """The comparable fields of one person, or None when there is nothing but contacts
    (persons alike only in email or phone are already linked by the identity graph)."""
    first, last = _text(traits, FIRST_NAME), _text(traits, LAST_NAME)
    if first is None and last is None and (full := _text(traits, FULL_NAME)):
        first, _, last_part = full.rpartition(" ")
        first, last = (first or None), (last_part or None)
        if first is None:  # one word: a surname is likelier to be the whole name
            first, last = last, None
    address = traits.get("address")
    place: Mapping[str, Any] = address if isinstance(address, Mapping) else traits
    street = _text(place, STREET) or (address if isinstance(address, str) else None)
    fields = {
        "first_name": first,
        "last_name": last,
        "birth_date": _birth_date(traits),
        "street": street,
        "city": _text(place, CITY),
        "postcode": _text(place, POSTCODE),
        "country": _text(place, COUNTRY),
    }
    if not any(fields.values()):
        return None
    return matching.MatchRecord(person_id=person_id, email=email, phone=phone, **fields)


def _text(traits: Mapping[str, Any], names: Iterable[str]) -> str | None:
    for name in names:
        value = traits.get(name)
        if isinstance(value, (str, int)) and not isinstance(value, bool):
            text = str(value).strip()
            if text:
                return text[:200]
    return None


def _birth_date(traits: Mapping[str, Any]) -> str | None:
    raw = _text(traits, BIRTHDAY)
    if raw is None:
        return None
    try:
        return date.fromisoformat(raw[:10]).isoformat()
    except ValueError:
        try:
            return datetime.fromisoformat(raw).date().isoformat()
        except ValueError:
            return None  # not a date we can read: compared as missing


# --- bookkeeping -----------------------------------------------------------------------


def _high_water(session: Session) -> int:
    created = session.scalar(select(func.max(Person.created_seq))) or 0
    changed = session.scalar(select(func.max(TraitValue.last_seq))) or 0
    return max(created, changed)


def _changed_since(session: Session, since: int) -> set[uuid.UUID]:
    created = select(Person.id).where(Person.created_seq > since)
    touched = select(TraitValue.person_id).where(
        TraitValue.last_seq > since, TraitValue.name.in_(MATCH_TRAITS)
    )
    ids = set(session.scalars(created)) | set(session.scalars(touched))
    return _live_ids(session, ids)


def _live_ids(session: Session, ids: Iterable[uuid.UUID]) -> set[uuid.UUID]:
    pointers = _pointers(session, ids)
    return {_follow(pointers, i) for i in pointers}


def _pointers(session: Session, ids: Iterable[uuid.UUID]) -> dict[uuid.UUID, uuid.UUID | None]:
    """Person id -> merged_into for the ids and everyone their chains lead to."""
    pointers: dict[uuid.UUID, uuid.UUID | None] = {}
    todo = set(ids)
    while todo:
        batch = list(todo)[:1000]
        todo -= set(batch)
        for person_id, target in session.execute(
            select(Person.id, Person.merged_into).where(Person.id.in_(batch))
        ):
            pointers[person_id] = target
            if target is not None and target not in pointers:
                todo.add(target)
    return pointers


def _follow(pointers: Mapping[uuid.UUID, uuid.UUID | None], person_id: uuid.UUID) -> uuid.UUID:
    seen = {person_id}
    while (target := pointers.get(person_id)) is not None and target not in seen:
        seen.add(target)
        person_id = target
    return person_id


def _ordered(a: uuid.UUID, b: uuid.UUID) -> tuple[uuid.UUID, uuid.UUID]:
    return (a, b) if str(a) < str(b) else (b, a)


def _decided_pairs(session: Session) -> set[tuple[uuid.UUID, uuid.UUID]]:
    """Pairs already proposed (pending, merged or rejected), as the live persons they
    are now, so a rejected pair stays rejected after either side merged with someone."""
    rows = list(session.execute(select(MatchCandidate.left_id, MatchCandidate.right_id)))
    pointers = _pointers(session, {i for row in rows for i in row})
    return {_ordered(_follow(pointers, left), _follow(pointers, right)) for left, right in rows}


def _live_pair(
    session: Session, left: uuid.UUID, right: uuid.UUID
) -> tuple[uuid.UUID, uuid.UUID] | None:
    pointers = _pointers(session, (left, right))
    a, b = _follow(pointers, left), _follow(pointers, right)
    return None if a == b else _ordered(a, b)


def _candidate(session: Session, run: MatchRun, pair: matching.CandidatePair) -> MatchCandidate:
    left, right = uuid.UUID(pair.left_id), uuid.UUID(pair.right_id)
    existing = session.scalar(
        select(MatchCandidate).where(
            MatchCandidate.left_id == left, MatchCandidate.right_id == right
        )
    )
    candidate = existing or MatchCandidate(left_id=left, right_id=right)
    candidate.run_id = run.id
    candidate.match_probability = pair.match_probability
    candidate.match_weight = pair.match_weight
    candidate.evidence = [asdict(e) for e in pair.evidence]
    candidate.status = "pending"
    if existing is None:
        session.add(candidate)
    session.flush()
    return candidate


def _merge_evidence(candidate: MatchCandidate) -> dict[str, object]:
    return {
        "candidate_id": candidate.id,
        "match_probability": candidate.match_probability,
        "match_weight": candidate.match_weight,
        "fields": candidate.evidence,
    }


def _separations(session: Session) -> list[tuple[frozenset[str], frozenset[str]]]:
    return [(frozenset(s.left), frozenset(s.right)) for s in session.scalars(select(Separation))]


def _identities(
    session: Session, pair: tuple[uuid.UUID, uuid.UUID]
) -> tuple[set[tuple[str, str]], set[tuple[str, str]]]:
    held: dict[uuid.UUID, set[tuple[str, str]]] = {person_id: set() for person_id in pair}
    for person_id, kind, value in session.execute(
        select(Identity.person_id, Identity.kind, Identity.value).where(
            Identity.person_id.in_(pair)
        )
    ):
        held[person_id].add((kind, value))
    return held[pair[0]], held[pair[1]]


def _kept_apart(
    a: set[tuple[str, str]],
    b: set[tuple[str, str]],
    separations: Sequence[tuple[frozenset[str], frozenset[str]]],
) -> bool:
    """True when an unmerge separated identifiers of one side from the other's: a person
    decided these are different people, and the matcher does not overrule that."""
    keys_a, keys_b = {f"{k}:{v}" for k, v in a}, {f"{k}:{v}" for k, v in b}
    return any(
        bool((left & keys_a and right & keys_b) or (left & keys_b and right & keys_a))
        for left, right in separations
    )


def _breaks_limits(a: set[tuple[str, str]], b: set[tuple[str, str]], policy: Policy) -> bool:
    """True when merging would give the person more values of a kind than its rule allows
    and than either side holds already: two persons with different user ids are two
    accounts, and only a person may decide they belong together."""
    for kind in {k for k, _ in a | b}:
        limit = policy.rule(kind).max_per_person
        if limit is None:
            continue
        left = {v for k, v in a if k == kind}
        right = {v for k, v in b if k == kind}
        if len(left | right) > max(limit, len(left), len(right)):
            return True
    return False
