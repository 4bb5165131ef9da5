"""The identity graph, live: attach each message to a person, merging when it links several.

One :class:`Resolver` serves one batch of the log. It caches the identities it has seen,
so a batch costs one lookup query for the identifiers it mentions plus a few per person it
changes, and it is the same code for live processing, unmerges and ``patron rebuild``.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, cast

from sqlalchemy import Table, bindparam, delete, func, select, update
from sqlalchemy.orm import Session

from patron.collect.models import LogEntry
from patron.core.clock import as_utc, utcnow
from patron.core.dialect import driver_values, insert_rows
from patron.core.settings import Settings
from patron.identity.hooks import HOOKS
from patron.identity.identifiers import (
    ANONYMOUS_ID,
    BUILTIN_RULES,
    DEFAULT_RULE,
    USER_ID,
    BlockEntry,
    BlockList,
    Identifier,
    Normaliser,
    Rule,
    alias_previous,
    extract,
)
from patron.identity.models import (
    BlockedValue,
    Identity,
    IdentityConflict,
    IdentityRule,
    Merge,
    Person,
    PersonEvent,
    Separation,
)

# Person ids are derived from the log position of the message that created the person,
# so a replay (an unmerge, a rebuild) gives every person back the id it had.
PERSON_NAMESPACE = uuid.UUID("6d1f1c4e-8a53-4c39-9d55-0d3f1a7b2e90")
LOOKUP_CHUNK = 500


def person_id_for(seq: int) -> uuid.UUID:
    """The id of the person created by the message at log position ``seq``."""
    return uuid.uuid5(PERSON_NAMESPACE, f"event:{seq}")


@dataclass(frozen=True)
class Policy:
    """Everything that decides how identifiers link, loaded once per batch."""

    rules: dict[str, Rule]
    blocked: BlockList
    normaliser: Normaliser
    separations: tuple[tuple[frozenset[str], frozenset[str]], ...]
    supernode_limit: int
    # What raw values came to under this normaliser and block list (see ``extract``).
    memo: dict[tuple[str, str], Identifier | None] = field(default_factory=dict)

    def rule(self, kind: str) -> Rule:
        found = self.rules.get(kind)
        if found is not None:
            return found
        limit, priority = BUILTIN_RULES.get(kind, DEFAULT_RULE)
        return Rule(kind, limit, priority)


def load_policy(session: Session, settings: Settings) -> Policy:
    """The rules, blocked values and separations in force now."""
    rules = {
        r.kind: Rule(r.kind, r.max_per_person, r.priority, r.trait)
        for r in session.scalars(select(IdentityRule))
    }
    blocked = BlockList(
        BlockEntry(b.kind, b.pattern, b.is_regex) for b in session.scalars(select(BlockedValue))
    )
    separations = tuple(
        (frozenset(map(str, s.left)), frozenset(map(str, s.right)))
        for s in session.scalars(select(Separation))
    )
    return Policy(
        rules=rules,
        blocked=blocked,
        normaliser=Normaliser(settings.phone_region, settings.email_provider_rules),
        separations=separations,
        supernode_limit=settings.supernode_limit,
    )


# Where a session keeps the persons resolvers loaded: its identity map holds objects only
# weakly, so once a resolver was gone the handlers after it read every person again.
_HELD_PERSONS = "patron.resolved_persons"


def hold_persons(session: Session, persons: Iterable[Person]) -> None:
    """Keep these persons in the session's identity map for as long as the session lives."""
    held: list[Person] = session.info.setdefault(_HELD_PERSONS, [])
    held.extend(persons)


def loaded_persons(session: Session, person_ids: Iterable[uuid.UUID]) -> list[Person]:
    """These persons (those that exist), as ``select(Person)`` would give them back: the
    objects the session holds already, unrefreshed, and the rest read in chunks. A
    processing batch's handlers each need the persons the resolver loaded; asking the
    database again cost a query and a JSON decoding of every profile each time."""
    found: list[Person] = []
    missing: list[uuid.UUID] = []
    identities = session.identity_map
    for person_id in dict.fromkeys(person_ids):
        # The key Session.identity_key(Person, person_id) makes, without its lookups.
        held = identities.get((Person, (person_id,), None))
        if isinstance(held, Person):
            found.append(held)
        else:
            missing.append(person_id)
    for start in range(0, len(missing), LOOKUP_CHUNK):
        chunk = missing[start : start + LOOKUP_CHUNK]
        found.extend(session.scalars(select(Person).where(Person.id.in_(chunk))))
    return found


