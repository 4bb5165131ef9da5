"""What a form definition may say: its fields and their mapping to traits and identifiers,
consent checkboxes, the success message or redirect, the lead owner rule.

Pure checks (the owner and team are looked up by the service); each problem is a 400
naming the input at fault, e.g. ``fields[2].options``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any
from urllib.parse import urlsplit

from patron.core.errors import InvalidInput
from patron.identity.identifiers import ANONYMOUS_ID, EMAIL, KIND_PATTERN, PHONE

TYPES = ("text", "email", "phone", "textarea", "number", "select", "checkbox", "hidden")
# Longest answer a field takes unless its definition says otherwise, and the most it may say.
DEFAULT_MAX_LENGTH = {
    "text": 500,
    "email": 320,
    "phone": 50,
    "textarea": 5000,
    "number": 50,
    "select": 200,
    "checkbox": 10,
    "hidden": 500,
}
MAX_LENGTH = 10_000
MAX_FIELDS = 50
MAX_OPTIONS = 200
MAX_CONSENTS = 10
KEY = re.compile(r"^[a-z][a-z0-9_]{0,59}$")
SLUG = re.compile(r"^[a-z0-9](?:[a-z0-9-]{0,78}[a-z0-9])?$")
TRAIT_PART = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,99}$")
UTM = ("utm_source", "utm_medium", "utm_campaign", "utm_term", "utm_content")
# The inputs every form page carries besides its fields (filled from the page), and the
# honeypot: invisible to people, so only bots fill it. Field keys may not take these names.
PAGE_URL, REFERRER, ANONYMOUS = "patron_page_url", "patron_referrer", "patron_anonymous_id"
HONEYPOT = "patron_website"
RESERVED_PREFIXES = ("patron_", "utm_")
# Which field types may carry each identifier (external id kinds: IDENTIFYING_TYPES).
IDENTIFIER_TYPES = {EMAIL: ("email", "hidden"), PHONE: ("phone", "hidden")}
IDENTIFYING_TYPES = ("text", "number", "hidden")
DEFAULT_SUCCESS = "Thank you! We received your answers."


def check_name(value: Any) -> str:
    name = str(value or "").strip()
    if not 1 <= len(name) <= 200:
        raise InvalidInput("a form needs a name of 1 to 200 characters", field="name")
    return name


def check_slug(value: Any) -> str:
    slug = str(value or "").strip().lower()
    if not SLUG.match(slug):
        raise InvalidInput(
            "slug is the form's public URL key: 1 to 80 lower-case letters, digits and "
            "hyphens, not starting or ending with a hyphen",
            field="slug",
        )
    return slug


def check_text(value: Any, field: str, limit: int, *, required: bool = False) -> str:
    text = str(value or "").strip()
    if len(text) > limit or (required and not text):
        size = f"1 to {limit}" if required else f"at most {limit}"
        raise InvalidInput(f"{field} has {size} characters", field=field)
    return text


def check_redirect(value: Any) -> str | None:
    """An absolute http or https URL (anything else could run script or leave the web)."""
    if value is None or value == "":
        return None
    url = str(value).strip()
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname or len(url) > 2000:
        raise InvalidInput(
            "redirect_url must be an absolute http or https URL", field="redirect_url"
        )
    return url


def check_fields(raw: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """The fields, checked and completed with defaults; at least one maps to an identifier."""
    if not 1 <= len(raw) <= MAX_FIELDS:
        raise InvalidInput(f"a form has 1 to {MAX_FIELDS} fields", field="fields")
    fields = [_field(spec, f"fields[{i}]") for i, spec in enumerate(raw)]
    _unique(fields, "key", "the key")
    _unique([f for f in fields if f["trait"]], "trait", "the trait")
    _unique([f for f in fields if f["identifier"]], "identifier", "the identifier")
    if not any(f["identifier"] for f in fields):
        raise InvalidInput(
            "a form needs at least one field mapped to an identifier (email, phone, user_id "
            "or an external id kind), or its submissions could not be told apart",
            field="fields",
        )
    return [{k: v for k, v in f.items() if k != "_path"} for f in fields]


def _unique(fields: list[dict[str, Any]], name: str, what: str) -> None:
    seen: set[Any] = set()
    for field in fields:
        if field[name] in seen:
            raise InvalidInput(
                f"two fields have {what} {field[name]!r}", field=f"{field['_path']}.{name}"
            )
        seen.add(field[name])


def _field(spec: Mapping[str, Any], path: str) -> dict[str, Any]:
    key = str(spec.get("key") or "")
    if not KEY.match(key) or key.startswith(RESERVED_PREFIXES):
        raise InvalidInput(
            "a field key has 1 to 60 lower-case letters, digits and underscores, starts "
            f"with a letter, and does not start with {' or '.join(RESERVED_PREFIXES)}",
            field=f"{path}.key",
        )
    kind = spec.get("type")
    if kind not in TYPES:
        raise InvalidInput(f"type must be one of {', '.join(TYPES)}", field=f"{path}.type")
    max_length = spec.get("max_length")
    max_length = DEFAULT_MAX_LENGTH[kind] if max_length is None else max_length
    if not isinstance(max_length, int) or not 1 <= max_length <= MAX_LENGTH:
        raise InvalidInput(f"max_length is 1 to {MAX_LENGTH}", field=f"{path}.max_length")
    field: dict[str, Any] = {
        "_path": path,
        "key": key,
        "label": check_text(spec.get("label") or key, f"{path}.label", 300),
        "type": kind,
        "required": bool(spec.get("required")),
        "max_length": max_length,
        "options": _options(spec.get("options") or [], kind, path),
        "placeholder": check_text(spec.get("placeholder"), f"{path}.placeholder", 300),
        "default": _default(spec.get("default"), kind, max_length, path),
    }
    field.update(_mapping(spec, kind, path))
    return field


def _options(options: Sequence[Any], kind: str, path: str) -> list[str]:
    if kind != "select":
        if options:
            raise InvalidInput("only select fields have options", field=f"{path}.options")
        return []
    cleaned = [str(o).strip() for o in options]
    if not 1 <= len(cleaned) <= MAX_OPTIONS or any(not o or len(o) > 200 for o in cleaned):
        raise InvalidInput(
            f"a select has 1 to {MAX_OPTIONS} options of 1 to 200 characters",
            field=f"{path}.options",
        )
    if len(set(cleaned)) != len(cleaned):
        raise InvalidInput("the options of a select differ", field=f"{path}.options")
    return cleaned


def _default(value: Any, kind: str, max_length: int, path: str) -> str | None:
    """Hidden fields may carry a value of their own (a campaign, a product)."""
    if value is None or value == "":
        return None
    if kind != "hidden":
        raise InvalidInput("only hidden fields have a default", field=f"{path}.default")
    text = str(value)
    if len(text) > max_length:
        raise InvalidInput("the default is longer than max_length", field=f"{path}.default")
    return text


def _mapping(spec: Mapping[str, Any], kind: str, path: str) -> dict[str, str | None]:
    trait, identifier = spec.get("trait") or None, spec.get("identifier") or None
    if trait and identifier:
        raise InvalidInput(
            "a field maps to a trait or to an identifier, not both", field=f"{path}.identifier"
        )
    if trait is not None:
        return {"trait": _trait(str(trait), path), "identifier": None}
    if identifier is not None:
        return {"trait": None, "identifier": _identifier(str(identifier), kind, path)}
    return {"trait": None, "identifier": None}


def _trait(name: str, path: str) -> str:
    parts = name.split(".")
    if len(parts) > 3 or not all(TRAIT_PART.match(p) for p in parts):
        raise InvalidInput(
            "a trait name is letters, digits and underscores (dots nest, up to 3 levels)",
            field=f"{path}.trait",
        )
    if parts[0] in (EMAIL, PHONE, "userId"):
        raise InvalidInput(
            f"map the {parts[0]} as an identifier, not a trait", field=f"{path}.trait"
        )
    return name


def _identifier(kind: str, field_type: str, path: str) -> str:
    if not KIND_PATTERN.match(kind) or kind == ANONYMOUS_ID:
        raise InvalidInput(
            "identifier is email, phone, user_id or an external id kind (lower-case letters, "
            "digits and underscores)",
            field=f"{path}.identifier",
        )
    allowed = IDENTIFIER_TYPES.get(kind, IDENTIFYING_TYPES)
    if field_type not in allowed:
        raise InvalidInput(
            f"a {kind} identifier needs a field of type {' or '.join(allowed)}",
            field=f"{path}.type",
        )
    return kind


def check_consents(raw: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Consent checkboxes: a purpose key (as the snippet's ``consent()`` categories), the
    text the visitor agrees to, and whether the form may be sent without it."""
    if len(raw) > MAX_CONSENTS:
        raise InvalidInput(f"a form asks for at most {MAX_CONSENTS} consents", field="consents")
    out: list[dict[str, Any]] = []
    for i, spec in enumerate(raw):
        purpose = str(spec.get("purpose") or "")
        if not KEY.match(purpose):
            raise InvalidInput(
                "a consent purpose has 1 to 60 lower-case letters, digits and underscores",
                field=f"consents[{i}].purpose",
            )
        if any(c["purpose"] == purpose for c in out):
            raise InvalidInput(
                f"two consents have the purpose {purpose!r}", field=f"consents[{i}].purpose"
            )
        label = check_text(spec.get("label"), f"consents[{i}].label", 1000, required=True)
        out.append({"purpose": purpose, "label": label, "required": bool(spec.get("required"))})
    return out
