"""The condition language scoring and assignment rules share.

A condition is a JSON object with a ``kind``:

- ``trait``: ``{"kind": "trait", "name": "address.country", "op": "in", "value": ["DE"]}``
- ``computed``: a computed trait, ``{"kind": "computed", "name": "lifetime_value", ...}``
- ``field``: a CRM field (``lifecycle_stage``, ``lead_status``, ``owner_id``, ``tags``,
  ``custom.KEY``) or ``country`` / ``region`` (the trait, else the address's)
- ``company``: ``industry``, ``size``, ``name`` or ``domain`` of any of the person's companies
- ``event``: ``{"kind": "event", "event": "Pricing Viewed", "within_days": 30,
  "min_count": 3, "where": {"property": "plan", "op": "eq", "value": "pro"}}``
- ``recency``: ``{"kind": "recency", "within_days": 7}``, last seen that recently

Operators: ``eq ne in not_in exists not_exists contains gt gte lt lte between``. Text
compares case-insensitively; numbers as numbers (numeric text included); a list value (tags)
matches when any element does; ``ne``, ``not_in`` and ``not_exists`` are the negation of
their positive twin, so a missing value is ``ne`` anything.

Facts are loaded for many persons at once (:func:`load_facts`), a few queries per chunk,
then every condition is evaluated in memory.
"""

from __future__ import annotations

import math
import re
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import orjson
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from patron.collect.models import Event, Source
from patron.core.clock import as_utc
from patron.core.errors import InvalidInput
from patron.crm.contacts import LEAD_STATUSES, LIFECYCLE_STAGES
from patron.crm.events import SOURCE_KIND as CRM_SOURCE_KIND
from patron.crm.models import Company, PersonCompany
from patron.identity.models import Person, PersonEvent
from patron.profiles.models import TraitValue

KINDS = ("trait", "computed", "field", "company", "event", "recency")
OPS = (
    "eq",
    "ne",
    "in",
    "not_in",
    "exists",
    "not_exists",
    "contains",
    "gt",
    "gte",
    "lt",
    "lte",
    "between",
)
NEGATED = {"ne": "eq", "not_in": "in", "not_exists": "exists"}
NUMERIC_OPS = ("gt", "gte", "lt", "lte", "between")
TEXT_OPS = ("eq", "ne", "in", "not_in", "exists", "not_exists", "contains")
FIELDS = ("lifecycle_stage", "lead_status", "owner_id", "tags", "country", "region")
COMPANY_FIELDS = ("industry", "size", "name", "domain")
KEYS = {
    "trait": {"kind", "name", "op", "value"},
    "computed": {"kind", "name", "op", "value"},
    "field": {"kind", "name", "op", "value"},
    "company": {"kind", "name", "op", "value"},
    "event": {"kind", "event", "within_days", "min_count", "where"},
    "recency": {"kind", "within_days"},
}
MAX_CONDITIONS = 20
MAX_VALUES = 500
MAX_TEXT = 500
MAX_DAYS = 3650
MAX_COUNT = 100_000
PATH = re.compile(r"^[^.\x00-\x1f]{1,100}(\.[^.\x00-\x1f]{1,100}){0,3}$")
OP_WORDS = {
    "eq": "=",
    "ne": "!=",
    "in": "in",
    "not_in": "not in",
    "contains": "contains",
    "gt": ">",
    "gte": ">=",
    "lt": "<",
    "lte": "<=",
}


# --- the language ----------------------------------------------------------------------


@dataclass(frozen=True)
class Comparison:
    """An operator and its operand, applied to one value."""

    op: str
    value: Any = None

    def check(self, actual: Any) -> bool:
        if self.op in NEGATED:
            return not Comparison(NEGATED[self.op], self.value).check(actual)
        if self.op == "exists":
            return actual is not None and actual != "" and actual != []
        if isinstance(actual, list):
            return any(self.check(item) for item in actual)
        if actual is None:
            return False
        if self.op == "eq":
            return _equal(actual, self.value)
        if self.op == "in":
            return any(_equal(actual, v) for v in self.value)
        if self.op == "contains":
            return isinstance(actual, str) and str(self.value).casefold() in actual.casefold()
        return _compare(self.op, _number(actual), self.value)

    def describe(self) -> str:
        if self.op == "exists":
            return "is set"
        if self.op == "not_exists":
            return "is not set"
        if self.op == "between":
            return f"between {_text(self.value[0])} and {_text(self.value[1])}"
        if self.op in ("in", "not_in"):
            return f"{OP_WORDS[self.op]} {', '.join(_text(v) for v in self.value)}"
        return f"{OP_WORDS[self.op]} {_text(self.value)}"

    def as_json(self) -> dict[str, Any]:
        return {"op": self.op} if self.op in ("exists", "not_exists") else vars(self).copy()


