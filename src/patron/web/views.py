"""HTML pages and the browser snippet."""

from __future__ import annotations

from fastapi import FastAPI

from patron.web import crm_pages, pages
from patron.web.snippet import router as snippet_router


def mount(app: FastAPI) -> None:
    """Mount the UI routes on ``app``."""
    pages.install(app)
    crm_pages.install(app)
    app.include_router(snippet_router)
