"""Each report's exact numbers on the hand-built history of conftest.py, on both databases."""

from __future__ import annotations

import uuid
from dataclasses import astuple, replace
from decimal import Decimal
from typing import Any

import pytest
from sqlalchemy.orm import Session

from patron.core.errors import InvalidInput
from patron.crm.reports import service
from patron.crm.reports.service import ReportFilters
from tests.crm.reports.conftest import NOW, Sales, at

ALL = ReportFilters()
SINCE_2026 = ReportFilters(since=at(1, 1))


def D(value: str) -> Decimal:
    return Decimal(value)


def test_pipeline_by_stage_counts_open_deals_per_stage_and_currency(
    db: Session, sales: Sales
) -> None:
    rows = service.pipeline_by_stage(db, actor=sales.actors["admin"], filters=ALL)
    shape = [(r.pipeline, r.stage, r.currency, r.deals, r.amount, r.weighted_amount) for r in rows]
    assert shape == [
        ("Renewals", "Review", None, 0, D("0.0000"), D("0.00")),
        ("Renewals", "Signed", None, 0, D("0.0000"), D("0.00")),
        # fresh 1500 + pool 700, at 10%; undated 250.5 USD at 10%
        ("Sales", "Qualified", "EUR", 2, D("2200.0000"), D("220.00")),
        ("Sales", "Qualified", "USD", 1, D("250.5000"), D("25.05")),
        # proposal 2000 + bounced 800, at 50%
        ("Sales", "Proposal", "EUR", 2, D("2800.0000"), D("1400.00")),
        ("Sales", "Negotiation", None, 0, D("0.0000"), D("0.00")),
    ]
    assert [r.probability for r in rows] == [30, 90, 10, 10, 50, 80]
    assert rows[2].stage_id == sales.stages["Q"]
    assert rows[2].pipeline_id == sales.pipelines["Sales"]


def test_pipeline_by_stage_filters(db: Session, sales: Sales) -> None:
    admin = sales.actors["admin"]

    def counts(filters: ReportFilters) -> list[tuple[str, str | None, int]]:
        rows = service.pipeline_by_stage(db, actor=admin, filters=filters)
        return [(r.stage, r.currency, r.deals) for r in rows if r.deals]

    sales_only = ReportFilters(pipeline_id=sales.pipelines["Sales"])
    assert len(service.pipeline_by_stage(db, actor=admin, filters=sales_only)) == 4
    # Created in February: proposal, fresh, pool, undated (bounced is from January).
    february = ReportFilters(since=at(2, 1), until=at(3, 1))
    assert counts(february) == [
        ("Qualified", "EUR", 2),
        ("Qualified", "USD", 1),
        ("Proposal", "EUR", 1),
    ]
    alice = ReportFilters(owner_id=sales.actors["alice"].user_id)
    assert counts(alice) == [("Proposal", "EUR", 2)]
    assert counts(ReportFilters(currency="usd")) == [("Qualified", "USD", 1)]


def test_forecast_by_month_wraps_the_deal_forecast(db: Session, sales: Sales) -> None:
    admin = sales.actors["admin"]
    rows = service.forecast_by_month(db, actor=admin, filters=ALL)
    assert [astuple(r) for r in rows] == [
        # proposal 2000 at 50% + pool 700 at 10%
        ("2026-03", "EUR", 2, D("2700.0000"), D("1070.00")),
        # fresh 1500 at 10% + bounced 800 at 50%
        ("2026-04", "EUR", 2, D("2300.0000"), D("550.00")),
        (None, "USD", 1, D("250.5000"), D("25.05")),
    ]
    # The range is on the expected close date: 03-20 (proposal) and 04-02 (fresh).
    window = ReportFilters(since=at(3, 15), until=at(4, 10))
    rows = service.forecast_by_month(db, actor=admin, filters=window)
    assert [(r.month, r.deals, r.weighted_amount) for r in rows] == [
        ("2026-03", 1, D("1000.00")),
        ("2026-04", 1, D("150.00")),
    ]
    # A time after midnight starts on the next day: 03-10 (pool) is left out.
    late = ReportFilters(since=at(3, 10).replace(hour=1))
    rows = service.forecast_by_month(db, actor=admin, filters=late)
    assert [(r.month, r.deals) for r in rows] == [("2026-03", 1), ("2026-04", 2)]
    mine = ReportFilters(owner_id=sales.actors["bob"].user_id)
    rows = service.forecast_by_month(db, actor=admin, filters=mine)
    assert [(r.month, r.currency, r.deals) for r in rows] == [
        ("2026-04", "EUR", 1),
        (None, "USD", 1),
    ]


