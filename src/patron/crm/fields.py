"""Custom fields: typed fields admins add to persons, companies, deals and tickets.

Values are checked by type on every write (API, import) and stored in the record's
``custom`` JSON in a form that compares right in SQL on both dialects: numbers as JSON
numbers, dates as ``YYYY-MM-DD``, datetimes as UTC ISO 8601 with microseconds, money as
``{"amount": number, "currency": code}``, a reference as the referenced record's id.
"""

from __future__ import annotations

import math
import re
import uuid
from collections.abc import Callable, Mapping
from datetime import UTC, date, datetime
from typing import Any
from urllib.parse import urlsplit

import phonenumbers
from email_validator import EmailNotValidError, validate_email
from sqlalchemy import SQLColumnExpression, select
from sqlalchemy.orm import Session

from patron.auth.service import Actor, record_audit
from patron.core.errors import Conflict, InvalidInput, NotFound
from patron.core.pagination import Field
from patron.crm.models import Company, CustomField, Deal
from patron.crm.tickets.models import Ticket
from patron.identity.models import Person

RECORD_TYPES = ("person", "company", "deal", "ticket")
FIELD_TYPES = (
    "text",
    "number",
    "money",
    "date",
    "datetime",
    "single_select",
    "multi_select",
    "boolean",
    "url",
    "email",
    "phone",
    "reference",
)
# Record types a reference can point at.
REFERENCE_TYPES = ("person", "company", "deal", "ticket")
KEY_PATTERN = re.compile(r"^[a-z][a-z0-9_]{0,59}$")
MAX_TEXT = 10_000
# Dates outside these years are typing mistakes (a close date in 9999), not plans.
MIN_YEAR, MAX_YEAR = 1900, 2200

# ISO 4217 active currency codes.
_CODES = """
AED AFN ALL AMD ANG AOA ARS AUD AWG AZN BAM BBD BDT BGN BHD BIF BMD BND BOB BRL BSD BTN
BWP BYN BZD CAD CDF CHF CLP CNY COP CRC CUP CVE CZK DJF DKK DOP DZD EGP ERN ETB EUR FJD
FKP GBP GEL GHS GIP GMD GNF GTQ GYD HKD HNL HTG HUF IDR ILS INR IQD IRR ISK JMD JOD JPY
KES KGS KHR KMF KPW KRW KWD KYD KZT LAK LBP LKR LRD LSL LYD MAD MDL MGA MKD MMK MNT MOP
MRU MUR MVR MWK MXN MYR MZN NAD NGN NIO NOK NPR NZD OMR PAB PEN PGK PHP PKR PLN PYG QAR
RON RSD RUB RWF SAR SBD SCR SDG SEK SGD SHP SLE SOS SRD SSP STN SVC SYP SZL THB TJS TMT
TND TOP TRY TTD TWD TZS UAH UGX USD UYU UZS VES VND VUV WST XAF XCD XCG XOF XPF YER ZAR
ZMW ZWG
"""
CURRENCIES = frozenset(_CODES.split())

# (record type, id) -> whether the acting user may see that record.
CanSee = Callable[[str, uuid.UUID], bool]


# --- definitions -----------------------------------------------------------------------


def create_field(
    session: Session,
    *,
    record_type: str,
    key: str,
    label: str,
    type: str,
    options: list[str] | None = None,
    reference_type: str | None = None,
    actor: Actor | None,
) -> CustomField:
    """Define a custom field on a record type."""
    if record_type not in RECORD_TYPES:
        raise InvalidInput(
            f"record_type must be one of {', '.join(RECORD_TYPES)}", field="record_type"
        )
    if not KEY_PATTERN.match(key):
        raise InvalidInput(
            "key is lower-case letters, digits and underscores, starting with a letter (1-60)",
            field="key",
        )
    if type not in FIELD_TYPES:
        raise InvalidInput(f"type must be one of {', '.join(FIELD_TYPES)}", field="type")
    choices = _check_options(type, options or [])
    if type == "reference":
        if reference_type not in REFERENCE_TYPES:
            raise InvalidInput(
                f"reference_type must be one of {', '.join(REFERENCE_TYPES)}",
                field="reference_type",
            )
    elif reference_type is not None:
        raise InvalidInput("reference_type is only for reference fields", field="reference_type")
    taken = select(CustomField.id).where(
        CustomField.record_type == record_type, CustomField.key == key
    )
    if session.scalar(taken) is not None:
        raise Conflict(f"{record_type} already has a custom field {key!r}", field="key")
    field = CustomField(
        record_type=record_type,
        key=key,
        label=(label or key)[:200],
        type=type,
        options=choices,
        reference_type=reference_type,
    )
    session.add(field)
    session.flush()
    record_audit(
        session,
        actor=actor,
        action="create",
        record_type="custom_field",
        record_id=str(field.id),
        after=describe(field),
    )
    return field


