"""The reports API: ``GET /v1/reports/<name>`` answers JSON, ``/v1/reports/<name>.csv`` (or
``?format=csv``) the same rows as CSV. A new report is a service function and a handler
that passes its rows to :func:`report_response`."""

from __future__ import annotations

import csv
import io
import uuid
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Annotated, Any, Literal, TypeVar

from fastapi import APIRouter, Depends, Query, Request, Response
from pydantic import BaseModel

from patron.auth.deps import CurrentActor
from patron.core.web import DB, json_response
from patron.crm.reports import leads, service, support
from patron.crm.reports.schemas import (
    ActivityOwnerOut,
    DealSizeOut,
    ForecastMonthOut,
    LeadSourceOut,
    PipelineStageOut,
    ReportFiltersOut,
    ReportOut,
    Row,
    SalesCycleOut,
    StageConversionOut,
    TicketReportOut,
    WinRateOut,
)
from patron.crm.reports.service import ReportFilters

router = APIRouter(prefix="/v1/reports", tags=["reports"])
Handler = TypeVar("Handler", bound=Callable[..., Response])


async def report_filters(
    since: Annotated[
        datetime | None,
        Query(
            description="From this time (inclusive; a date is its midnight, UTC unless "
            "an offset is given), on the date the report is about."
        ),
    ] = None,
    until: Annotated[datetime | None, Query(description="Up to this time (exclusive).")] = None,
    pipeline_id: Annotated[uuid.UUID | None, Query(description="Only this pipeline.")] = None,
    owner_id: Annotated[uuid.UUID | None, Query(description="Only this owner's records.")] = None,
    currency: Annotated[str | None, Query(description="Only deals in this currency.")] = None,
) -> ReportFilters:
    """The parameters every report takes."""
    return ReportFilters(since, until, pipeline_id, owner_id, currency)


async def output_format(
    request: Request,
    format: Annotated[
        Literal["json", "csv"], Query(description="json, or csv (as the .csv path gives).")
    ] = "json",
) -> str:
    return "csv" if request.url.path.endswith(".csv") else format


Filters = Annotated[ReportFilters, Depends(report_filters)]
Format = Annotated[str, Depends(output_format)]
GroupBy = Annotated[str, Query(description="none (one overall row), owner or pipeline.")]


def rows_csv(row_model: type[Row], rows: Sequence[Row]) -> str:
    """A header of the row model's fields, then each row's JSON values (null empty), so the
    CSV says exactly what the JSON does."""
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(row_model.model_fields)
    for row in rows:
        values = row.model_dump(mode="json")
        writer.writerow("" if values[f] is None else values[f] for f in row_model.model_fields)
    return out.getvalue()


def report_response(
    name: str,
    row_model: type[Row],
    rows: Sequence[Any],
    fmt: str,
    filters: ReportFilters,
    group_by: str | None = None,
) -> Response:
    """One report's rows (service dataclasses) as ``{report, filters, rows}`` JSON or as CSV."""
    shaped = [row_model.model_validate(row) for row in rows]
    if fmt == "csv":
        return Response(
            rows_csv(row_model, shaped),
            media_type="text/csv; charset=utf-8",
            headers={"Content-Disposition": f'attachment; filename="{name}.csv"'},
        )
    echo = ReportFiltersOut(**vars(filters), group_by=group_by)
    body = {
        "report": name,
        "filters": echo.model_dump(mode="json"),
        "rows": [row.model_dump(mode="json") for row in shaped],
    }
    return json_response(body)


def report(path: str, model: type[BaseModel]) -> Callable[[Handler], Handler]:
    """Route ``path`` (JSON, documented by ``model``) and ``path.csv`` to one handler."""

    def register(handler: Handler) -> Handler:
        router.get(path, response_model=model)(handler)
        router.get(
            f"{path}.csv",
            response_class=Response,
            operation_id=f"{handler.__name__}_csv",
            responses={200: {"content": {"text/csv": {}}, "description": "The rows as CSV."}},
        )(handler)
        return handler

    return register


