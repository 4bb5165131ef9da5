"""CSV imports of companies and deals: each row upserted through the same service functions
as the API, so it is checked, audited and turned into CRM events exactly like an API call.

The file reading, chunking, progress, rejection report and dry runs are the collect
domain's (:mod:`patron.collect.imports`); this module says what a row means. Each row is
written in a SAVEPOINT: a bad row is rolled back whole and reported with its line number,
the field at fault and the reason, and the rows around it land.

Natural keys (what makes a rerun update instead of duplicate):

* companies: the normalised ``domain``, the key the API already keeps unique. A row needs a
  domain; a company without one cannot be matched again, so a rerun would duplicate it.
* deals: the external id in ``--id-column`` (required), kept on the deal as
  ``external_id``. Deals have no natural key of their own (two deals with one company and
  one name are ordinary).

A key that appears on two lines of one file is refused on the second (the first wins):
records remember the import that last wrote them, so this holds across chunks without
keeping every key in memory. A row that would change nothing counts as ``duplicates`` and
writes nothing. Empty cells set nothing (they never clear a value).
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date
from decimal import Decimal, InvalidOperation
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from patron.auth.models import Role, User
from patron.auth.service import Actor, normalise_email
from patron.collect.imports import CUSTOM, DROP, ImportProgress, Record, RecordKind, Rejected
from patron.collect.models import Import
from patron.core.errors import InvalidInput, PatronError
from patron.crm import companies, deals
from patron.crm import fields as custom_fields
from patron.crm.access import DEAL, RECORD_TYPE, require_deal_writer, require_writer
from patron.crm.events import crm_source
from patron.crm.models import Company, Deal, Pipeline, Stage
from patron.identity.models import Identity, Person

COMPANY_TARGETS = ("name", "domain", "industry", "size", "owner", "tags")
DEAL_TARGETS = (
    "name",
    "amount",
    "currency",
    "stage",
    "status",
    "lost_reason",
    "expected_close_date",
    "owner",
    "person_email",
    "person_user_id",
    "company_domain",
)


# --- options ---------------------------------------------------------------------------


def _columns(
    session: Session,
    header: list[str],
    options: dict[str, Any],
    targets: tuple[str, ...],
    record_type: str,
) -> dict[str, str]:
    """Column -> target for every column imported. A mapped target must exist (custom
    fields included); an unmapped column whose name is a target maps to itself, the other
    unmapped columns are left out (and listed as ``ignored_columns``)."""
    mapping: dict[str, str] = options["mapping"]
    defined = custom_fields.fields_of(session, record_type)
    known = (*targets, *(f"{CUSTOM}{k}" for k in defined))
    for column, target in mapping.items():
        if target != DROP and target not in known:
            raise InvalidInput(
                f"mapping target {target!r} for column {column!r} is not valid: use one of "
                f"{', '.join(known)} or - (skip)",
                field="mapping",
            )
    columns = {c: t for c, t in mapping.items() if t != DROP}
    for name in header:
        if name and name not in mapping and name != options["id_column"] and name in known:
            columns[name] = name
    options["ignored_columns"] = [
        n
        for n in header
        if n and n not in columns and n not in mapping and n != options["id_column"]
    ]
    return columns


def _owner(session: Session, email: Any) -> uuid.UUID | None:
    if email in (None, ""):
        return None
    address = normalise_email(str(email))
    user_id = session.scalar(select(User.id).where(User.email == address, User.active))
    if user_id is None:
        raise InvalidInput(f"no active user with email {address}", field="owner")
    return user_id


def _actor(options: dict[str, Any]) -> Actor | None:
    """Who the rows are written as: the API caller (kept in the options by
    :mod:`patron.collect.imports_api`), or the system (the CLI) when None."""
    given = options.get("actor")
    if not given:
        return None
    return Actor(uuid.UUID(given["user_id"]), given["email"], Role(given["role"]))


def _check_companies(
    session: Session, header: list[str], options: dict[str, Any]
) -> dict[str, Any]:
    require_writer(_actor(options))
    if options["id_column"] is not None:
        raise InvalidInput(
            "companies are matched by their domain; map the domain column instead of --id-column",
            field="id_column",
        )
    columns = _columns(session, header, options, COMPANY_TARGETS, RECORD_TYPE)
    if "domain" not in columns.values():
        raise InvalidInput(
            "a company import needs a domain column (the key a rerun matches on): name it "
            "domain or map it with COLUMN=domain",
            field="mapping",
        )
    owner = _owner(session, options.get("owner"))
    return {**options, "columns": columns, "owner_id": str(owner) if owner else None}


def _check_deals(session: Session, header: list[str], options: dict[str, Any]) -> dict[str, Any]:
    require_deal_writer(_actor(options))
    if options["id_column"] is None:
        raise InvalidInput(
            "a deal import needs --id-column, the column of the deals' ids in the system "
            "the file comes from, so a rerun updates them instead of adding them again",
            field="id_column",
        )
    name = str(options.get("pipeline") or "").strip()
    if not name:
        raise InvalidInput("name the pipeline the deals are in", field="pipeline")
    pipeline = session.scalar(select(Pipeline).where(Pipeline.name == name))
    if pipeline is None:
        raise InvalidInput(f"no pipeline named {name!r}", field="pipeline")
    columns = _columns(session, header, options, DEAL_TARGETS, DEAL)
    owner = _owner(session, options.get("owner"))
    return {
        **options,
        "columns": columns,
        "pipeline_id": str(pipeline.id),
        "owner_id": str(owner) if owner else None,
    }


# --- rows ------------------------------------------------------------------------------


@dataclass
class _Plan:
    """What every row of one chunk shares: the options read once, the custom checker."""

    imp: Import
    actor: Actor | None
    columns: dict[str, str]
    owner_id: uuid.UUID | None
    custom: Callable[[dict[str, Any]], dict[str, Any]]


def _plan(session: Session, imp: Import, record_type: str) -> _Plan:
    owner = imp.options.get("owner_id")
    return _Plan(
        imp=imp,
        actor=_actor(imp.options),
        columns=imp.options["columns"],
        owner_id=uuid.UUID(owner) if owner else None,
        custom=custom_fields.values_checker(session, record_type),
    )


def _cells(row: dict[str, Any], plan: _Plan) -> tuple[dict[str, str], dict[str, Any]]:
    """The row's non-empty cells by target, and its custom values (checked, stored form)."""
    cells: dict[str, str] = {}
    custom: dict[str, Any] = {}
    for column, target in plan.columns.items():
        value = row.get(column)
        if value is None or not str(value).strip():
            continue
        if target.startswith(CUSTOM):
            custom[target.removeprefix(CUSTOM)] = value
        else:
            cells[target] = str(value).strip()
    return cells, plan.custom(custom) if custom else {}