def _check_options(type: str, options: list[str]) -> list[str]:
    if type not in ("single_select", "multi_select"):
        if options:
            raise InvalidInput("options are only for select fields", field="options")
        return []
    cleaned = [o.strip() for o in options]
    if not cleaned or any(not o or len(o) > 200 for o in cleaned):
        raise InvalidInput("a select needs options of 1 to 200 characters", field="options")
    if len(set(cleaned)) != len(cleaned):
        raise InvalidInput("options must be distinct", field="options")
    return cleaned


def describe(field: CustomField) -> dict[str, Any]:
    return {
        "record_type": field.record_type,
        "key": field.key,
        "label": field.label,
        "type": field.type,
        "options": field.options,
        "reference_type": field.reference_type,
    }


def list_fields(session: Session, record_type: str | None = None) -> list[CustomField]:
    statement = select(CustomField).order_by(CustomField.record_type, CustomField.key)
    if record_type is not None:
        statement = statement.where(CustomField.record_type == record_type)
    return list(session.scalars(statement))


def fields_of(session: Session, record_type: str) -> dict[str, CustomField]:
    return {f.key: f for f in list_fields(session, record_type)}


def delete_field(session: Session, *, field_id: int, actor: Actor | None) -> None:
    """Remove a definition; stored values stay in the records' JSON but are no longer shown
    as a field (defining the key again brings them back)."""
    field = session.get(CustomField, field_id)
    if field is None:
        raise NotFound(f"no custom field {field_id}", field="field_id")
    before = describe(field)
    session.delete(field)
    record_audit(
        session,
        actor=actor,
        action="delete",
        record_type="custom_field",
        record_id=str(field_id),
        before=before,
    )


# --- values ----------------------------------------------------------------------------


def apply_values(
    current: Mapping[str, Any],
    changes: Mapping[str, Any],
    definitions: Mapping[str, CustomField],
    *,
    record_type: str,
    can_see: CanSee,
) -> dict[str, Any]:
    """``current`` with ``changes`` validated and applied; a null value clears a field."""
    out = dict(current)
    for key, value in changes.items():
        definition = definitions.get(key)
        if definition is None:
            raise InvalidInput(f"{record_type} has no custom field {key!r}", field=f"custom.{key}")
        if value is None:
            out.pop(key, None)
        else:
            out[key] = check_value(definition, value, can_see=can_see)
    return out


def check_value(field: CustomField, value: Any, *, can_see: CanSee) -> Any:
    """The stored form of ``value`` for ``field``, or a 400 naming ``custom.<key>``."""
    name = f"custom.{field.key}"
    try:
        if field.type == "reference":
            return _reference(field, value, can_see)
        return CHECKS[field.type](field, value)
    except (ValueError, TypeError) as exc:
        raise InvalidInput(f"{name}: {exc}", field=name) from exc


def _text(_field: CustomField, value: Any) -> str:
    if not isinstance(value, str):
        raise TypeError("expected text")
    if len(value) > MAX_TEXT:
        raise ValueError(f"text is at most {MAX_TEXT} characters")
    return value


def _number(_field: CustomField, value: Any) -> float | int:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError("expected a number")
    if isinstance(value, float) and not math.isfinite(value):
        raise ValueError("expected a finite number")
    return value


def _money(field: CustomField, value: Any) -> dict[str, Any]:
    if not isinstance(value, dict) or set(value) != {"amount", "currency"}:
        raise TypeError('expected {"amount": number, "currency": "ISO 4217 code"}')
    return {
        "amount": _number(field, value["amount"]),
        "currency": check_currency(value["currency"]),
    }


def check_currency(value: Any) -> str:
    """An ISO 4217 code (upper-cased), or ValueError."""
    if not isinstance(value, str) or value.upper() not in CURRENCIES:
        raise ValueError(f"{value!r} is not an ISO 4217 currency code")
    return value.upper()


def check_date(value: Any) -> date:
    if not isinstance(value, str):
        raise TypeError("expected a date as YYYY-MM-DD")
    parsed = date.fromisoformat(value)
    check_year(parsed.year)
    return parsed


def check_year(year: int) -> None:
    if not MIN_YEAR <= year <= MAX_YEAR:
        raise ValueError(f"the year must be between {MIN_YEAR} and {MAX_YEAR}")


def _date(_field: CustomField, value: Any) -> str:
    return check_date(value).isoformat()


def check_datetime(value: Any) -> datetime:
    """An ISO 8601 time in UTC (without an offset, UTC is assumed)."""
    if not isinstance(value, str):
        raise TypeError("expected an ISO 8601 date and time")
    parsed = datetime.fromisoformat(value)
    parsed = parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)
    check_year(parsed.year)
    return parsed


def _datetime(_field: CustomField, value: Any) -> str:
    # A fixed format (always with microseconds) so that text order is time order.
    return check_datetime(value).strftime("%Y-%m-%dT%H:%M:%S.%f+00:00")


def _single(field: CustomField, value: Any) -> str:
    if value not in field.options:
        raise ValueError(f"{value!r} is not one of {', '.join(field.options)}")
    return str(value)


def _multi(field: CustomField, value: Any) -> list[str]:
    if not isinstance(value, list):
        raise TypeError("expected a list of options")
    chosen = [_single(field, v) for v in value]
    return list(dict.fromkeys(chosen))


