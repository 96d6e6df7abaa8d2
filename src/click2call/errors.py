"""Errors a caller can act on, each with a stable machine id and a sentence.

    Click2CallError
    ├── InvalidInput(field, reason)     400  a request field is malformed
    ├── UnknownTenant(name)             404  no tenant by that name
    ├── CallNotFound(key)               404  no call with that id / uniqueid
    ├── Unauthorized(reason)            401  no credential, or a bad one
    ├── Forbidden(reason)               403  a good credential, not for this
    ├── Rejected(rule)                  403  the tenant's policy refuses the call
    ├── BodyTooLarge(max_bytes)         413  the request body is over max_body_bytes
    ├── RateLimited(limit, retry_after) 429  names the setting; retry_after None: a slot
    │                                         frees only when a call ends
    ├── EngineUnavailable(reason)       503  the engine could not accept the order
    └── DatabaseUnavailable(reason)     503  the call database cannot be reached now

The HTTP layer maps them to statuses in one place (`api/errors.py`).
"""

from __future__ import annotations

import math


class Click2CallError(Exception):
    error_id = "error"
    status = 500

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message
        # Set when the failed request left a call row: the caller looks the call up.
        self.call_id: int | None = None
        self.uniqueid: str | None = None

    def left_call(self, call_id: int, uniqueid: str) -> None:
        self.call_id, self.uniqueid = call_id, uniqueid


class InvalidInput(Click2CallError):
    error_id = "invalid_input"
    status = 400

    def __init__(self, field: str, reason: str) -> None:
        super().__init__(f"invalid {field}: {reason}")
        self.field = field
        self.reason = reason


class UnknownTenant(Click2CallError):
    error_id = "unknown_tenant"
    status = 404

    def __init__(self, name: str) -> None:
        super().__init__(f"unknown client '{name}'")
        self.name = name


class CallNotFound(Click2CallError):
    error_id = "call_not_found"
    status = 404

    def __init__(self, key: str) -> None:
        super().__init__(f"no call with id '{key}'")


class Unauthorized(Click2CallError):
    error_id = "unauthorized"
    status = 401


class Forbidden(Click2CallError):
    error_id = "forbidden"
    status = 403


class Rejected(Click2CallError):
    error_id = "rejected"
    status = 403


class BodyTooLarge(Click2CallError):
    error_id = "body_too_large"
    status = 413

    def __init__(self, max_bytes: int) -> None:
        super().__init__(f"request body over {max_bytes} bytes (max_body_bytes)")
        self.max_bytes = max_bytes


class RateLimited(Click2CallError):
    error_id = "rate_limited"
    status = 429

    def __init__(self, limit: str, what: str, retry_after: float | None) -> None:
        when = (
            f"retry after {math.ceil(retry_after)} s"
            if retry_after is not None
            else "a slot frees only when one of those calls ends"
        )
        super().__init__(f"{what} (limit {limit}); {when}")
        self.limit = limit
        self.retry_after = retry_after


class EngineUnavailable(Click2CallError):
    error_id = "engine_unavailable"
    status = 503


class DatabaseUnavailable(Click2CallError):
    """The database did not answer (stopped, unreachable, refusing connections).

    The reply says only that; `reason` (the driver's words, with host and port) is for the
    log and the health check, not for callers."""

    error_id = "database_unavailable"
    status = 503

    def __init__(self, reason: str) -> None:
        super().__init__("the call database is unavailable; try again shortly")
        self.reason = reason


class IllegalTransition(Exception):
    """A call was driven into a state its current state cannot reach: a bug, not user input."""
