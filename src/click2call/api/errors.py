"""Where errors become HTTP: one status per error class, in the shape of each endpoint.

Errors raised by an endpoint, by the body limit while it reads, and by the router itself
(405, FastAPI's parameter checks) all end here or in `failure_reply`, so every refusal
answers in the shape its caller parses and is audited as refused.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from fastapi import Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from click2call.api.access import record_refusal
from click2call.api.replies import DIAL_PATH, EXTERNAL_PATH, dial_text, external_json
from click2call.errors import Click2CallError, InvalidInput, RateLimited

# The failures every call endpoint documents in OpenAPI, whatever shape it answers in.
DOCUMENTED_FAILURES = (
    (400, "Malformed input; the error names the field"),
    (401, "Missing, invalid or expired credential"),
    (403, "Credential of another tenant, or refused by the tenant's policy"),
    (404, "Unknown tenant (client) or call"),
    (413, "Request body over the server's max_body_bytes"),
    (429, "Over a limit, named in the error; Retry-After when waiting frees it"),
    (503, "The PBX, the SIP engine or the call database cannot take the call now"),
)


class HttpRefusal(Click2CallError):
    """A refusal by the HTTP machinery (wrong method, unknown path), in our error tree."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.error_id = f"http_{status}"


def headers_for(error: Click2CallError) -> dict[str, str]:
    if isinstance(error, RateLimited) and error.retry_after is not None:
        return {"Retry-After": str(math.ceil(error.retry_after))}
    return {}


def v1_error(error: Click2CallError, headers: dict[str, str] | None = None) -> JSONResponse:
    body: dict[str, object] = {"id": error.error_id, "message": error.message}
    if isinstance(error, InvalidInput):
        body["field"] = error.field
    if isinstance(error, RateLimited):
        body["limit"] = error.limit
    if error.call_id is not None:
        body["call_id"] = error.call_id
        body["uniqueid"] = error.uniqueid
    return JSONResponse(
        {"error": body}, status_code=error.status, headers=headers or headers_for(error)
    )


def failure_reply(
    path: str, error: Click2CallError, src: str = "", headers: dict[str, str] | None = None
) -> Response:
    """`error` in the shape of the endpoint at `path`: dial.php's text, dial_external.php's
    JSON, else the v1 JSON error. `src` is dial_external.php's agent number, when known."""
    headers = headers or headers_for(error)
    if path == DIAL_PATH:
        unique = error.call_id if error.call_id is not None else ""
        return dial_text(False, unique, error.message, error.status, headers)
    if path == EXTERNAL_PATH:
        body = {"src": src, "uniqueid": error.uniqueid} if error.uniqueid is not None else {}
        body |= {"status": "error", "error": error.message}
        return external_json(body, error.status, headers)
    return v1_error(error, headers)


async def handle_click2call_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, Click2CallError)
    return failure_reply(request.url.path, exc)


async def handle_http_error(request: Request, exc: Exception) -> Response:
    """Starlette's own errors (unknown path, wrong method) in the endpoint's shape."""
    assert isinstance(exc, StarletteHTTPException)
    # FastAPI turns an error raised while it reads a model parameter's body (the body
    # limit's 413) into "400 error parsing the body"; the error itself is the answer.
    cause = exc.__cause__
    error = (
        cause
        if isinstance(cause, Click2CallError)
        else HttpRefusal(exc.status_code, str(exc.detail))
    )
    record_refusal(request, error)
    return failure_reply(request.url.path, error, headers=dict(exc.headers or {}))


async def handle_validation_error(request: Request, exc: Exception) -> Response:
    """FastAPI's parameter errors, reported like ours: 400 naming the first bad field."""
    assert isinstance(exc, RequestValidationError)
    error = invalid_input(exc.errors())
    record_refusal(request, error)
    return failure_reply(request.url.path, error)


def invalid_input(errors: Sequence[Any]) -> InvalidInput:
    """pydantic's or FastAPI's error list as our InvalidInput naming the first bad field."""
    first = errors[0] if errors else {"loc": ("body",), "msg": "invalid request"}
    field = ".".join(str(part) for part in first["loc"] if part not in ("body", "query", "path"))
    message = str(first["msg"]).removeprefix("Value error, ")
    return InvalidInput(field or "body", message)
