"""The condition language: what it accepts, what it refuses (naming the part), what holds."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from patron.core.errors import InvalidInput
from patron.crm.leads.conditions import (
    Comparison,
    Facts,
    describe_all,
    evaluate,
    parse_conditions,
    stored_conditions,
)
from patron.crm.models import Company
from patron.identity.models import Person

NOW = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)


def person(**fields: Any) -> Person:
    values: dict[str, Any] = {
        "id": uuid.uuid4(),
        "traits": {},
        "computed": {},
        "tags": [],
        "custom": {},
        "owner_id": None,
        "lifecycle_stage": None,
        "lead_status": None,
        "last_seen": None,
    }
    values.update(fields)
    return Person(**values)


def holds(condition: dict[str, Any], facts: Facts) -> bool:
    parsed = parse_conditions([condition])[0]
    return evaluate(parsed, facts, NOW)[0]


@pytest.mark.parametrize(
    ("raw", "field"),
    [
        ("country", "conditions"),
        ([], "conditions"),
        (["x"], "conditions[0]"),
        ([{"kind": "vibe"}], "conditions[0].kind"),
        ([{"kind": "trait", "name": "plan", "op": "like", "value": "x"}], "conditions[0].op"),
        ([{"kind": "trait", "op": "eq", "value": "x"}], "conditions[0].name"),
        (
            [{"kind": "trait", "name": "a", "op": "eq", "value": "x", "extra": 1}],
            "conditions[0].extra",
        ),
        ([{"kind": "trait", "name": "a", "op": "gt", "value": "ten"}], "conditions[0].value"),
        ([{"kind": "trait", "name": "a", "op": "in", "value": []}], "conditions[0].value"),
        ([{"kind": "trait", "name": "a", "op": "between", "value": [5, 1]}], "conditions[0].value"),
        ([{"kind": "trait", "name": "a", "op": "exists", "value": 1}], "conditions[0].value"),
        ([{"kind": "trait", "name": "a", "op": "eq", "value": "x\x00"}], "conditions[0].value"),
        ([{"kind": "trait", "name": "a", "op": "eq", "value": {"x": 1}}], "conditions[0].value"),
        ([{"kind": "field", "name": "mood", "op": "eq", "value": "x"}], "conditions[0].name"),
        (
            [{"kind": "field", "name": "lifecycle_stage", "op": "eq", "value": "prospect"}],
            "conditions[0].value",
        ),
        (
            [{"kind": "field", "name": "owner_id", "op": "eq", "value": "bob"}],
            "conditions[0].value",
        ),
        ([{"kind": "company", "name": "size", "op": "contains", "value": 5}], "conditions[0].op"),
        ([{"kind": "event", "event": "", "min_count": 1}], "conditions[0].event"),
        ([{"kind": "event", "event": "A", "within_days": 0}], "conditions[0].within_days"),
        ([{"kind": "event", "event": "A", "min_count": "3"}], "conditions[0].min_count"),
        (
            [{"kind": "event", "event": "A", "where": {"property": "p", "op": "??"}}],
            "conditions[0].where.op",
        ),
        ([{"kind": "recency"}], "conditions[0].within_days"),
        ([{"kind": "recency", "within_days": 99999}], "conditions[0].within_days"),
        ([{"kind": "trait", "name": "a", "op": "eq", "value": 1}] * 21, "conditions"),
    ],
)
def test_malformed_conditions_name_the_part_at_fault(raw: Any, field: str) -> None:
    with pytest.raises(InvalidInput) as caught:
        parse_conditions(raw)
    assert caught.value.field == field


def test_conditions_round_trip_and_read_as_words() -> None:
    raw = [
        {"kind": "field", "name": "country", "op": "in", "value": ["DE", "FR"]},
        {"kind": "company", "name": "size", "op": "between", "value": [50, 500]},
        {
            "kind": "event",
            "event": "Pricing Viewed",
            "within_days": 30,
            "min_count": 3,
            "where": {"property": "plan", "op": "eq", "value": "pro"},
        },
        {"kind": "recency", "within_days": 7},
    ]
    parsed = parse_conditions(raw)
    assert stored_conditions([c.as_json() for c in parsed]) == parsed
    assert describe_all(parsed) == (
        "country in DE, FR and company.size between 50 and 500 and 'Pricing Viewed' at least "
        "3 times in 30 days with plan = pro and seen in the last 7 days"
    )


def test_operators_compare_text_loosely_and_numbers_as_numbers() -> None:
    assert Comparison("eq", "de").check("DE")
    assert Comparison("eq", 5.0).check("5")
    assert not Comparison("eq", "5").check("five")
    assert Comparison("in", ["pro", "team"]).check("Team")
    assert Comparison("contains", "acme").check("ACME Corp")
    assert Comparison("gte", 10.0).check("12")
    assert not Comparison("gt", 10.0).check("lots")
    assert Comparison("between", [1.0, 3.0]).check(3)
    assert Comparison("exists").check("x")
    assert not Comparison("exists").check("")
    assert not Comparison("exists").check(None)
    # Negations hold for a missing value; lists match when any element does.
    assert Comparison("ne", "x").check(None)
    assert Comparison("not_in", ["a"]).check(["b", "c"])
    assert not Comparison("not_in", ["a"]).check(["b", "a"])
    assert Comparison("eq", "vip").check(["new", "vip"])


def test_traits_fields_companies_events_and_recency_are_evaluated() -> None:
    owner = uuid.uuid4()
    someone = person(
        traits={"plan": "pro", "address": {"country": "DE", "state": "BY"}, "seats": "12"},
        computed={"lifetime_value": 250.0},
        lifecycle_stage="lead",
        tags=["vip"],
        custom={"tier": "gold"},
        owner_id=owner,
        last_seen=NOW - timedelta(days=3),
    )
    facts = Facts(
        someone,
        companies=[
            Company(name="Acme", industry="Software", size=120),
            Company(name="Side gig", industry=None, size=2),
        ],
    )
    event = {"kind": "event", "event": "Pricing Viewed", "within_days": 30, "min_count": 2}
    key = parse_conditions([event])[0].event_key
    facts.events[key] = (2, NOW - timedelta(days=1))
    assert holds({"kind": "trait", "name": "address.country", "op": "eq", "value": "de"}, facts)
    assert holds({"kind": "field", "name": "country", "op": "in", "value": ["DE"]}, facts)
    assert holds({"kind": "field", "name": "region", "op": "eq", "value": "BY"}, facts)
    assert holds({"kind": "trait", "name": "seats", "op": "gt", "value": 10}, facts)
    assert holds({"kind": "computed", "name": "lifetime_value", "op": "gte", "value": 100}, facts)
    assert holds({"kind": "field", "name": "lifecycle_stage", "op": "eq", "value": "lead"}, facts)
    assert holds({"kind": "field", "name": "tags", "op": "eq", "value": "VIP"}, facts)
    assert holds({"kind": "field", "name": "custom.tier", "op": "eq", "value": "gold"}, facts)
    assert holds({"kind": "field", "name": "owner_id", "op": "eq", "value": str(owner)}, facts)
    assert holds({"kind": "company", "name": "size", "op": "between", "value": [50, 500]}, facts)
    assert holds({"kind": "company", "name": "industry", "op": "eq", "value": "software"}, facts)
    # "not at a software company" is false when any company is one.
    assert not holds(
        {"kind": "company", "name": "industry", "op": "ne", "value": "Software"}, facts
    )
    assert holds(event, facts)
    assert not holds({**event, "min_count": 3}, facts)
    assert holds({"kind": "recency", "within_days": 7}, facts)
    assert not holds({"kind": "recency", "within_days": 2}, facts)
    nobody = Facts(person())
    assert not holds(event, nobody)
    assert not holds({"kind": "recency", "within_days": 7}, nobody)
    assert holds({"kind": "company", "name": "industry", "op": "not_exists"}, nobody)