def test_win_rate_by_count_and_amount(db: Session, sales: Sales) -> None:
    admin = sales.actors["admin"]
    rows = service.win_rate(db, actor=admin, filters=ALL)
    assert [astuple(r) for r in rows] == [
        # won_big and last_year won, lost lost: 2 of 3; 2200 of 5200 by amount
        (None, None, "EUR", 2, 1, 0.6667, D("2200.0000"), D("3000.0000"), 0.4231),
        (None, None, "USD", 1, 0, 1.0, D("500.0000"), D("0.0000"), 1.0),
        # the renewal has no amount
        (None, None, None, 1, 0, 1.0, D("0.0000"), D("0.0000"), None),
    ]
    rows = service.win_rate(db, actor=admin, filters=SINCE_2026)
    assert [(r.currency, r.won, r.lost, r.win_rate, r.win_rate_by_amount) for r in rows] == [
        ("EUR", 1, 1, 0.5, 0.25),
        ("USD", 1, 0, 1.0, 1.0),
        (None, 1, 0, 1.0, None),
    ]


def test_win_rate_per_owner_and_pipeline(db: Session, sales: Sales) -> None:
    admin = sales.actors["admin"]
    alice, bob = sales.actors["alice"].user_id, sales.actors["bob"].user_id
    rows = service.win_rate(db, actor=admin, filters=SINCE_2026, group_by="owner")
    assert [(r.key, r.label, r.currency, r.won, r.lost) for r in rows] == [
        (alice, "Alice Rep", "EUR", 1, 1),
        (bob, "Bob Rep", "USD", 1, 0),
        (bob, "Bob Rep", None, 1, 0),
    ]
    rows = service.win_rate(db, actor=admin, filters=SINCE_2026, group_by="pipeline")
    assert [(r.label, r.currency, r.won, r.lost, r.win_rate) for r in rows] == [
        ("Renewals", None, 1, 0, 1.0),
        ("Sales", "EUR", 1, 1, 0.5),
        ("Sales", "USD", 1, 0, 1.0),
    ]
    assert rows[0].key == sales.pipelines["Renewals"]


def test_average_deal_size_of_won_deals(db: Session, sales: Sales) -> None:
    admin = sales.actors["admin"]
    rows = service.average_deal_size(db, actor=admin, filters=ALL)
    assert [astuple(r) for r in rows] == [
        (None, None, "EUR", 2, D("2200.0000"), D("1100.00")),  # won_big 1000, last_year 1200
        (None, None, "USD", 1, D("500.0000"), D("500.00")),
    ]
    rows = service.average_deal_size(db, actor=admin, filters=ALL, group_by="owner")
    assert [(r.label, r.currency, r.deals, r.average_amount) for r in rows] == [
        ("Alice Rep", "EUR", 2, D("1100.00")),
        ("Bob Rep", "USD", 1, D("500.00")),
    ]
    rows = service.average_deal_size(db, actor=admin, filters=SINCE_2026)
    assert [(r.currency, r.deals, r.average_amount) for r in rows] == [
        ("EUR", 1, D("1000.00")),
        ("USD", 1, D("500.00")),
    ]


def test_sales_cycle_average_and_median(db: Session, sales: Sales) -> None:
    admin = sales.actors["admin"]
    # won_big 30 days, quick_win 6, renewal 20, last_year 30: median of 6, 20, 30, 30
    rows = service.sales_cycle(db, actor=admin, filters=ALL)
    assert [astuple(r) for r in rows] == [(None, None, 4, 21.5, 25.0)]
    rows = service.sales_cycle(db, actor=admin, filters=SINCE_2026)
    assert [astuple(r)[2:] for r in rows] == [(3, 18.67, 20.0)]
    rows = service.sales_cycle(db, actor=admin, filters=ALL, group_by="owner")
    assert [(r.label, r.deals, r.average_days, r.median_days) for r in rows] == [
        ("Alice Rep", 2, 30.0, 30.0),
        ("Bob Rep", 2, 13.0, 13.0),
    ]
    rows = service.sales_cycle(db, actor=admin, filters=ALL, group_by="pipeline")
    assert [(r.label, r.deals, r.median_days) for r in rows] == [
        ("Renewals", 1, 20.0),
        ("Sales", 3, 30.0),
    ]
    nothing = ReportFilters(since=at(6, 1))
    assert service.sales_cycle(db, actor=admin, filters=nothing) == []


