"""Where errors become HTTP: one status per error class, in the shape of each endpoint."""

from __future__ import annotations

import math

from fastapi import Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from click2call.errors import Click2CallError, InvalidInput, RateLimited

# The failures every call endpoint documents in OpenAPI, whatever shape it answers in.
DOCUMENTED_FAILURES = (
    (400, "Malformed input; the error names the field"),
    (401, "Missing, invalid or expired credential"),
    (403, "Credential of another tenant, or refused by the tenant's policy"),
    (404, "Unknown tenant (client) or call"),
    (429, "Over a limit, named in the error; Retry-After when waiting frees it"),
    (503, "The PBX or SIP engine cannot take the call now"),
)


def headers_for(error: Click2CallError) -> dict[str, str]:
    if isinstance(error, RateLimited) and error.retry_after is not None:
        return {"Retry-After": str(math.ceil(error.retry_after))}
    return {}


def v1_error(error: Click2CallError) -> JSONResponse:
    body: dict[str, object] = {"id": error.error_id, "message": error.message}
    if isinstance(error, InvalidInput):
        body["field"] = error.field
    if isinstance(error, RateLimited):
        body["limit"] = error.limit
    if error.call_id is not None:
        body["call_id"] = error.call_id
        body["uniqueid"] = error.uniqueid
    return JSONResponse({"error": body}, status_code=error.status, headers=headers_for(error))


async def handle_click2call_error(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, Click2CallError)
    return v1_error(exc)


async def handle_http_error(_request: Request, exc: Exception) -> JSONResponse:
    """Starlette's own errors (unparsable body, unknown path, wrong method) in our shape."""
    assert isinstance(exc, StarletteHTTPException)
    body = {"error": {"id": f"http_{exc.status_code}", "message": str(exc.detail)}}
    return JSONResponse(body, status_code=exc.status_code, headers=exc.headers)


async def handle_validation_error(_request: Request, exc: Exception) -> JSONResponse:
    """FastAPI's schema errors, reported like ours: 400 naming the first bad field."""
    assert isinstance(exc, RequestValidationError)
    first = exc.errors()[0] if exc.errors() else {"loc": ("body",), "msg": "invalid request"}
    field = ".".join(str(part) for part in first["loc"] if part not in ("body", "query", "path"))
    message = str(first["msg"]).removeprefix("Value error, ")
    return v1_error(InvalidInput(field or "body", message))
