"""What every router shares: the runtime, a database session, list parameters."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated

import orjson
from fastapi import Depends, Query, Request, Response
from sqlalchemy.orm import Session

from patron.core.pagination import MAX_LIMIT, ListQuery
from patron.core.runtime import Runtime


async def get_runtime(request: Request) -> Runtime:
    # Dependencies that only read the request are async: FastAPI runs a sync one in the
    # thread pool, a round trip per dependency per request.
    runtime: Runtime = request.app.state.runtime
    return runtime


READ_METHODS = frozenset({"GET", "HEAD"})


def get_db(
    request: Request, runtime: Annotated[Runtime, Depends(get_runtime)]
) -> Iterator[Session]:
    """A session for one request; handlers commit explicitly before answering 2xx.

    GET and HEAD only read, so their sessions never take SQLite's write lock.
    """
    factory = runtime.readers if request.method in READ_METHODS else runtime.sessions
    with factory() as session:
        yield session


DB = Annotated[Session, Depends(get_db)]
RuntimeDep = Annotated[Runtime, Depends(get_runtime)]
Limit = Annotated[int, Query(ge=1, le=MAX_LIMIT, description="Items per page.")]
Cursor = Annotated[str | None, Query(description="next_cursor of the previous page.")]


def client_ip(request: Request) -> str | None:
    return request.client.host if request.client else None


def json_response(
    body: object, status_code: int = 200, headers: dict[str, str] | None = None
) -> Response:
    """A JSON response serialised with orjson (datetimes, UUIDs and all)."""
    return Response(
        orjson.dumps(body), status_code=status_code, media_type="application/json", headers=headers
    )


async def list_query(
    limit: Limit = 50,
    cursor: Cursor = None,
    filter: Annotated[
        list[str] | None,
        Query(
            description="FIELD:OP:VALUE, repeatable. OP: eq ne lt lte gt gte in contains has "
            "empty not_empty (`in` takes comma-separated values)."
        ),
    ] = None,
    sort: Annotated[
        str | None, Query(description="Fields separated by commas; `-` before one descends.")
    ] = None,
) -> ListQuery:
    """The parameters every list shares: filters, sort and a keyset page."""
    return ListQuery(filters=tuple(filter or ()), sort=sort, limit=limit, cursor=cursor)


ListParams = Annotated[ListQuery, Depends(list_query)]