STAGE_COLUMNS = ("entered", "moved_on", "moved_back", "won", "lost", "still_open", "conversion")
TIME_COLUMNS = ("average_days", "median_days", "open_average_days", "open_median_days")


def _stage_table(rows: list[service.StageConversionRow]) -> list[tuple[Any, ...]]:
    columns = ("pipeline", "stage", *STAGE_COLUMNS, *TIME_COLUMNS)
    return [tuple(getattr(r, c) for c in columns) for r in rows]


def test_stage_conversion_and_time_in_stage(db: Session, sales: Sales) -> None:
    rows = service.stage_conversion(db, actor=sales.actors["admin"], filters=ALL, now=NOW)
    assert _stage_table(rows) == [
        ("Renewals", "Review", 1, 0, 0, 1, 0, 0, 1.0, 20.0, 20.0, None, None),
        ("Renewals", "Signed", 0, 0, 0, 0, 0, 0, None, None, None, None, None),
        # Qualified: won_big 10 days, lost 4, proposal 10, bounced 2 moved on; quick_win 6
        # and last_year 30 won there; fresh (19 days), pool (9), undated (14) still there.
        ("Sales", "Qualified", 9, 4, 0, 2, 0, 3, 0.6667, 10.33, 8.0, 14.0, 14.0),
        # Proposal: won_big moved on after 10 days, lost was lost after 20; proposal (18
        # days) and bounced (47, since 01-13) are still there.
        ("Sales", "Proposal", 4, 1, 0, 0, 1, 2, 0.25, 15.0, 15.0, 32.5, 32.5),
        # Negotiation: won_big won after 10 days; bounced went back to Proposal after 10.
        ("Sales", "Negotiation", 2, 0, 1, 1, 0, 0, 0.5, 10.0, 10.0, None, None),
    ]
    assert rows[2].stage_id == sales.stages["Q"]
    # A period that holds everything reads the stays another way (by date, measuring each
    # one, where all time reads counts and medians from indexes) and must say the same;
    # so must one pipeline's stages.
    ever = ReportFilters(since=at(1, 1, 2000))
    assert service.stage_conversion(db, actor=sales.actors["admin"], filters=ever, now=NOW) == rows
    for name, pipeline_id in sales.pipelines.items():
        whole, since_2000 = (
            ReportFilters(pipeline_id=pipeline_id),
            replace(ever, pipeline_id=pipeline_id),
        )
        found = service.stage_conversion(db, actor=sales.actors["admin"], filters=whole, now=NOW)
        assert found == [r for r in rows if r.pipeline == name]
        assert (
            service.stage_conversion(db, actor=sales.actors["admin"], filters=since_2000, now=NOW)
            == found
        )


def test_stage_conversion_filters(db: Session, sales: Sales) -> None:
    admin = sales.actors["admin"]
    only_sales = ReportFilters(since=at(1, 1), pipeline_id=sales.pipelines["Sales"])
    rows = service.stage_conversion(db, actor=admin, filters=only_sales, now=NOW)
    # last_year's stay began in 2025: Qualified keeps 8 stays, 5 of which went forward.
    assert [r.stage for r in rows] == ["Qualified", "Proposal", "Negotiation"]
    assert (rows[0].entered, rows[0].won, rows[0].conversion) == (8, 1, 0.625)
    assert (rows[0].average_days, rows[0].median_days) == (6.4, 6.0)
    # The next stage is found before the date filter: bounced's move from Negotiation back
    # to Proposal counts although its Proposal stay is outside the range.
    january = ReportFilters(since=at(1, 2), until=at(1, 4))
    rows = service.stage_conversion(db, actor=admin, filters=january, now=NOW)
    negotiation = next(r for r in rows if r.stage == "Negotiation")
    assert (negotiation.entered, negotiation.moved_back) == (1, 1)