def _equal(actual: Any, expected: Any) -> bool:
    a, b = _number(actual), _number(expected)
    if a is not None and b is not None:
        return a == b
    return str(actual).casefold() == str(expected).casefold()


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, str):
        try:
            number = float(value)
        except ValueError:
            return None
        return number if math.isfinite(number) else None
    return None


def _compare(op: str, actual: float | None, expected: Any) -> bool:
    if actual is None:
        return False
    if op == "between":
        return bool(expected[0] <= actual <= expected[1])
    limit = float(expected)
    comparisons = {
        "gt": actual > limit,
        "gte": actual >= limit,
        "lt": actual < limit,
        "lte": actual <= limit,
    }
    return comparisons[op]


def _text(value: Any) -> str:
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


@dataclass(frozen=True)
class Condition:
    """One parsed condition (see the module docstring for the JSON form)."""

    kind: str
    name: str = ""
    test: Comparison | None = None
    within_days: int | None = None
    min_count: int = 1
    where: tuple[str, Comparison] | None = None

    @property
    def timed(self) -> bool:
        """Whether the evidence has a time, from which points can decay."""
        return self.kind in ("trait", "event", "recency")

    @property
    def event_key(self) -> str:
        where = None if self.where is None else [self.where[0], self.where[1].as_json()]
        spec = [self.name, self.within_days, where]
        return orjson.dumps(spec, option=orjson.OPT_SORT_KEYS).decode()

    def as_json(self) -> dict[str, Any]:
        if self.kind == "recency":
            return {"kind": "recency", "within_days": self.within_days}
        if self.kind == "event":
            out: dict[str, Any] = {
                "kind": "event",
                "event": self.name,
                "within_days": self.within_days,
                "min_count": self.min_count,
            }
            if self.where is not None:
                out["where"] = {"property": self.where[0], **self.where[1].as_json()}
            return out
        assert self.test is not None
        return {"kind": self.kind, "name": self.name, **self.test.as_json()}

    def describe(self) -> str:
        """The condition in words, for reasons and explanations."""
        if self.kind == "recency":
            return f"seen in the last {self.within_days} days"
        if self.kind == "event":
            times = "once" if self.min_count == 1 else f"{self.min_count} times"
            text = f"'{self.name}' at least {times}"
            if self.within_days is not None:
                text += f" in {self.within_days} days"
            if self.where is not None:
                text += f" with {self.where[0]} {self.where[1].describe()}"
            return text
        assert self.test is not None
        prefix = {"computed": "computed.", "company": "company.", "trait": "", "field": ""}
        return f"{prefix[self.kind]}{self.name} {self.test.describe()}"


def describe_all(conditions: Sequence[Condition]) -> str:
    """Conditions in words, joined by "and" (none: "every lead")."""
    return " and ".join(c.describe() for c in conditions) or "every lead"


# --- checking input --------------------------------------------------------------------


def parse_conditions(
    raw: Any, *, field: str = "conditions", allow_empty: bool = False
) -> list[Condition]:
    """Check a JSON list of conditions; anything wrong is a 400 naming the part at fault
    (``conditions[1].op``)."""
    if not isinstance(raw, list):
        raise InvalidInput(f"{field} is a list of conditions", field=field)
    if not raw and not allow_empty:
        raise InvalidInput(f"{field} needs at least one condition", field=field)
    if len(raw) > MAX_CONDITIONS:
        raise InvalidInput(f"at most {MAX_CONDITIONS} conditions", field=field)
    return [parse_condition(item, f"{field}[{i}]") for i, item in enumerate(raw)]


def stored_conditions(raw: list[Any]) -> list[Condition]:
    """Conditions as stored (checked when they were saved)."""
    return [parse_condition(item, "conditions") for item in raw]