@report("/pipeline", ReportOut[PipelineStageOut])
def pipeline_report(db: DB, actor: CurrentActor, filters: Filters, fmt: Format) -> Response:
    """Open deals per pipeline, stage (in stage order) and currency: count, amount, weighted
    amount. The range is on the deals' creation."""
    rows = service.pipeline_by_stage(db, actor=actor, filters=filters)
    return report_response("pipeline", PipelineStageOut, rows, fmt, filters)


@report("/forecast", ReportOut[ForecastMonthOut])
def forecast_report(db: DB, actor: CurrentActor, filters: Filters, fmt: Format) -> Response:
    """Open deals by expected close month and currency: amount and weighted amount. The
    range is on the expected close date."""
    rows = service.forecast_by_month(db, actor=actor, filters=filters)
    return report_response("forecast", ForecastMonthOut, rows, fmt, filters)


@report("/win-rate", ReportOut[WinRateOut])
def win_rate_report(
    db: DB, actor: CurrentActor, filters: Filters, fmt: Format, group_by: GroupBy = "none"
) -> Response:
    """Won / (won + lost) of the deals closed in the range, by count and by amount, per
    currency; overall, per owner or per pipeline."""
    rows = service.win_rate(db, actor=actor, filters=filters, group_by=group_by)
    return report_response("win-rate", WinRateOut, rows, fmt, filters, group_by)


@report("/deal-size", ReportOut[DealSizeOut])
def deal_size_report(
    db: DB, actor: CurrentActor, filters: Filters, fmt: Format, group_by: GroupBy = "none"
) -> Response:
    """Average amount of the deals won in the range, per currency; overall, per owner or
    per pipeline."""
    rows = service.average_deal_size(db, actor=actor, filters=filters, group_by=group_by)
    return report_response("deal-size", DealSizeOut, rows, fmt, filters, group_by)


@report("/sales-cycle", ReportOut[SalesCycleOut])
def sales_cycle_report(
    db: DB, actor: CurrentActor, filters: Filters, fmt: Format, group_by: GroupBy = "none"
) -> Response:
    """Days from creation to won, average and median, of the deals won in the range;
    overall, per owner or per pipeline."""
    rows = service.sales_cycle(db, actor=actor, filters=filters, group_by=group_by)
    return report_response("sales-cycle", SalesCycleOut, rows, fmt, filters, group_by)


@report("/stage-conversion", ReportOut[StageConversionOut])
def stage_conversion_report(db: DB, actor: CurrentActor, filters: Filters, fmt: Format) -> Response:
    """Per stage: stays that began in the range and what became of them (moved on, moved
    back, won, lost, still open), conversion, and time in stage (where deals stall)."""
    rows = service.stage_conversion(db, actor=actor, filters=filters)
    return report_response("stage-conversion", StageConversionOut, rows, fmt, filters)


@report("/activities", ReportOut[ActivityOwnerOut])
def activities_report(db: DB, actor: CurrentActor, filters: Filters, fmt: Format) -> Response:
    """Per owner: calls, meetings, notes, emails and tasks created in the range, and tasks
    completed in it."""
    rows = service.activities_per_owner(db, actor=actor, filters=filters)
    return report_response("activities", ActivityOwnerOut, rows, fmt, filters)


@report("/leads", ReportOut[LeadSourceOut])
def leads_report(
    db: DB,
    actor: CurrentActor,
    filters: Filters,
    fmt: Format,
    group_by: Annotated[str, Query(description="source, medium or campaign.")] = "source",
) -> Response:
    """Leads first seen in the range per first-touch source (or medium, or campaign), and
    how far they got: qualified, opportunity, customer; conversion to customer."""
    rows = leads.leads_by_source(db, actor=actor, filters=filters, group_by=group_by)
    return report_response("leads", LeadSourceOut, rows, fmt, filters, group_by)


@report("/tickets", ReportOut[TicketReportOut])
def tickets_report(
    db: DB,
    actor: CurrentActor,
    filters: Filters,
    fmt: Format,
    group_by: Annotated[
        str, Query(description="none, priority, channel, assignee or month.")
    ] = "none",
) -> Response:
    """Tickets created in the range: volume, open and solved, first-response and resolution
    times (business and calendar minutes), SLA targets met and breached, compliance."""
    rows = support.ticket_report(db, actor=actor, filters=filters, group_by=group_by)
    return report_response("tickets", TicketReportOut, rows, fmt, filters, group_by)
