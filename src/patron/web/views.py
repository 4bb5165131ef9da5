"""HTML pages and the browser snippet."""

from __future__ import annotations

from fastapi import FastAPI


def mount(app: FastAPI) -> None:
    """Mount the UI routes on ``app``."""