def parse_condition(raw: Any, at: str) -> Condition:
    """Check one condition; errors name ``at`` and the key at fault."""
    if not isinstance(raw, dict):
        raise InvalidInput(f"{at} is a condition object", field=at)
    kind = raw.get("kind")
    if kind not in KINDS:
        raise InvalidInput(f"kind must be one of {', '.join(KINDS)}", field=f"{at}.kind")
    unknown = sorted(set(raw) - KEYS[kind])
    if unknown:
        raise InvalidInput(f"a {kind} condition has no {unknown[0]!r}", field=f"{at}.{unknown[0]}")
    if kind == "recency":
        days = _days(raw.get("within_days"), f"{at}.within_days", required=True)
        return Condition("recency", within_days=days)
    if kind == "event":
        return _event(raw, at)
    name = raw.get("name")
    _check_name(kind, name, f"{at}.name")
    test = parse_test(raw, at, numeric_only=(kind == "company" and name == "size"))
    _check_field_values(kind, str(name), test, at)
    return Condition(kind, name=str(name), test=test)


def _check_name(kind: str, name: Any, at: str) -> None:
    if not isinstance(name, str) or not name:
        raise InvalidInput(f"a {kind} condition needs a name", field=at)
    if kind in ("trait", "computed") and not PATH.match(name):
        raise InvalidInput(f"{name!r} is not a trait name (dots reach nested values)", field=at)
    if kind == "field" and name not in FIELDS and not _custom_key(name):
        raise InvalidInput(f"field must be one of {', '.join(FIELDS)} or custom.KEY", field=at)
    if kind == "company" and name not in COMPANY_FIELDS:
        raise InvalidInput(f"company field must be one of {', '.join(COMPANY_FIELDS)}", field=at)


def _custom_key(name: str) -> bool:
    return name.startswith("custom.") and bool(re.match(r"^[a-z][a-z0-9_]{0,59}$", name[7:]))


def _check_field_values(kind: str, name: str, test: Comparison, at: str) -> None:
    """Values a CRM field can never have are typos: refuse them now."""
    allowed = {"lifecycle_stage": LIFECYCLE_STAGES, "lead_status": LEAD_STATUSES}.get(name)
    if kind == "field" and name == "owner_id":
        if test.op not in ("eq", "ne", "in", "not_in", "exists", "not_exists"):
            raise InvalidInput(
                "owner_id takes eq, ne, in, not_in or (not_)exists", field=f"{at}.op"
            )
        for value in _values(test):
            try:
                uuid.UUID(str(value))
            except ValueError as exc:
                raise InvalidInput(f"{value!r} is not a user id", field=f"{at}.value") from exc
    if kind == "field" and allowed is not None:
        for value in _values(test):
            if test.op != "contains" and value not in allowed:
                raise InvalidInput(
                    f"{name} must be one of {', '.join(allowed)}", field=f"{at}.value"
                )


def _values(test: Comparison) -> list[Any]:
    if test.op in ("in", "not_in"):
        return list(test.value)
    if test.op in ("eq", "ne", "contains"):
        return [test.value]
    return []


def parse_test(raw: dict[str, Any], at: str, *, numeric_only: bool = False) -> Comparison:
    """The ``op`` and ``value`` of a condition (or of an event's ``where``)."""
    op = raw.get("op")
    if op not in OPS:
        raise InvalidInput(f"op must be one of {', '.join(OPS)}", field=f"{at}.op")
    if numeric_only and op not in (
        *NUMERIC_OPS,
        "eq",
        "ne",
        "in",
        "not_in",
        "exists",
        "not_exists",
    ):
        raise InvalidInput(f"{op} does not apply to a number", field=f"{at}.op")
    value, where = raw.get("value"), f"{at}.value"
    if op in ("exists", "not_exists"):
        if value is not None:
            raise InvalidInput(f"{op} takes no value", field=where)
        return Comparison(op)
    if op in ("in", "not_in"):
        if not isinstance(value, list) or not 1 <= len(value) <= MAX_VALUES:
            raise InvalidInput(f"{op} takes a list of 1 to {MAX_VALUES} values", field=where)
        return Comparison(op, [_scalar(v, where, numeric_only) for v in value])
    if op == "between":
        if not isinstance(value, list) or len(value) != 2:
            raise InvalidInput("between takes [low, high]", field=where)
        low, high = (_finite(v, where) for v in value)
        if low > high:
            raise InvalidInput("between takes [low, high] with low <= high", field=where)
        return Comparison(op, [low, high])
    if op in NUMERIC_OPS:
        return Comparison(op, _finite(value, where))
    return Comparison(op, _scalar(value, where, numeric_only))


