"""Call history: filtered pages of calls (`GET /api/v1/calls`) and the same as CSV.

Both read within the caller's tenant only. Pages run newest first; `next` is the link to
the following page, its cursor an opaque token (a call id) so calls placed meanwhile
neither shift nor repeat the pages a client is walking through.
"""

from __future__ import annotations

import base64
import binascii
import itertools
from collections.abc import AsyncIterator, Iterator
from datetime import datetime
from typing import Annotated
from urllib.parse import urlencode

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import StreamingResponse

from click2call.api import fields
from click2call.api.access import audited, identify, in_store_thread, runtime_of
from click2call.api.schemas import ERRORS, CallList, CallOut
from click2call.auth import SECRET_PARAMS
from click2call.calls import CallState, Result
from click2call.calls_csv import csv_lines
from click2call.errors import InvalidInput, UnknownTenant
from click2call.search import Search, call_filter, parse_time
from click2call.store.history import CallFilter, History
from click2call.store_threads import StoreThreads

router = APIRouter(prefix="/api/v1", tags=["v1"])
_CURSOR_PREFIX = "c1:"


def _search_params(
    since: Annotated[str | None, Query(description="ISO 8601; created at or after")] = None,
    until: Annotated[str | None, Query(description="ISO 8601; created before")] = None,
    state: CallState | None = None,
    result: Result | None = None,
    extension: Annotated[str | None, Query(pattern=fields.EXTENSION)] = None,
    phone: Annotated[str | None, Query(pattern=fields.PHONE)] = None,
    destination: Annotated[str | None, Query(pattern=fields.PHONE)] = None,
    foreignid: Annotated[str | None, Query(pattern=fields.FOREIGNID)] = None,
) -> Search:
    return Search(
        since=_time("since", since),
        until=_time("until", until),
        state=state,
        result=result,
        extension=extension,
        phone=phone,
        destination=destination,
        foreignid=fields.foreignid(foreignid),
    )


def _time(field: str, value: str | None) -> datetime | None:
    if value is None or value == "":
        return None
    try:
        return parse_time(value)
    except ValueError:
        raise InvalidInput(field, "must be an ISO 8601 time, e.g. 2026-11-25T06:00:00Z") from None


def encode_cursor(before_id: int) -> str:
    return base64.urlsafe_b64encode(f"{_CURSOR_PREFIX}{before_id}".encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> int:
    try:
        text = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode("ascii")
    except (binascii.Error, UnicodeDecodeError, ValueError):
        text = ""
    number = text.removeprefix(_CURSOR_PREFIX)
    if not text.startswith(_CURSOR_PREFIX) or not number.isdigit() or len(number) > 18:
        raise InvalidInput("cursor", "is not a cursor this server gave out")
    return int(number)


async def _filter(
    request: Request, search: Search, tenant: str | None, endpoint: str
) -> CallFilter:
    with audited(request, endpoint, refusals_only=True) as decision:
        claimed = fields.name("tenant", tenant) if tenant else None
        decision.identity = identity = await identify(request, claimed)
        settings = runtime_of(request).settings.tenant(identity.tenant)
        if settings is None:
            # A key whose tenant left the configuration must not read every tenant's calls
            # (the filter's None means "all", for the operator's CLI).
            raise UnknownTenant(identity.tenant)
        return call_filter(search, settings)


def _next_link(request: Request, before_id: int | None) -> str | None:
    """The request's own link with the next cursor; keys and signatures are not echoed."""
    if before_id is None:
        return None
    params = [
        (k, v)
        for k, v in request.query_params.multi_items()
        if k not in SECRET_PARAMS and k != "cursor"
    ]
    params.append(("cursor", encode_cursor(before_id)))
    return f"{request.url.path}?{urlencode(params)}"


SearchParams = Annotated[Search, Depends(_search_params)]
TenantParam = Annotated[str | None, Query(pattern=fields.NAME)]


@router.get("/calls", response_model=CallList, responses=ERRORS)
async def list_calls(
    request: Request,
    search: SearchParams,
    tenant: TenantParam = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    cursor: Annotated[str | None, Query(max_length=64)] = None,
) -> CallList:
    """Newest first, within the caller's tenant; `next` links the following page."""
    where = await _filter(request, search, tenant, "v1.list")
    before = decode_cursor(cursor) if cursor else None
    history = History(runtime_of(request).store.engine)
    calls, after = await in_store_thread(request, history.page, where, limit, before)
    return CallList(calls=[CallOut.of(c) for c in calls], next=_next_link(request, after))


@router.get(
    "/calls.csv",
    response_class=StreamingResponse,
    responses={**ERRORS, 200: {"content": {"text/csv": {}}, "description": "One row per call"}},
)
async def export_calls(
    request: Request, search: SearchParams, tenant: TenantParam = None
) -> StreamingResponse:
    """The calls `GET /calls` would list (every page), as CSV with durations; streamed."""
    where = await _filter(request, search, tenant, "v1.export")
    lines = csv_lines(History(runtime_of(request).store.engine).all(where, EXPORT_ROWS))
    # The first rows are read before the reply starts: a database outage is a 503, not a
    # 200 cut short.
    first = await in_store_thread(request, _take, lines)
    return StreamingResponse(
        _in_threads(first, lines, runtime_of(request).store_threads),
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": 'attachment; filename="calls.csv"'},
    )


EXPORT_ROWS = 500  # calls read, and CSV lines made, per trip to a worker thread


def _take(lines: Iterator[str]) -> str:
    return "".join(itertools.islice(lines, EXPORT_ROWS))


async def _in_threads(
    first: str, lines: Iterator[str], threads: StoreThreads
) -> AsyncIterator[str]:
    """The CSV a page at a time, each read in a worker thread (Starlette would take a
    plain iterator there one line at a time)."""
    chunk = first
    while chunk:
        yield chunk
        chunk = await threads.run(_take, lines)