def test_activities_per_owner(db: Session, sales: Sales) -> None:
    admin = sales.actors["admin"]
    alice, bob = sales.actors["alice"].user_id, sales.actors["bob"].user_id
    rows = service.activities_per_owner(db, actor=admin, filters=ALL)
    assert [astuple(r) for r in rows] == [
        (sales.actors["admin"].user_id, "Ada Admin", 0, 0, 1, 0, 0, 0, 1),
        (alice, "Alice Rep", 2, 1, 1, 1, 2, 1, 7),
        (bob, "Bob Rep", 1, 0, 0, 0, 1, 1, 2),
    ]
    # In 2026: Alice's email (2025-12-15) drops out; Bob's task was created in 2025 but
    # completed on 01-02, so it counts as completed only.
    rows = service.activities_per_owner(db, actor=admin, filters=SINCE_2026)
    assert [astuple(r)[1:] for r in rows] == [
        ("Ada Admin", 0, 0, 1, 0, 0, 0, 1),
        ("Alice Rep", 2, 1, 1, 0, 2, 1, 6),
        ("Bob Rep", 1, 0, 0, 0, 0, 1, 1),
    ]
    # February: Alice's note (02-02) and her task completed 02-05.
    february = ReportFilters(since=at(2, 1), until=at(3, 1))
    rows = service.activities_per_owner(db, actor=admin, filters=february)
    assert [astuple(r)[1:] for r in rows] == [("Alice Rep", 0, 0, 1, 0, 0, 1, 1)]
    by_bob = ReportFilters(owner_id=bob)
    assert [r.owner for r in service.activities_per_owner(db, actor=admin, filters=by_bob)] == [
        "Bob Rep"
    ]
    # Only the activities on that pipeline's deals (all of them are on Sales deals).
    renewals = ReportFilters(pipeline_id=sales.pipelines["Renewals"])
    assert service.activities_per_owner(db, actor=admin, filters=renewals) == []


def test_a_sales_rep_counts_only_their_deals(db: Session, sales: Sales) -> None:
    alice = sales.actors["alice"]
    stages = service.pipeline_by_stage(db, actor=alice, filters=ALL)
    assert [(r.stage, r.deals, r.amount) for r in stages if r.deals] == [
        ("Proposal", 2, D("2800.0000"))
    ]
    rates = service.win_rate(db, actor=alice, filters=ALL)
    assert [(r.currency, r.won, r.lost) for r in rates] == [("EUR", 2, 1)]
    assert [astuple(r)[2:] for r in service.sales_cycle(db, actor=alice, filters=ALL)] == [
        (2, 30.0, 30.0)
    ]
    conversion = service.stage_conversion(db, actor=alice, filters=ALL, now=NOW)
    qualified = next(r for r in conversion if r.stage == "Qualified")
    assert (qualified.entered, qualified.moved_on, qualified.won) == (5, 4, 1)
    forecast = service.forecast_by_month(db, actor=alice, filters=ALL)
    assert [(r.month, r.deals) for r in forecast] == [("2026-03", 1), ("2026-04", 1)]
    # Her own activities only: Bob's and Ada's are on deals she cannot see.
    assert [r.owner for r in service.activities_per_owner(db, actor=alice, filters=ALL)] == [
        "Alice Rep"
    ]
    # Bob's deals stay out even when asked for by owner.
    bob = ReportFilters(owner_id=sales.actors["bob"].user_id)
    assert service.win_rate(db, actor=alice, filters=bob) == []


def test_a_manager_counts_the_team_and_the_unassigned(db: Session, sales: Sales) -> None:
    maya = sales.actors["manager"]
    stages = service.pipeline_by_stage(db, actor=maya, filters=ALL)
    # Alice's proposal and bounced, and the unassigned pool deal.
    assert [(r.stage, r.deals) for r in stages if r.deals] == [("Qualified", 1), ("Proposal", 2)]
    owners = service.activities_per_owner(db, actor=maya, filters=ALL)
    assert [r.owner for r in owners] == ["Ada Admin", "Alice Rep"]


@pytest.mark.parametrize(
    ("filters", "field"),
    [
        (ReportFilters(since=at(2, 1), until=at(1, 1)), "until"),
        (ReportFilters(pipeline_id=uuid.uuid4()), "pipeline_id"),
        (ReportFilters(owner_id=uuid.uuid4()), "owner_id"),
        (ReportFilters(currency="EURO"), "currency"),
    ],
)
def test_bad_filters_name_the_field(
    db: Session, sales: Sales, filters: ReportFilters, field: str
) -> None:
    for report in (
        service.pipeline_by_stage,
        service.forecast_by_month,
        service.win_rate,
        service.average_deal_size,
        service.sales_cycle,
        service.stage_conversion,
        service.activities_per_owner,
    ):
        with pytest.raises(InvalidInput) as raised:
            report(db, actor=sales.actors["admin"], filters=filters)
        assert raised.value.field == field


def test_unknown_group_names_group_by(db: Session, sales: Sales) -> None:
    for report in (service.win_rate, service.average_deal_size, service.sales_cycle):
        with pytest.raises(InvalidInput) as raised:
            report(db, actor=sales.actors["admin"], filters=ALL, group_by="colour")
        assert raised.value.field == "group_by"