def _scalar(value: Any, at: str, numeric_only: bool) -> Any:
    if numeric_only or (isinstance(value, int | float) and not isinstance(value, bool)):
        return _finite(value, at)
    if isinstance(value, bool):
        return value
    if not isinstance(value, str) or not value or len(value) > MAX_TEXT or "\x00" in value:
        raise InvalidInput(
            f"a value is text (1 to {MAX_TEXT} characters, no NUL), a number or true/false",
            field=at,
        )
    return value


def _finite(value: Any, at: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise InvalidInput("a number is needed here", field=at)
    return float(value)


def _days(value: Any, at: str, *, required: bool) -> int | None:
    if value is None and not required:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_DAYS:
        raise InvalidInput(f"within_days is a whole number of days, 1 to {MAX_DAYS}", field=at)
    return value


def _event(raw: dict[str, Any], at: str) -> Condition:
    name = raw.get("event")
    if not isinstance(name, str) or not 1 <= len(name) <= 200 or "\x00" in name:
        raise InvalidInput("an event condition needs the event name", field=f"{at}.event")
    days = _days(raw.get("within_days"), f"{at}.within_days", required=False)
    count = raw.get("min_count", 1)
    if isinstance(count, bool) or not isinstance(count, int) or not 1 <= count <= MAX_COUNT:
        raise InvalidInput(f"min_count is 1 to {MAX_COUNT}", field=f"{at}.min_count")
    where = None
    if raw.get("where") is not None:
        spec, here = raw["where"], f"{at}.where"
        if not isinstance(spec, dict) or set(spec) - {"property", "op", "value"}:
            raise InvalidInput("where is {property, op, value}", field=here)
        prop = spec.get("property")
        if not isinstance(prop, str) or not PATH.match(prop):
            raise InvalidInput("where needs a property name", field=f"{here}.property")
        where = (prop, parse_test(spec, here))
    return Condition("event", name=name, within_days=days, min_count=count, where=where)


# --- facts and evaluation --------------------------------------------------------------


@dataclass
class Facts:
    """What conditions and features look at, for one person."""

    person: Person
    companies: list[Company] = field(default_factory=list)
    # Top-level trait name -> the last time any of its values was seen.
    trait_seen: dict[str, datetime] = field(default_factory=dict)
    # Condition.event_key -> (matching events, time of the latest)
    events: dict[str, tuple[int, datetime | None]] = field(default_factory=dict)
    # Track event name (or "(page)") -> count, all time, CRM events left out.
    event_counts: dict[str, int] = field(default_factory=dict)


def lookup(values: dict[str, Any] | None, path: str) -> Any:
    """A nested value by dotted path (``address.country``), or None."""
    current: Any = values or {}
    for part in path.split("."):
        if not isinstance(current, dict):
            return None
        current = current.get(part)
    return current


def field_value(person: Person, name: str) -> Any:
    """A CRM field of a person, or ``country``/``region`` from the traits."""
    traits = person.traits or {}
    if name == "country":
        return _first(lookup(traits, "country"), lookup(traits, "address.country"))
    if name == "region":
        candidates = ("region", "state", "address.region", "address.state")
        return _first(*(lookup(traits, c) for c in candidates))
    if name == "owner_id":
        return None if person.owner_id is None else str(person.owner_id)
    if name.startswith("custom."):
        return (person.custom or {}).get(name[7:])
    return getattr(person, name)


def _first(*values: Any) -> Any:
    return next((v for v in values if v not in (None, "")), None)


def evaluate(condition: Condition, facts: Facts, now: datetime) -> tuple[bool, datetime | None]:
    """Whether the condition holds, and when its evidence dates from (None: no time)."""
    person = facts.person
    if condition.kind == "recency":
        seen = person.last_seen
        if seen is None or condition.within_days is None:
            return False, None
        seen = as_utc(seen)
        return seen >= now - timedelta(days=condition.within_days), seen
    if condition.kind == "event":
        count, last = facts.events.get(condition.event_key, (0, None))
        return count >= condition.min_count, last
    test = condition.test
    assert test is not None
    if condition.kind == "company":
        values = [getattr(c, condition.name) for c in facts.companies]
        positive = NEGATED.get(test.op)
        if positive is not None:  # "industry ne Software": at no software company
            return not any(Comparison(positive, test.value).check(v) for v in values), None
        return any(test.check(v) for v in values), None
    if condition.kind == "field":
        return test.check(field_value(person, condition.name)), None
    if condition.kind == "computed":
        return test.check(lookup(person.computed, condition.name)), None
    top = condition.name.split(".")[0]
    return test.check(lookup(person.traits, condition.name)), facts.trait_seen.get(top)


def load_facts(
    session: Session,
    persons: Sequence[Person],
    conditions: Iterable[Condition],
    *,
    now: datetime,
    companies: bool = False,
    trait_times: bool = False,
    count_events: bool = False,
) -> dict[uuid.UUID, Facts]:
    """Facts for a chunk of persons (up to a thousand): a few queries, whatever the rules."""
    facts = {p.id: Facts(p) for p in persons}
    if not facts:
        return facts
    ids = list(facts)
    wanted = list(conditions)
    if companies or any(c.kind == "company" for c in wanted):
        _load_companies(session, facts, ids)
    names = {c.name.split(".")[0] for c in wanted if c.kind == "trait"}
    if trait_times and names:
        _load_trait_times(session, facts, ids, names)
    events = {c.event_key: c for c in wanted if c.kind == "event"}
    for key, condition in events.items():
        _load_event_condition(session, facts, ids, key, condition, now)
    if count_events:
        _load_event_counts(session, facts, ids)
    return facts


def _load_companies(session: Session, facts: dict[uuid.UUID, Facts], ids: list[uuid.UUID]) -> None:
    rows = session.execute(
        select(PersonCompany.person_id, Company)
        .join(Company, Company.id == PersonCompany.company_id)
        .where(PersonCompany.person_id.in_(ids), Company.merged_into.is_(None))
    )
    for person_id, company in rows:
        facts[person_id].companies.append(company)


def _load_trait_times(
    session: Session, facts: dict[uuid.UUID, Facts], ids: list[uuid.UUID], names: set[str]
) -> None:
    rows = session.execute(
        select(TraitValue.person_id, TraitValue.name, func.max(TraitValue.last_seen))
        .where(TraitValue.person_id.in_(ids), TraitValue.name.in_(sorted(names)))
        .group_by(TraitValue.person_id, TraitValue.name)
    )
    for person_id, name, seen in rows:
        if seen is not None:
            facts[person_id].trait_seen[name] = as_utc(seen)


def _load_event_condition(
    session: Session,
    facts: dict[uuid.UUID, Facts],
    ids: list[uuid.UUID],
    key: str,
    condition: Condition,
    now: datetime,
) -> None:
    where = [
        PersonEvent.person_id.in_(ids),
        Event.type == "track",
        Event.event == condition.name,
    ]
    if condition.within_days is not None:
        where.append(Event.timestamp >= now - timedelta(days=condition.within_days))
    joined = select(PersonEvent.person_id).join(Event, Event.seq == PersonEvent.seq)
    if condition.where is None:
        rows = session.execute(
            joined.add_columns(func.count(), func.max(Event.timestamp))
            .where(*where)
            .group_by(PersonEvent.person_id)
        )
        for person_id, count, last in rows:
            facts[person_id].events[key] = (int(count), as_utc(last) if last else None)
        return
    prop, test = condition.where
    found: dict[uuid.UUID, tuple[int, datetime | None]] = {}
    for person_id, at, payload in session.execute(
        joined.add_columns(Event.timestamp, Event.payload).where(*where)
    ):
        if not test.check(lookup((payload or {}).get("properties"), prop)):
            continue
        count, last = found.get(person_id, (0, None))
        at = as_utc(at)
        found[person_id] = (count + 1, at if last is None or at > last else last)
    for person_id, value in found.items():
        facts[person_id].events[key] = value


def _load_event_counts(
    session: Session, facts: dict[uuid.UUID, Facts], ids: list[uuid.UUID]
) -> None:
    crm = select(Source.id).where(Source.kind == CRM_SOURCE_KIND)
    rows = session.execute(
        select(PersonEvent.person_id, Event.type, Event.event, func.count())
        .join(Event, Event.seq == PersonEvent.seq)
        .where(
            PersonEvent.person_id.in_(ids),
            Event.type.in_(("track", "page", "screen")),
            Event.source_id.not_in(crm),
        )
        .group_by(PersonEvent.person_id, Event.type, Event.event)
    )
    for person_id, kind, name, count in rows:
        key = name if kind == "track" and name else f"({kind})"
        counts = facts[person_id].event_counts
        counts[key] = counts.get(key, 0) + int(count)
