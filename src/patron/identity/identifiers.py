"""Identifiers: which values of a message identify a person, normalised, and the block list.

Pure functions and small value types; the resolver loads the rules and blocked values from
the database and hands them in.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, NamedTuple

import phonenumbers
from email_validator import EmailNotValidError, validate_email

USER_ID, ANONYMOUS_ID, EMAIL, PHONE = "user_id", "anonymous_id", "email", "phone"

# kind: (limit per person, priority); a lower priority number wins. Admins can change both.
BUILTIN_RULES: dict[str, tuple[int | None, int]] = {
    USER_ID: (1, 10),
    EMAIL: (5, 20),
    PHONE: (5, 30),
    ANONYMOUS_ID: (None, 90),
}
# Kinds nobody declared (an external id type seen for the first time) behave like this.
DEFAULT_RULE: tuple[int | None, int] = (None, 50)

# Values that clients send when they have nothing, or that many people share. They never
# link two records (compared case-insensitively after normalisation).
BUILTIN_BLOCKED = frozenset(
    {
        "",
        "null",
        "nil",
        "undefined",
        "none",
        "nan",
        "n/a",
        "anonymous",
        "guest",
        "unknown",
        "0",
        "-1",
        "[object object]",
        "true",
        "false",
        "test@test.com",
        "test@example.com",
        "a@a.com",
        "email@email.com",
    }
)
BUILTIN_BLOCKED_EMAILS = re.compile(
    r"^(no-?reply|do-?not-?reply|mailer-daemon|postmaster)@", re.IGNORECASE
)
KIND_PATTERN = re.compile(r"^[a-z][a-z0-9_]{0,59}$")


class Identifier(NamedTuple):
    """A normalised identifier value of one kind (a tuple: the resolver makes, hashes and
    compares millions of them, and a frozen dataclass costs several times more at each)."""

    kind: str
    value: str

    def key(self) -> str:
        return f"{self.kind}:{self.value}"


@dataclass(frozen=True)
class Rule:
    kind: str
    max_per_person: int | None
    priority: int
    trait: str | None = None


@dataclass(frozen=True)
class BlockEntry:
    kind: str | None
    pattern: str
    is_regex: bool


class BlockList:
    """The built-in placeholders plus the values an admin (or the super-node guard) blocked."""

    def __init__(self, entries: Iterable[BlockEntry] = ()) -> None:
        self._exact: set[tuple[str | None, str]] = set()
        self._patterns: list[tuple[str | None, re.Pattern[str]]] = []
        for entry in entries:
            self.add(entry)

    def add(self, entry: BlockEntry) -> None:
        if entry.is_regex:
            self._patterns.append((entry.kind, re.compile(entry.pattern, re.IGNORECASE)))
        else:
            self._exact.add((entry.kind, entry.pattern.strip().lower()))

    def blocks(self, identifier: Identifier) -> bool:
        kind, value = identifier
        lowered = value.lower()
        if lowered in BUILTIN_BLOCKED:
            return True
        exact = self._exact
        if exact and ((None, lowered) in exact or (kind, lowered) in exact):
            return True
        if kind == EMAIL and BUILTIN_BLOCKED_EMAILS.search(lowered):
            return True
        for only, pattern in self._patterns:
            if (only is None or only == kind) and pattern.search(value):
                return True
        return False


@dataclass(frozen=True)
class Normaliser:
    """Turns raw values into the canonical form that identities are stored and matched in."""

    default_region: str = "US"
    email_provider_rules: bool = False

    def normalise(self, kind: str, raw: Any) -> str | None:
        """The canonical value, or None when it is not a usable identifier of this kind."""
        if isinstance(raw, bool) or not isinstance(raw, str | int | float):
            return None
        text = str(raw).strip()
        if not text or len(text) > 320:
            return None
        if kind == EMAIL:
            return self.email(text)
        if kind == PHONE:
            return self.phone(text)
        return text

    def email(self, text: str) -> str | None:
        return _email(text, self.email_provider_rules)

    def phone(self, text: str) -> str | None:
        return _phone(text, self.default_region)


# The same addresses and numbers come back in message after message, and validating one
# costs more than resolving the message it came in: remember the recent answers.
NORMALISED_CACHE = 50_000


@lru_cache(maxsize=NORMALISED_CACHE)
def _email(text: str, provider_rules: bool) -> str | None:
    try:
        # Special-use domains (.test, .local, ...) are refused: nobody can be reached there.
        parsed = validate_email(text, check_deliverability=False)
    except EmailNotValidError:
        return None
    local, domain = parsed.local_part.lower(), parsed.domain.lower()
    if provider_rules and domain in ("gmail.com", "googlemail.com"):
        # Gmail ignores dots and anything after a plus in the local part.
        local, domain = local.split("+", 1)[0].replace(".", ""), "gmail.com"
    return f"{local}@{domain}"


@lru_cache(maxsize=NORMALISED_CACHE)
def _phone(text: str, region: str) -> str | None:
    try:
        number = phonenumbers.parse(text, region)
    except phonenumbers.NumberParseException:
        return None
    if not phonenumbers.is_valid_number(number):
        return None
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


def _traits_of(message_type: str, payload: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    """The trait objects of a message that describe the person (group traits are the company's)."""
    found: list[Mapping[str, Any]] = []
    if message_type == "identify" and isinstance(payload.get("traits"), dict):
        found.append(payload["traits"])
    context = payload.get("context")
    if isinstance(context, dict) and isinstance(context.get("traits"), dict):
        found.append(context["traits"])
    return found


def _external_ids(payload: Mapping[str, Any]) -> list[tuple[str, Any]]:
    context = payload.get("context")
    items = context.get("externalIds") if isinstance(context, dict) else None
    out: list[tuple[str, Any]] = []
    for item in items if isinstance(items, list) else []:
        if not isinstance(item, dict) or item.get("collection") not in (None, "users"):
            continue
        kind = str(item.get("type", "")).strip().lower().replace("-", "_").replace(" ", "_")
        if KIND_PATTERN.match(kind) and kind not in (USER_ID, ANONYMOUS_ID):
            out.append((kind, item.get("id")))
    return out


def extract(
    message_type: str,
    payload: Mapping[str, Any],
    *,
    rules: Mapping[str, Rule],
    normaliser: Normaliser,
    blocked: BlockList,
    memo: dict[tuple[str, str], Identifier | None] | None = None,
) -> list[Identifier]:
    """Every usable identifier of a message, normalised, blocked values left out.

    ``memo`` remembers what each raw text value of a kind came to, for callers that extract
    from many messages under one normaliser and block list (and clear it when either
    changes): the same ids come back in message after message."""
    raw: list[tuple[str, Any]] = [
        (USER_ID, payload.get("userId")),
        (ANONYMOUS_ID, payload.get("anonymousId")),
    ]
    for traits in _traits_of(message_type, payload):
        raw += [(EMAIL, traits.get("email")), (PHONE, traits.get("phone"))]
        raw += [(r.kind, traits.get(r.trait)) for r in rules.values() if r.trait]
    raw += _external_ids(payload)
    seen: dict[Identifier, None] = {}
    for kind, value in raw:
        if value is None:
            continue
        if memo is not None and type(value) is str:
            key = (kind, value)
            if key in memo:
                identifier = memo[key]
            else:
                identifier = memo[key] = _usable(kind, value, normaliser, blocked)
        else:
            identifier = _usable(kind, value, normaliser, blocked)
        if identifier is not None:
            seen[identifier] = None
    return list(seen)


def _usable(kind: str, value: Any, normaliser: Normaliser, blocked: BlockList) -> Identifier | None:
    normal = normaliser.normalise(kind, value)
    if normal is None:
        return None
    identifier = Identifier(kind, normal)
    return None if blocked.blocks(identifier) else identifier


def alias_previous(
    payload: Mapping[str, Any], *, normaliser: Normaliser, blocked: BlockList
) -> str | None:
    """The previousId of an alias, normalised, unless it is blocked."""
    value = normaliser.normalise(USER_ID, payload.get("previousId"))
    if value is None or blocked.blocks(Identifier(USER_ID, value)):
        return None
    return value
