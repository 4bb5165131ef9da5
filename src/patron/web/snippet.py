"""``GET /patron.js``: the browser snippet, read once at import and served from memory."""

from __future__ import annotations

import hashlib
from pathlib import Path

from fastapi import APIRouter, Request, Response

from patron import __version__

SCRIPT = (
    # Kept outside static/ so it is served only here, with its version filled in.
    (Path(__file__).parent / "patron.js")
    .read_text(encoding="utf-8")
    .replace("__PATRON_VERSION__", __version__)
    .encode()
)
ETAG = '"' + hashlib.sha256(SCRIPT).hexdigest()[:32] + '"'
# Short enough that a new release reaches every site within minutes, long enough that a
# visitor's browser does not ask again on every page.
HEADERS = {"Cache-Control": "public, max-age=300", "ETag": ETAG}

router = APIRouter(tags=["snippet"])


@router.get("/patron.js", include_in_schema=False)
def patron_js(request: Request) -> Response:
    """The snippet; a 304 when the browser already holds this version."""
    if request.headers.get("if-none-match") == ETAG:
        return Response(status_code=304, headers=HEADERS)
    return Response(SCRIPT, media_type="application/javascript; charset=utf-8", headers=HEADERS)
