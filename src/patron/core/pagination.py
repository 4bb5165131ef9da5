"""Keyset pagination: opaque cursors that encode the sort key of the last row seen."""

from __future__ import annotations

import base64
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

import orjson

from patron.core.errors import InvalidInput

T = TypeVar("T")
MAX_LIMIT = 500


@dataclass
class Page(Generic[T]):
    items: list[T]
    total: int
    next_cursor: str | None = None


def encode_cursor(values: list[Any]) -> str:
    return base64.urlsafe_b64encode(orjson.dumps(values)).decode().rstrip("=")


def decode_cursor(cursor: str) -> list[Any]:
    """Decode a cursor from :func:`encode_cursor`; anything else is a 400 naming ``cursor``."""
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        values = orjson.loads(base64.urlsafe_b64decode(padded.encode()))
    except (ValueError, orjson.JSONDecodeError):
        values = None
    if not isinstance(values, list):
        raise InvalidInput("cursor is not one this API issued", field="cursor")
    return values


def decode_int_cursor(cursor: str | None) -> int | None:
    """The single integer key of a cursor over an integer-keyed list, or None for page one."""
    if cursor is None:
        return None
    values = decode_cursor(cursor)
    if len(values) != 1 or not isinstance(values[0], int) or isinstance(values[0], bool):
        raise InvalidInput("cursor is not one this API issued", field="cursor")
    return values[0]