def _boolean(_field: CustomField, value: Any) -> bool:
    if not isinstance(value, bool):
        raise TypeError("expected true or false")
    return value


def _url(_field: CustomField, value: Any) -> str:
    text = _text(_field, value).strip()
    parts = urlsplit(text)
    if parts.scheme not in ("http", "https") or not parts.hostname or " " in text:
        raise ValueError("expected an http or https URL")
    return text


def _email(_field: CustomField, value: Any) -> str:
    try:
        return validate_email(_text(_field, value).strip(), check_deliverability=False).normalized
    except EmailNotValidError as exc:
        raise ValueError(f"not a valid email address: {exc}") from exc


def _phone(_field: CustomField, value: Any) -> str:
    text = _text(_field, value)
    try:
        number = phonenumbers.parse(text, None if text.strip().startswith("+") else "US")
    except phonenumbers.NumberParseException as exc:
        raise ValueError(f"not a phone number: {exc}") from exc
    if not phonenumbers.is_valid_number(number):
        raise ValueError("not a valid phone number")
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


def _reference(field: CustomField, value: Any, can_see: CanSee) -> str:
    name = f"custom.{field.key}"
    try:
        target = uuid.UUID(str(value))
    except ValueError as exc:
        raise InvalidInput(
            f"{name}: expected the id of a {field.reference_type}", field=name
        ) from exc
    if not can_see(str(field.reference_type), target):
        raise InvalidInput(f"{name}: no {field.reference_type} {target} you can see", field=name)
    return str(target)


CHECKS: dict[str, Callable[[CustomField, Any], Any]] = {
    "text": _text,
    "number": _number,
    "money": _money,
    "date": _date,
    "datetime": _datetime,
    "single_select": _single,
    "multi_select": _multi,
    "boolean": _boolean,
    "url": _url,
    "email": _email,
    "phone": _phone,
}


# --- filtering and sorting on custom fields ---------------------------------------------


def list_fields_for(
    custom: SQLColumnExpression[Any], definitions: Mapping[str, CustomField]
) -> dict[str, Field]:
    """``custom.<key>`` entries for the shared list helper, typed by each definition."""
    column: Any = custom
    out: dict[str, Field] = {}
    for key, definition in definitions.items():
        out[f"custom.{key}"] = _list_field(column, key, definition)
    return out


def _list_field(column: Any, key: str, definition: CustomField) -> Field:
    kind = definition.type
    if kind == "number":
        return Field(column[key].as_float(), "number", float)
    if kind == "money":
        return Field(column[(key, "amount")].as_float(), "number", float)
    if kind == "boolean":
        return Field(column[key].as_boolean(), "bool", _parse_bool)
    if kind == "multi_select":
        return Field(column[key], "list", sortable=False)
    if kind == "date":
        return Field(column[key].as_string(), "text", lambda v: check_date(v).isoformat())
    if kind == "datetime":
        return Field(column[key].as_string(), "text", lambda v: _datetime(definition, v))
    return Field(column[key].as_string(), "text")


def _parse_bool(value: str) -> bool:
    if value.lower() in ("true", "1", "yes"):
        return True
    if value.lower() in ("false", "0", "no"):
        return False
    raise ValueError("expected true or false")


# --- values from files and from the log ------------------------------------------------


def from_text(field: CustomField, raw: Any) -> Any:
    """A CSV cell (always text) as the JSON value its type expects: ``12.5`` a number,
    ``true`` a boolean, ``a;b`` a multi select, ``12.50 EUR`` money. Non-text passes."""
    if not isinstance(raw, str):
        return raw
    text = raw.strip()
    if field.type == "number":
        return _text_number(text)
    if field.type == "boolean":
        return _parse_bool(text)
    if field.type == "multi_select":
        return [part.strip() for part in re.split(r"[;,]", text) if part.strip()]
    if field.type == "money":
        amount, _, currency = text.partition(" ")
        return {"amount": _text_number(amount), "currency": currency.strip()}
    return raw


def _text_number(text: str) -> float | int:
    try:
        return int(text)
    except ValueError:
        return float(text)


def values_checker(
    session: Session, record_type: str = "person"
) -> Callable[[dict[str, Any]], dict[str, Any]]:
    """A checker of custom values read from files or the log, with the definitions of now.

    Raises :class:`InvalidInput` naming ``custom.<key>`` for the first bad value."""
    definitions = fields_of(session, record_type)

    def exists(kind: str, record_id: uuid.UUID) -> bool:
        model: Any = {"person": Person, "company": Company, "deal": Deal, "ticket": Ticket}[kind]
        return session.get(model, record_id) is not None

    def check(values: dict[str, Any]) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for key, raw in values.items():
            definition = definitions.get(key)
            if definition is None:
                raise InvalidInput(
                    f"{record_type} has no custom field {key!r}", field=f"custom.{key}"
                )
            try:
                value = from_text(definition, raw)
            except ValueError as exc:
                raise InvalidInput(f"custom.{key}: {exc}", field=f"custom.{key}") from exc
            out[key] = (
                None if value in (None, "") else check_value(definition, value, can_see=exists)
            )
        return out

    return check
