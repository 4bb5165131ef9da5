"""The FastAPI application factory: mounts every domain's router and the error handlers."""

from __future__ import annotations

import logging
import threading
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Request, Response
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException

from patron import __version__
from patron.auth.api import router as auth_router
from patron.collect.api import router as collect_router
from patron.collect.imports_api import router as imports_router
from patron.collect.tracking import TrackingCors
from patron.collect.tracking import router as tracking_router
from patron.core.errors import PatronError
from patron.core.runtime import Runtime
from patron.core.web import json_response
from patron.crm.api import router as crm_router
from patron.crm.forms.api import router as forms_router
from patron.crm.forms.views import router as public_forms_router
from patron.crm.leads.api import router as leads_router
from patron.crm.reports.api import router as reports_router
from patron.crm.tickets.api import router as tickets_router
from patron.crm.workflows.api import router as workflows_router
from patron.identity.api import router as identity_router
from patron.pipeline import Processor
from patron.profiles.api import router as profiles_router

log = logging.getLogger("patron")


def create_app(runtime: Runtime, *, process: bool | None = None) -> FastAPI:
    """Build the application on ``runtime``; ``process`` runs the processing loop inside it."""
    run_processor = runtime.settings.process_in_server if process is None else process

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        stop = threading.Event()
        thread = None
        if run_processor:
            processor = Processor(
                runtime.sessions,
                batch_size=runtime.settings.process_batch_size,
                settings=runtime.settings,
                readers=runtime.readers,
            )
            idle = runtime.settings.process_idle_ms / 1000
            thread = threading.Thread(
                target=processor.run, args=(stop, idle), name="patron-processor", daemon=True
            )
            thread.start()
        yield
        stop.set()
        if thread is not None:
            thread.join(timeout=10)

    app = FastAPI(
        title="Patron",
        version=__version__,
        description="Customer data platform with the CRM built in.",
        lifespan=lifespan,
    )
    app.state.runtime = runtime
    _install_error_handlers(app)
    app.add_middleware(TrackingCors)
    app.include_router(tracking_router)
    app.include_router(auth_router)
    app.include_router(collect_router)
    app.include_router(imports_router)
    app.include_router(identity_router)
    app.include_router(profiles_router)
    app.include_router(crm_router)
    app.include_router(tickets_router)
    app.include_router(reports_router)
    app.include_router(workflows_router)
    app.include_router(forms_router)
    app.include_router(public_forms_router)
    app.include_router(leads_router)
    _mount_web(app)

    @app.get("/healthz", include_in_schema=False)
    def health() -> dict[str, str]:
        return {"status": "ok"}

    return app


def _mount_web(app: FastAPI) -> None:
    # The UI and the browser snippet are optional mounts: the API works without them.
    from patron.web.views import mount

    mount(app)


def _install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(PatronError)
    async def domain_error(_request: Request, exc: PatronError) -> Response:
        return json_response(exc.body(), status_code=exc.status)

    @app.exception_handler(RequestValidationError)
    async def validation_error(_request: Request, exc: RequestValidationError) -> Response:
        errors = exc.errors()
        # The location starts with where the value was (body, query...): drop only that,
        # so that a field itself called "body" is still named.
        details = [
            {"field": ".".join(str(p) for p in _within(e["loc"])), "message": e["msg"]}
            for e in errors
        ]
        first = details[0] if details else {"field": None, "message": "invalid request"}
        body = {
            "code": "validation_error",
            "message": f"{first['field']}: {first['message']}"
            if first["field"]
            else first["message"],
            "field": first["field"],
            "details": details,
        }
        return json_response(body, status_code=422)

    @app.exception_handler(HTTPException)
    async def http_error(_request: Request, exc: HTTPException) -> Response:
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
        return json_response(
            {"code": code, "message": str(exc.detail)},
            status_code=exc.status_code,
            headers=getattr(exc, "headers", None),
        )

    @app.exception_handler(Exception)
    async def unexpected(_request: Request, exc: Exception) -> Response:
        log.exception("unhandled error", exc_info=exc)
        return json_response(
            {"code": "internal_error", "message": "an unexpected error occurred; it was logged"},
            status_code=500,
        )


def _within(loc: Sequence[Any]) -> Sequence[Any]:
    return loc[1:] if loc and loc[0] == "body" else loc