def _write_chunk(
    session: Session,
    imp: Import,
    chunk: list[Record],
    stats: ImportProgress,
    upsert: Callable[[Session, _Plan, dict[str, Any]], str],
    record_type: str,
) -> list[Rejected]:
    plan = _plan(session, imp, record_type)
    rejections: list[Rejected] = []
    for record in chunk:
        if record.error is not None:
            rejections.append((record.line, *record.error))
            continue
        savepoint = session.begin_nested()
        try:
            outcome = upsert(session, plan, record.value)
        except PatronError as exc:
            savepoint.rollback()
            rejections.append((record.line, exc.code, _reason(exc)))
            continue
        savepoint.commit()
        if outcome == "created":
            stats.created += 1
        elif outcome == "updated":
            stats.updated += 1
        else:
            stats.duplicates += 1
        stats.accepted = stats.created + stats.updated
    return rejections


def _reason(exc: PatronError) -> str:
    if exc.field and not exc.message.startswith(exc.field):
        return f"{exc.field}: {exc.message}"
    return exc.message


def _differs(current: dict[str, Any], wanted: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in wanted.items() if current.get(k) != v}


# --- companies -------------------------------------------------------------------------


def _company_values(session: Session, plan: _Plan, row: dict[str, Any]) -> dict[str, Any]:
    cells, custom = _cells(row, plan)
    if "domain" not in cells:
        raise InvalidInput("the row has no domain", field="domain")
    values: dict[str, Any] = {"domain": companies.normalise_domain(cells["domain"])}
    for name in ("name", "industry"):
        if name in cells:
            values[name] = cells[name]
    if "size" in cells:
        try:
            values["size"] = int(cells["size"].replace(",", "").replace("_", ""))
        except ValueError:
            raise InvalidInput(
                f"size is a whole number, not {cells['size']!r}", field="size"
            ) from None
    if "tags" in cells:
        values["tags"] = [t.strip() for t in cells["tags"].split(";") if t.strip()]
    if "owner" in cells:
        values["owner_id"] = _owner(session, cells["owner"])
    if custom:
        values["custom"] = custom
    return values