@dataclass
class Held:
    """An identity row as the resolver holds it: read and written with Core statements,
    since a batch touches thousands and ORM objects cost more than resolving them."""

    kind: str
    value: str
    person_id: uuid.UUID
    first_seq: int
    joins: int = 0
    # Not in the table yet / joins changed since it was read.
    new: bool = False
    dirty: bool = False


_IDENTITIES = cast(Table, Identity.__table__)
_HELD_COLUMNS = (
    _IDENTITIES.c.kind,
    _IDENTITIES.c.value,
    _IDENTITIES.c.person_id,
    _IDENTITIES.c.first_seq,
    _IDENTITIES.c.joins,
)


_IDENTITY_COLUMNS = ("kind", "value", "person_id", "first_seq", "joins", "created_at")
_PERSON_EVENTS = cast(Table, PersonEvent.__table__)


@dataclass
class Drop:
    identifier: Identifier
    reason: str
    detail: str


@dataclass
class Resolver:
    session: Session
    policy: Policy
    rows: dict[Identifier, Held | None] = field(default_factory=dict)
    members: dict[uuid.UUID, set[Identifier]] = field(default_factory=dict)
    persons: dict[uuid.UUID, Person] = field(default_factory=dict)
    # New rows wait here and are written together (persons first, for the foreign keys):
    # flushing the session for every new person was most of the cost of resolving.
    new_persons: list[Person] = field(default_factory=list)
    new_rows: list[IdentityConflict] = field(default_factory=list)
    # Which person each event belongs to (seq, person id), inserted through the driver:
    # one row per event.
    new_events: list[tuple[int, uuid.UUID]] = field(default_factory=list)
    # Each event's identifiers, extracted once for the batch's prefetch and reused.
    extracted: dict[int, list[Identifier]] = field(default_factory=dict)
    blocked_in_batch: bool = False
    # Merges are decided at once (in memory) but written at the next write(), together:
    # a flush and three statements per merge were most of the cost of a merge-heavy batch.
    pending_merges: list[tuple[Merge, uuid.UUID, uuid.UUID]] = field(default_factory=list)
    # Persons whose updated_at this resolver set already (once is enough for a batch).
    touched: set[uuid.UUID] = field(default_factory=set)
    # When set, merges leave refreshing their survivors (``HOOKS.after_merges``) to the
    # caller and collect them here.
    survivors: set[uuid.UUID] | None = None
    # First and last seen of the persons this batch saw, until the next write().
    seen: dict[uuid.UUID, list[datetime | None]] = field(default_factory=dict)
    # Held persons by the person they point at (merged_into), so that a merge re-points
    # the ones merged earlier without walking every person of the batch. May hold stale
    # entries (a revived person); each is checked before use.
    merged_from: dict[uuid.UUID, set[uuid.UUID]] = field(default_factory=dict)

    # --- lookups -------------------------------------------------------------------------

    def prefetch(self, identifiers: Iterable[Identifier]) -> None:
        """Load the identities of many identifiers at once (one query per chunk)."""
        missing = sorted({i for i in identifiers if i not in self.rows})
        for start in range(0, len(missing), LOOKUP_CHUNK):
            chunk = missing[start : start + LOOKUP_CHUNK]
            for i in chunk:
                self.rows[i] = None
            found = self.session.execute(
                select(*_HELD_COLUMNS).where(_IDENTITIES.c.value.in_({i.value for i in chunk}))
            )
            for kind, value, person_id, first_seq, joins in found:
                key = Identifier(kind, value)
                if key in self.rows:
                    self.rows[key] = Held(kind, value, person_id, first_seq, joins)
        self._load_persons({r.person_id for r in self.rows.values() if r is not None})

    def _load_persons(self, ids: Iterable[uuid.UUID]) -> None:
        missing = [i for i in ids if i not in self.persons]
        for start in range(0, len(missing), LOOKUP_CHUNK):
            chunk = missing[start : start + LOOKUP_CHUNK]
            for person in self.session.scalars(select(Person).where(Person.id.in_(chunk))):
                self._hold(person)

    def _hold(self, person: Person) -> None:
        self.persons[person.id] = person
        if person.merged_into is not None:
            self.merged_from.setdefault(person.merged_into, set()).add(person.id)

    def write(self) -> None:
        """Write the new persons, then the rows that point at them, then apply the merges
        made since the last write (in the order they were made)."""
        self._write_spans()
        if self.new_persons:
            self.session.add_all(self.new_persons)
            self.session.flush()
            self.new_persons = []
        self._write_identities()
        if self.new_rows:
            self.session.add_all(self.new_rows)
            self.session.flush()
            self.new_rows = []
        if self.new_events:
            to_driver = driver_values(self.session).uuid
            owners = {owner: to_driver(owner) for owner in {o for _, o in self.new_events}}
            rows = [(seq, owners[owner]) for seq, owner in self.new_events]
            insert_rows(self.session, _PERSON_EVENTS, ("seq", "person_id"), rows)
            self.new_events = []
        if self.pending_merges:
            self._apply_merges()

    def _write_identities(self) -> None:
        """Insert the identities attached since the last write; save changed join counts."""
        held = [r for r in self.rows.values() if r is not None and (r.new or r.dirty)]
        if not held:
            return
        connection = self.session.connection()
        fresh = [r for r in held if r.new]
        if fresh:
            to_driver = driver_values(self.session)
            now = to_driver.datetime(utcnow())
            rows = [
                (r.kind, r.value, to_driver.uuid(r.person_id), r.first_seq, r.joins, now)
                for r in fresh
            ]
            insert_rows(self.session, _IDENTITIES, _IDENTITY_COLUMNS, rows)
        counted = [r for r in held if r.dirty and not r.new]
        if counted:
            connection.execute(
                update(_IDENTITIES)
                .where(
                    _IDENTITIES.c.kind == bindparam("k_kind"),
                    _IDENTITIES.c.value == bindparam("k_value"),
                )
                .values(joins=bindparam("joins")),
                [{"k_kind": r.kind, "k_value": r.value, "joins": r.joins} for r in counted],
            )
        for r in held:
            r.new = r.dirty = False

    def _apply_merges(self) -> None:
        """Move what merged persons own to their survivors, for every merge since the last
        write at once: one statement per table for all of them (executed in merge order, so
        a chain A into B into C ends on C), then the domains' hooks pair by pair."""
        pairs, self.pending_merges = self.pending_merges, []
        session = self.session
        session.add_all(record for record, _, _ in pairs)
        session.flush()
        moves = [{"to": survivor, "from": merged} for _, survivor, merged in pairs]
        connection = session.connection()
        for model, column in (
            (Identity, "person_id"),
            (PersonEvent, "person_id"),
            (Person, "merged_into"),
        ):
            table = cast(Table, model.__table__)
            target = table.c[column]
            connection.execute(
                update(table).where(target == bindparam("from")).values({column: bindparam("to")}),
                moves,
            )
        merges = [(survivor, merged) for _, survivor, merged in pairs]
        if self.survivors is None:
            HOOKS.on_merges(session, merges)
        else:  # the caller refreshes them (see resolve_events)
            HOOKS.on_merges(session, merges, settle=False)
            self.survivors.update(survivor for survivor, _ in merges)

    def owner(self, identifier: Identifier) -> uuid.UUID | None:
        if identifier not in self.rows:
            self.prefetch([identifier])
        row = self.rows[identifier]
        return row.person_id if row is not None else None

    def survivor_of(self, person_id: uuid.UUID) -> uuid.UUID:
        """Where a person of this batch ended up, following the merges made in it."""
        for _ in range(1000):
            found = self.persons.get(person_id)
            if found is None or found.merged_into is None:
                return person_id
            person_id = found.merged_into
        raise LookupError(f"a cycle of merges through person {person_id}")

    def person(self, person_id: uuid.UUID) -> Person:
        held = self.persons.get(person_id)
        if held is not None:
            return held
        found = self.session.get(Person, person_id)
        if found is None:
            raise LookupError(f"person {person_id} vanished during resolution")
        self._hold(found)
        return found

    def identities_of(self, person_id: uuid.UUID) -> set[Identifier]:
        if person_id not in self.members:
            self.load_members([person_id])
        return self.members[person_id]

    def load_members(self, person_ids: Iterable[uuid.UUID]) -> None:
        """Read the identities of persons whose members are not known yet (one query per
        chunk of persons)."""
        missing = [p for p in dict.fromkeys(person_ids) if p not in self.members]
        for start in range(0, len(missing), LOOKUP_CHUNK):
            chunk = missing[start : start + LOOKUP_CHUNK]
            found: dict[uuid.UUID, set[Identifier]] = {p: set() for p in chunk}
            rows = self.session.execute(
                select(*_HELD_COLUMNS).where(_IDENTITIES.c.person_id.in_(chunk))
            )
            for kind, value, owner, first_seq, joins in rows:
                key = Identifier(kind, value)
                held = self.rows.get(key)
                if held is None:
                    held = self.rows[key] = Held(kind, value, owner, first_seq, joins)
                # What this batch changed in memory is newer than the table.
                if held.person_id == owner:
                    found[owner].add(key)
            self.members.update(found)

    def load_linking_members(self) -> None:
        """Before resolving a batch: the members of every person a message of it may link or
        add an identifier to, which is when resolving needs them."""
        wanted: list[uuid.UUID] = []
        for identifiers in self.extracted.values():
            owners = {r.person_id for i in identifiers if (r := self.rows.get(i)) is not None}
            if owners and (len(owners) > 1 or any(self.rows.get(i) is None for i in identifiers)):
                wanted += owners
        self.load_members(wanted)

    # --- one message ---------------------------------------------------------------------

    def resolve(self, event: LogEntry) -> uuid.UUID | None:
        """Attach one message to its person (creating or merging as needed); return its id."""
        identifiers, exempt = self._identifiers(event)
        while identifiers:
            owners = {i: o for i in identifiers if (o := self.owner(i)) is not None}
            if len(owners) == len(identifiers) and len(set(owners.values())) == 1:
                # The common case: every identifier already points at one person.
                return self._apply(event, identifiers, owners)
            anchor = min(identifiers, key=lambda i: (self.policy.rule(i.kind).priority, i))
            drop = self._problem(identifiers, owners, anchor, exempt)
            if drop is None:
                return self._apply(event, identifiers, owners)
            identifiers.remove(drop.identifier)
            self.new_rows.append(
                IdentityConflict(
                    seq=event.seq,
                    person_id=owners.get(anchor),
                    kind=drop.identifier.kind,
                    value=drop.identifier.value,
                    reason=drop.reason,
                    detail=drop.detail,
                )
            )
        return None

    def _identifiers(self, event: LogEntry) -> tuple[list[Identifier], set[Identifier]]:
        payload: dict[str, Any] = event.payload
        policy = self.policy
        found = self.extracted.pop(event.seq, None)
        if found is None:
            found = extract_from(event, policy)
        elif self.blocked_in_batch:
            # A value blocked by the super-node guard earlier in this batch links no more.
            found = [i for i in found if not policy.blocked.blocks(i)]
        exempt: set[Identifier] = set()
        if event.type == "alias":
            previous = alias_previous(payload, normaliser=policy.normaliser, blocked=policy.blocked)
            if previous is not None:
                # An alias says in so many words that the previous id is this user: it
                # links even past the user_id limit. Unknown previous ids are taken as
                # anonymous ids, so the history sent under them later still arrives.
                as_user = Identifier(USER_ID, previous)
                as_anonymous = Identifier(ANONYMOUS_ID, previous)
                self.prefetch([as_user, as_anonymous])
                chosen = as_user if self.owner(as_user) is not None else as_anonymous
                if chosen not in found:
                    found.append(chosen)
                exempt.add(chosen)
        return found, exempt

    def _problem(
        self,
        identifiers: list[Identifier],
        owners: dict[Identifier, uuid.UUID],
        anchor: Identifier,
        exempt: set[Identifier],
    ) -> Drop | None:
        # (resolve() applies a message whose identifiers all point at one person itself.)
        persons = set(owners.values())
        new = [i for i in identifiers if i not in owners]
        anchor_person = owners.get(anchor)
        groups: list[set[Identifier]] = [set(self.identities_of(p)) for p in persons]
        if new:
            groups.append(set(new))
        if drop := self._separation_problem(identifiers, owners, anchor, anchor_person, groups):
            return drop
        if drop := self._limit_problem(identifiers, owners, anchor, anchor_person, groups, exempt):
            return drop
        if len(persons) > 1:
            return self._supernode_problem(identifiers, owners, len(persons))
        return None

    def _droppable(
        self,
        identifiers: list[Identifier],
        owners: dict[Identifier, uuid.UUID],
        anchor: Identifier,
        anchor_person: uuid.UUID | None,
        kinds: set[str] | None = None,
    ) -> Identifier:
        """The identifier to give up: from another person first, lowest priority first."""
        others = [
            i for i in identifiers if i != anchor and owners.get(i) not in (None, anchor_person)
        ]
        loose = [
            i
            for i in identifiers
            if i != anchor and i not in owners and (kinds is None or i.kind in kinds)
        ]
        pool = others or loose or [i for i in identifiers if i != anchor] or [anchor]
        return max(pool, key=lambda i: (self.policy.rule(i.kind).priority, i))

    def _separation_problem(
        self,
        identifiers: list[Identifier],
        owners: dict[Identifier, uuid.UUID],
        anchor: Identifier,
        anchor_person: uuid.UUID | None,
        groups: list[set[Identifier]],
    ) -> Drop | None:
        if not self.policy.separations or len(groups) < 2:
            return None
        keys = [{i.key() for i in g} for g in groups]
        for left, right in self.policy.separations:
            with_left = {n for n, k in enumerate(keys) if k & left}
            with_right = {n for n, k in enumerate(keys) if k & right}
            if any(a != b for a in with_left for b in with_right):
                drop = self._droppable(identifiers, owners, anchor, anchor_person)
                return Drop(drop, "separation", "an unmerge keeps these identifiers apart")
        return None

    def _limit_problem(
        self,
        identifiers: list[Identifier],
        owners: dict[Identifier, uuid.UUID],
        anchor: Identifier,
        anchor_person: uuid.UUID | None,
        groups: list[set[Identifier]],
        exempt: set[Identifier],
    ) -> Drop | None:
        combined: dict[str, set[str]] = {}
        # The most values of a kind one side holds already: a person can hold more than the
        # limit through a decided merge (two shop accounts merged by hand or by the
        # matcher), and linking only breaks a limit when it adds values beyond that.
        held: dict[str, int] = {}
        for group in groups:
            counts: dict[str, int] = {}
            for i in group:
                if i not in exempt:
                    combined.setdefault(i.kind, set()).add(i.value)
                    counts[i.kind] = counts.get(i.kind, 0) + 1
            for kind, count in counts.items():
                held[kind] = max(held.get(kind, 0), count)
        broken = {
            kind
            for kind, values in combined.items()
            if (limit := self.policy.rule(kind).max_per_person) is not None
            and len(values) > max(limit, held[kind])
        }
        if not broken:
            return None
        drop = self._droppable(identifiers, owners, anchor, anchor_person, broken)
        kinds = ", ".join(sorted(broken))
        return Drop(drop, "limit", f"linking would give one person too many of: {kinds}")

    def _supernode_problem(
        self,
        identifiers: list[Identifier],
        owners: dict[Identifier, uuid.UUID],
        joining: int,
    ) -> Drop | None:
        for i in identifiers:
            row = self.rows.get(i)
            if row is None or owners.get(i) is None:
                continue
            if row.joins + joining - 1 > self.policy.supernode_limit:
                self._block_supernode(i)
                return Drop(
                    i,
                    "supernode",
                    f"this value would join more than {self.policy.supernode_limit} persons; "
                    "it is blocked and listed for review",
                )
        return None

    def _block_supernode(self, identifier: Identifier) -> None:
        self.session.add(
            BlockedValue(
                kind=identifier.kind,
                pattern=identifier.value,
                origin="supernode",
                status="review",
                reason=f"would join more than {self.policy.supernode_limit} persons",
            )
        )
        self.policy.blocked.add(BlockEntry(identifier.kind, identifier.value, False))
        self.policy.memo.clear()
        self.blocked_in_batch = True

    def _apply(
        self,
        event: LogEntry,
        identifiers: list[Identifier],
        owners: dict[Identifier, uuid.UUID],
    ) -> uuid.UUID:
        found = {p: self.person(p) for p in set(owners.values())}
        if len(found) == 1:
            (survivor,) = found.values()
        elif found:
            ordered = sorted(found.values(), key=lambda p: (p.created_seq, str(p.id)))
            survivor = ordered[0]
            for other in ordered[1:]:
                linking = [i for i in identifiers if owners.get(i) in (other.id, survivor.id)]
                self.merge(
                    survivor,
                    other,
                    reason="alias" if event.type == "alias" else "message",
                    seq=event.seq,
                    evidence={
                        "identifiers": [i.key() for i in linking],
                        "message_type": event.type,
                        "message_id": event.message_id,
                    },
                )
                for i in linking:
                    row = self.rows.get(i)
                    if row is not None:
                        row.joins += 1
                        row.dirty = True
        else:
            survivor = self.create_person(event.seq, as_utc(event.timestamp))
        for i in identifiers:
            if i not in owners:
                self.attach(survivor.id, i, event.seq)
        self._touch(survivor, as_utc(event.timestamp))
        self.new_events.append((event.seq, survivor.id))
        return survivor.id

    # --- changes to the graph ------------------------------------------------------------

    def create_person(self, seq: int, seen: datetime) -> Person:
        person_id = person_id_for(seq)
        person = self.persons.get(person_id)
        if person is None:
            person = Person(id=person_id, created_seq=seq, traits={}, computed={})
            self.new_persons.append(person)
        else:  # revived by a replay: it comes back with its own id
            person.merged_into, person.traits, person.computed = None, {}, {}
        person.first_seen = person.last_seen = seen
        self.seen[person_id] = [seen, seen]
        self._hold(person)
        self.members[person_id] = set()
        return person

    def attach(self, person_id: uuid.UUID, identifier: Identifier, seq: int) -> None:
        self.rows[identifier] = Held(identifier.kind, identifier.value, person_id, seq, new=True)
        self.identities_of(person_id).add(identifier)

    def _span(self, person: Person) -> list[datetime | None]:
        """When the person was first and last seen, as this batch knows it (written to the
        person at :meth:`write`: setting mapped attributes for every event cost more than
        resolving it)."""
        span = self.seen.get(person.id)
        if span is None:
            if person.id not in self.persons:  # handed in by a caller (a decided merge)
                self._hold(person)
            first, last = person.first_seen, person.last_seen
            span = [as_utc(first) if first else None, as_utc(last) if last else None]
            self.seen[person.id] = span
        return span

    def _touch(self, person: Person, seen: datetime) -> None:
        span = self._span(person)
        first, last = span
        if first is None or seen < first:
            span[0] = seen
        if last is None or seen > last:
            span[1] = seen
        if person.id not in self.touched:
            self.touched.add(person.id)
            person.updated_at = utcnow()

    def _write_spans(self) -> None:
        for person_id, (first, last) in self.seen.items():
            person = self.persons[person_id]
            # Compared in UTC: SQLite hands stored times back without a zone.
            if first is not None and (
                person.first_seen is None or as_utc(person.first_seen) != first
            ):
                person.first_seen = first
            if last is not None and (person.last_seen is None or as_utc(person.last_seen) != last):
                person.last_seen = last
        self.seen.clear()

    def merge(
        self,
        survivor: Person,
        merged: Person,
        *,
        reason: str,
        seq: int | None,
        evidence: dict[str, Any],
        actor: str | None = None,
    ) -> Merge:
        """Fold ``merged`` into ``survivor`` and record why.

        The graph in memory changes now; the tables at the next :meth:`write`, which every
        caller must reach before it reads them (the record has no id until then)."""
        survivor_ids = self.identities_of(survivor.id)
        merged_ids = self.identities_of(merged.id)
        record = Merge(
            survivor_id=survivor.id,
            merged_id=merged.id,
            reason=reason,
            seq=seq,
            evidence={**evidence, **({"actor": actor} if actor else {})},
            survivor_identities=sorted(i.key() for i in survivor_ids),
            merged_identities=sorted(i.key() for i in merged_ids),
        )
        for i in merged_ids:
            row = self.rows.get(i)
            if row is not None:
                row.person_id = survivor.id
        survivor_ids |= merged_ids
        self.members[merged.id] = set()
        merged.merged_into = survivor.id
        pointing = self.merged_from.setdefault(survivor.id, set())
        pointing.add(merged.id)
        for earlier_id in self.merged_from.pop(merged.id, ()):
            earlier = self.persons[earlier_id]
            if earlier.merged_into == merged.id:
                earlier.merged_into = survivor.id
                pointing.add(earlier_id)
        for seen in self._span(merged):
            if seen is not None:
                self._touch(survivor, seen)
        self.pending_merges.append((record, survivor.id, merged.id))
        return record


