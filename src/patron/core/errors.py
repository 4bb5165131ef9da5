"""Domain errors: each carries its HTTP status and a stable machine-readable code.

The JSON body is ``{"code": ..., "message": ...}`` (the keys Segment's official clients
read), plus ``field`` when one input is at fault and ``details`` when several are.
"""

from __future__ import annotations

from typing import Any


class PatronError(Exception):
    status = 400
    code = "bad_request"

    def __init__(
        self,
        message: str,
        *,
        code: str | None = None,
        field: str | None = None,
        details: Any = None,
        status: int | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code
        if status is not None:
            self.status = status
        self.field = field
        self.details = details

    def body(self) -> dict[str, Any]:
        out: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.field is not None:
            out["field"] = self.field
        if self.details is not None:
            out["details"] = self.details
        return out


class InvalidInput(PatronError):
    status = 400
    code = "invalid_input"


class Unauthenticated(PatronError):
    status = 401
    code = "unauthenticated"


class Forbidden(PatronError):
    status = 403
    code = "forbidden"


class NotFound(PatronError):
    status = 404
    code = "not_found"


class Conflict(PatronError):
    status = 409
    code = "conflict"


class PayloadTooLarge(PatronError):
    status = 413
    code = "payload_too_large"


class UnsupportedMediaType(PatronError):
    status = 415
    code = "unsupported_media_type"


class DatabaseBehind(RuntimeError):
    """The database schema is older than this code; run ``patron migrate``."""