def _upsert_company(session: Session, plan: _Plan, row: dict[str, Any]) -> str:
    values = _company_values(session, plan, row)
    found = session.scalar(select(Company).where(Company.domain == values["domain"]))
    if found is None:
        if "name" not in values:
            raise InvalidInput("a new company needs a name", field="name")
        if "owner_id" not in values and plan.owner_id is not None:
            values["owner_id"] = plan.owner_id
        company = companies.create_company(session, actor=plan.actor, values=values)
        company.import_id = plan.imp.id
        return "created"
    if found.import_id == plan.imp.id:
        raise InvalidInput(
            f"the domain {values['domain']} is on an earlier line of this file",
            code="duplicate_in_file",
            field="domain",
        )
    changes = _differs(
        {n: getattr(found, n) for n in ("name", "industry", "size", "owner_id", "tags")},
        {k: v for k, v in values.items() if k not in ("domain", "custom")},
    )
    custom = _differs(found.custom, values.get("custom", {}))
    if custom:
        changes["custom"] = custom
    found.import_id = plan.imp.id
    if not changes:
        return "unchanged"
    companies.update_company(session, actor=plan.actor, company_id=found.id, changes=changes)
    return "updated"


# --- deals -----------------------------------------------------------------------------


def _stage(session: Session, pipeline_id: uuid.UUID, name: str) -> uuid.UUID:
    stage_id = session.scalar(
        select(Stage.id).where(Stage.pipeline_id == pipeline_id, Stage.name == name)
    )
    if stage_id is not None:
        return stage_id
    other = session.scalar(
        select(Pipeline.name)
        .join(Stage, Stage.pipeline_id == Pipeline.id)
        .where(Stage.name == name)
    )
    where = f"is a stage of the pipeline {other!r}, not this one" if other else "is no stage"
    raise InvalidInput(f"{name!r} {where}", field="stage")


def _amount(text: str) -> Decimal:
    try:
        amount = Decimal(text.replace(",", "").replace("_", ""))
    except InvalidOperation:
        raise InvalidInput(f"amount is a number, not {text!r}", field="amount") from None
    return amount


def _close_date(text: str) -> date:
    try:
        return custom_fields.check_date(text)
    except ValueError as exc:
        raise InvalidInput(f"{exc}", field="expected_close_date") from exc


def _person(session: Session, kind: str, value: str) -> uuid.UUID:
    normal = value.strip().lower() if kind == "email" else value.strip()
    person_id = session.scalar(
        select(Identity.person_id).where(Identity.kind == kind, Identity.value == normal)
    )
    if person_id is None:
        raise InvalidInput(f"no person has the {kind} {value!r}", field=f"person_{kind}")
    person = session.get_one(Person, person_id)
    return person.merged_into or person.id


def _company(session: Session, domain: str) -> uuid.UUID:
    normal = companies.normalise_domain(domain)
    company_id = session.scalar(select(Company.id).where(Company.domain == normal))
    if company_id is None:
        raise InvalidInput(f"no company has the domain {normal}", field="company_domain")
    return company_id