def extract_from(event: LogEntry, policy: Policy) -> list[Identifier]:
    """The usable identifiers of one message under the batch's policy."""
    return extract(
        event.type,
        event.payload,
        rules=policy.rules,
        normaliser=policy.normaliser,
        blocked=policy.blocked,
        memo=policy.memo,
    )


def resolve_events(
    session: Session,
    events: Sequence[LogEntry],
    settings: Settings,
    *,
    survivors: set[uuid.UUID] | None = None,
) -> dict[int, uuid.UUID]:
    """Attach every event of a batch to its person, in log order; returns the person each
    event belongs to once the batch's merges are done (events without an identifier have
    none).

    With ``survivors``, the survivors of the batch's merges are added to it and not
    refreshed here: the caller refreshes them with the rest of the batch's persons (one
    pass over all of them instead of one more for the survivors)."""
    if not events:
        return {}
    resolver = Resolver(session, load_policy(session, settings), survivors=survivors)
    wanted: list[Identifier] = []
    for e in events:
        found = resolver.extracted[e.seq] = extract_from(e, resolver.policy)
        wanted += found
    # A replay recreates persons under their old ids: those rows are revived, not inserted.
    # Only a message at or before the newest person's position can have created one (live
    # processing reads past it, so it asks nothing more).
    newest = session.scalar(select(func.max(Person.created_seq)))
    if newest is not None:
        resolver._load_persons(person_id_for(e.seq) for e in events if e.seq <= newest)
    resolver.prefetch(wanted)
    resolver.load_linking_members()
    owners: dict[int, uuid.UUID] = {}
    for e in events:
        if (person := resolver.resolve(e)) is not None:
            owners[e.seq] = person
    resolver.write()
    hold_persons(session, resolver.persons.values())
    return {seq: resolver.survivor_of(person) for seq, person in owners.items()}


def forget_persons(session: Session, person_ids: Sequence[uuid.UUID]) -> None:
    """Delete what identity derived for these persons (before they are replayed)."""
    ids = list(person_ids)
    session.flush()
    session.execute(delete(Identity).where(Identity.person_id.in_(ids)))
    session.execute(delete(PersonEvent).where(PersonEvent.person_id.in_(ids)))
    session.execute(
        delete(Merge).where(
            Merge.survivor_id.in_(ids),
            Merge.undone_at.is_(None),
            Merge.reason.in_(("message", "alias")),
        )
    )
    session.execute(delete(IdentityConflict).where(IdentityConflict.person_id.in_(ids)))
