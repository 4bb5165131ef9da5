"""The reports' response shapes: every report is ``{report, filters, rows}``, and its CSV
has one column per field of its row, in this order."""

from __future__ import annotations

import uuid
from decimal import Decimal
from typing import Annotated, Generic, TypeVar

from pydantic import BaseModel, ConfigDict, Field

from patron.crm.schemas import When

Days = Annotated[float | None, Field(description="Days, to 2 decimals.")]


class Row(BaseModel):
    model_config = ConfigDict(from_attributes=True)


RowT = TypeVar("RowT", bound=Row)


class ReportFiltersOut(BaseModel):
    since: When | None
    until: When | None
    pipeline_id: uuid.UUID | None
    owner_id: uuid.UUID | None
    currency: str | None
    group_by: str | None = None


class ReportOut(BaseModel, Generic[RowT]):
    report: str
    filters: ReportFiltersOut
    rows: list[RowT]


class PipelineStageOut(Row):
    pipeline_id: uuid.UUID
    pipeline: str
    stage_id: uuid.UUID
    stage: str
    position: int
    probability: int = Field(description="The stage's win probability, in percent.")
    currency: str | None
    deals: int = Field(description="Open deals in the stage.")
    amount: Decimal
    weighted_amount: Decimal = Field(description="Sum of amount times the stage's probability.")


class ForecastMonthOut(Row):
    month: str | None = Field(description="Expected close month (YYYY-MM); null: no date set.")
    currency: str | None
    deals: int
    amount: Decimal
    weighted_amount: Decimal


class WinRateOut(Row):
    key: uuid.UUID | None = Field(description="The owner or pipeline id (null: all, or none).")
    label: str | None = Field(description="The owner's name or email, or the pipeline's name.")
    currency: str | None
    won: int
    lost: int
    win_rate: float | None = Field(description="won / (won + lost), by count.")
    won_amount: Decimal
    lost_amount: Decimal
    win_rate_by_amount: float | None = Field(description="won / (won + lost), by amount.")


class DealSizeOut(Row):
    key: uuid.UUID | None
    label: str | None
    currency: str
    deals: int = Field(description="Won deals with an amount.")
    amount: Decimal
    average_amount: Decimal


class SalesCycleOut(Row):
    key: uuid.UUID | None
    label: str | None
    deals: int = Field(description="Deals won in the range.")
    average_days: Days
    median_days: Days


class StageConversionOut(Row):
    pipeline_id: uuid.UUID
    pipeline: str
    stage_id: uuid.UUID
    stage: str
    position: int
    entered: int = Field(description="Stays in the stage that began in the range.")
    moved_on: int = Field(description="Left for a later stage of the pipeline.")
    moved_back: int = Field(description="Left for an earlier stage or another pipeline.")
    won: int = Field(description="Won from this stage.")
    lost: int = Field(description="Lost from this stage.")
    still_open: int = Field(description="Open deals still in the stage.")
    conversion: float | None = Field(description="(moved_on + won) / entered.")
    average_days: float | None = Field(description="Mean time in stage of the ended stays.")
    median_days: float | None = Field(description="Median time in stage of the ended stays.")
    open_average_days: float | None = Field(description="Mean age of the stays still open.")
    open_median_days: float | None = Field(description="Median age of the stays still open.")


class ActivityOwnerOut(Row):
    owner_id: uuid.UUID | None
    owner: str | None = Field(description="The owner's name or email.")
    calls: int
    meetings: int
    notes: int
    emails: int
    tasks_created: int
    tasks_completed: int = Field(description="Tasks completed in the range.")
    total: int = Field(description="Activities in the range (completions not counted again).")


class LeadSourceOut(Row):
    source: str = Field(
        description="The first touch's utm_source (or medium, or campaign), else the Patron "
        "source of the message that made the person; (unknown) when neither is known."
    )
    leads: int = Field(description="Leads first seen in the range.")
    marketing_qualified: int = Field(description="Of those, at marketing qualified or further.")
    sales_qualified: int = Field(description="At sales qualified or further.")
    opportunities: int = Field(description="At opportunity or further.")
    customers: int = Field(description="Customers or evangelists, or with a won deal.")
    with_won_deal: int = Field(description="With a won deal.")
    conversion: float | None = Field(description="customers / leads, to 4 decimals.")


Minutes = Annotated[float | None, Field(description="Minutes, to 1 decimal.")]


class TicketReportOut(Row):
    key: str | None = Field(description="The group: priority, channel, assignee id, month.")
    label: str | None = Field(description="The group's name (the assignee's name or email).")
    created: int = Field(description="Tickets created in the range (the volume).")
    open: int = Field(description="Of those, still new, open or pending.")
    solved: int = Field(description="Solved or closed.")
    responded: int = Field(description="First answered by staff.")
    first_response_avg_minutes: Minutes
    first_response_median_minutes: Minutes
    first_response_calendar_avg_minutes: Minutes
    resolution_avg_minutes: Minutes
    resolution_median_minutes: Minutes
    resolution_calendar_avg_minutes: Minutes
    first_response_met: int
    first_response_breached: int
    first_response_compliance: float | None = Field(description="met / (met + breached).")
    resolution_met: int
    resolution_breached: int
    resolution_compliance: float | None = Field(description="met / (met + breached).")