def _deal_values(session: Session, plan: _Plan, row: dict[str, Any]) -> dict[str, Any]:
    cells, custom = _cells(row, plan)
    pipeline_id = uuid.UUID(plan.imp.options["pipeline_id"])
    values: dict[str, Any] = {"pipeline_id": pipeline_id}
    for name in ("name", "currency", "status", "lost_reason"):
        if name in cells:
            values[name] = cells[name].upper() if name == "currency" else cells[name]
    if "amount" in cells:
        values["amount"] = _amount(cells["amount"])
    if "stage" in cells:
        values["stage_id"] = _stage(session, pipeline_id, cells["stage"])
    if "expected_close_date" in cells:
        values["expected_close_date"] = _close_date(cells["expected_close_date"])
    if "owner" in cells:
        values["owner_id"] = _owner(session, cells["owner"])
    if "person_email" in cells:
        values["person_id"] = _person(session, "email", cells["person_email"])
    elif "person_user_id" in cells:
        values["person_id"] = _person(session, "user_id", cells["person_user_id"])
    if "company_domain" in cells:
        values["company_id"] = _company(session, cells["company_domain"])
    if custom:
        values["custom"] = custom
    return values


def _external_id(row: dict[str, Any], column: str) -> str:
    value = str(row.get(column) or "").strip()
    if not value:
        raise InvalidInput(
            f"the row has no record id in column {column!r}", code="missing_record_id", field=column
        )
    if len(value) > 200:
        raise InvalidInput("the record id is over 200 characters", field=column)
    return value


def _upsert_deal(session: Session, plan: _Plan, row: dict[str, Any]) -> str:
    external_id = _external_id(row, plan.imp.options["id_column"])
    values = _deal_values(session, plan, row)
    found = session.scalar(select(Deal).where(Deal.external_id == external_id))
    if found is None:
        return _create_deal(session, plan, external_id, values)
    if found.import_id == plan.imp.id:
        raise InvalidInput(
            f"the record id {external_id} is on an earlier line of this file",
            code="duplicate_in_file",
            field=plan.imp.options["id_column"],
        )
    current = {n: getattr(found, n) for n in deals.EDITABLE if n != "custom"}
    changes = _differs(current, {k: v for k, v in values.items() if k != "custom"})
    custom = _differs(found.custom, values.get("custom", {}))
    if custom:
        changes["custom"] = custom
    found.import_id = plan.imp.id
    if not changes:
        return "unchanged"
    deals.update_deal(session, actor=plan.actor, deal_id=found.id, changes=changes)
    return "updated"


def _create_deal(session: Session, plan: _Plan, external_id: str, values: dict[str, Any]) -> str:
    if "owner_id" not in values and plan.owner_id is not None:
        values["owner_id"] = plan.owner_id
    closing: dict[str, Any] = {k: values.pop(k) for k in ("status", "lost_reason") if k in values}
    if closing.get("status", "open") == "open" and "lost_reason" in closing:
        raise InvalidInput("only a lost deal has a lost_reason", field="lost_reason")
    deal = deals.create_deal(session, actor=plan.actor, values=values)
    deal.external_id, deal.import_id = external_id, plan.imp.id
    session.flush()
    if closing.get("status", "open") != "open":
        # Created open, then closed: the history and the events say what happened.
        deals.update_deal(session, actor=plan.actor, deal_id=deal.id, changes=closing)
    return "created"


def _write_companies(
    session: Session, imp: Import, chunk: list[Record], stats: ImportProgress
) -> list[Rejected]:
    return _write_chunk(session, imp, chunk, stats, _upsert_company, RECORD_TYPE)


def _write_deals(
    session: Session, imp: Import, chunk: list[Record], stats: ImportProgress
) -> list[Rejected]:
    return _write_chunk(session, imp, chunk, stats, _upsert_deal, DEAL)


KINDS = {
    "companies": RecordKind(
        source=crm_source, check=_check_companies, write_chunk=_write_companies
    ),
    "deals": RecordKind(source=crm_source, check=_check_deals, write_chunk=_write_deals),
}
