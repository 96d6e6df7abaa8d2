"""The HTTP edge of authentication: reading credentials, the audit trail, the access log.

Endpoints read the store in the runtime's store threads (`in_store_thread`, a bounded pool
of its own: store_threads.py), never on the event loop, which carries the SIP signalling,
and wait for it at most `[server] database_timeout`. Not in asyncio's default executor:
the SIP engine resolves names there, and reads stuck on a hung database must not hold
those up. Audit rows go through the tracking writer, off the loop.
"""

from __future__ import annotations

import functools
import logging
import re
import time
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import ParamSpec, TypeVar
from urllib.parse import parse_qsl, urlencode

from fastapi import Request
from starlette.requests import ClientDisconnect
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from click2call.api import fields
from click2call.auth import SECRET_PARAMS, Credentials, Identity, authenticate
from click2call.errors import CallNotFound, Click2CallError, Forbidden, Unauthorized
from click2call.runtime import Runtime
from click2call.store import ApiKey, AuditEntry, StoredCall

log = logging.getLogger("click2call.access")
_KEY = re.compile(fields.KEY, re.ASCII)
SESSION_COOKIE = "c2c_session"
_READS = frozenset({"GET", "HEAD"})
P = ParamSpec("P")
T = TypeVar("T")


def runtime_of(request: Request) -> Runtime:
    runtime: Runtime = request.app.state.runtime
    return runtime


async def in_store_thread(
    request: Request, work: Callable[P, T], *args: P.args, **kwargs: P.kwargs
) -> T:
    """`work(*args, **kwargs)` in the runtime's store threads: off the event loop, and a
    503 (DatabaseUnavailable) when the database takes longer than `database_timeout`."""
    return await runtime_of(request).store_threads.run(work, *args, **kwargs)


def credentials(request: Request, form_key: str | None = None) -> Credentials:
    header = request.headers.get("authorization", "")
    bearer = header[7:].strip() if header[:7].lower() == "bearer " else None
    key = request.headers.get("x-api-key") or bearer or request.query_params.get("key") or form_key
    if key is not None and not _KEY.fullmatch(key):
        raise Unauthorized("invalid or revoked API key")
    client = request.client.host if request.client else None
    # The dashboard's cookie may read (the event feed, history, CSV) but never act: actions
    # go through the dashboard's own forms, which carry a CSRF token (ui/actions.py).
    session = request.cookies.get(SESSION_COOKIE) if request.method in _READS else None
    return Credentials(key, tuple(request.query_params.multi_items()), client, session)


async def identify(
    request: Request, claimed_tenant: str | None, form_key: str | None = None
) -> Identity:
    return await _identify(request, credentials(request, form_key), claimed_tenant)


def still_allowed(request: Request, claimed_tenant: str | None) -> Callable[[], Awaitable[None]]:
    """Checks the request's credentials again when awaited (Unauthorized, Forbidden,
    UnknownTenant once they no longer hold: a key revoked, a session ended), without
    counting a request against the key's budget. For what lives longer than a request."""
    runtime, creds = runtime_of(request), credentials(request)

    async def check() -> None:
        await _authenticate(runtime, creds, claimed_tenant)

    return check


SIGNED_LINK_PATHS = frozenset({"/web/dial.php", "/voipe/dial_external.php"})


def _session_lookup(runtime: Runtime) -> Callable[[str], ApiKey | None]:
    """The key behind a live dashboard session, as `authenticate` asks for it."""
    return lambda token: runtime.sessions.lookup(token, runtime.clock())


async def _authenticate(
    runtime: Runtime, creds: Credentials, claimed_tenant: str | None
) -> Identity:
    """`auth.authenticate`; in a worker thread when it reads a key or a session, so a slow
    or unreachable database never holds up the event loop."""
    args = (
        runtime.settings,
        creds,
        claimed_tenant,
        runtime.keys.lookup,
        time.time(),
        _session_lookup(runtime),
    )
    if creds.key or creds.session:
        return await runtime.store_threads.run(authenticate, *args)
    return authenticate(*args)


async def _identify(request: Request, creds: Credentials, claimed_tenant: str | None) -> Identity:
    runtime = runtime_of(request)
    identity = await _authenticate(runtime, creds, claimed_tenant)
    if identity.method == "signed link" and request.url.path not in SIGNED_LINK_PATHS:
        # The signature covers the query only: the same link must not open the history,
        # the feed or a hang-up. Reading needs an API key.
        raise Forbidden("a signed link only places the call it was made for; use an API key")
    tenant = runtime.settings.tenant(identity.tenant)
    # A person's session is not an integration hammering the API: no per-key request limit.
    if identity.method == "key" and identity.key_id is not None and tenant is not None:
        budget = runtime.key_requests
        count = (identity.key_id, tenant.limits.key_requests_per_minute, runtime.clock())
        if budget.in_database:  # a row shared by the cluster's nodes
            await runtime.store_threads.run(budget.take, *count)
        else:  # this process's memory, on the event loop: not shared with threads
            budget.take(*count)
    return identity


def reads_store(request: Request) -> bool:
    """Whether deciding who `request` speaks for reads the store (a key or a session to
    look up); a malformed key is refused without reading anything."""
    try:
        creds = credentials(request)
    except Click2CallError:
        return False
    return bool(creds.key or creds.session)


def readable_tenants(request: Request) -> set[str]:
    """The tenants whose rules let this request read them (key, session, allowed address,
    open tenant). Nothing is counted against a key's request limit, nothing audited: this
    only decides how much the health reply says. Signed links read nothing."""
    runtime = runtime_of(request)
    try:
        creds = credentials(request)
    except Click2CallError:
        return set()
    # One database lookup of the key or session, whatever the number of tenants asked.
    lookup_key = functools.cache(runtime.keys.lookup)
    lookup_session = functools.cache(_session_lookup(runtime))
    readable = set()
    for tenant in runtime.settings.tenants:
        try:
            identity = authenticate(
                runtime.settings, creds, tenant.name, lookup_key, time.time(), lookup_session
            )
        except Click2CallError:
            continue
        if identity.method != "signed link":
            readable.add(identity.tenant)
    return readable


async def identify_before_body(request: Request) -> Identity | None:
    """What the headers and query prove, checked before a body is read. A key: its identity
    (the body may only name the key's tenant, see `auth.claim`). Otherwise some tenant must
    accept the request's signed link or address, and None is returned: the body names the
    tenant, and `identify` decides once it is read. Raises the default tenant's refusal."""
    runtime = runtime_of(request)
    creds = credentials(request)
    if creds.key:
        return await _identify(request, creds, None)
    settings, now = runtime.settings, time.time()
    refusal: Click2CallError | None = None
    for tenant in sorted(settings.tenants, key=lambda t: t is not settings.compat_tenant):
        try:
            # No key and no session lookup: nothing here reads the database.
            authenticate(settings, creds, tenant.name, runtime.keys.lookup, now)
        except Click2CallError as exc:
            refusal = refusal or exc
        else:
            return None
    assert refusal is not None  # settings hold at least one tenant
    raise refusal


async def identify_for_call(request: Request, ref: str) -> tuple[Identity, StoredCall]:
    """A key or a dashboard session reads only its tenant's calls (another tenant's are
    not found: a 403 naming their tenant told that they exist, and whose they are);
    otherwise the call's own tenant decides (its allowed addresses)."""
    runtime = runtime_of(request)
    service, run = runtime.service, runtime.store_threads.run
    creds = credentials(request)
    if creds.key or creds.session:
        identity = await _identify(request, creds, None)
        return identity, await run(service.get, ref, identity.tenant)
    call = await run(service.get, ref)
    try:
        return await _identify(request, creds, call.tenant), call
    except Forbidden:
        raise CallNotFound(ref) from None


@dataclass
class Decision:
    """What an audited request found out: who it was, and the call it made or touched."""

    identity: Identity | None = None
    call: StoredCall | None = None


@contextmanager
def audited(request: Request, endpoint: str, refusals_only: bool = False) -> Iterator[Decision]:
    """An audit row for the request: who, from where, what happened. Calls are placed and
    ended under it; reads record only refusals (CRMs poll status, a row each would bury the
    log). Errors pass through after being recorded; any exception is a refusal."""
    decision = Decision()
    reason: str | None = None
    left_call: int | None = None
    try:
        yield decision
    except Click2CallError as exc:
        reason, left_call = exc.message, exc.call_id
        raise
    except ClientDisconnect:
        reason = "the client disconnected before sending its whole request"
        raise
    except Exception as exc:
        reason = f"internal error ({type(exc).__name__})"
        raise
    finally:
        if not (refusals_only and reason is None):
            call_id = decision.call.id if decision.call else left_call
            _record(request, endpoint, decision.identity, call_id, reason)


# The audited endpoints by path, for refusals made before an endpoint runs (wrong method,
# FastAPI's parameter checks): (path pattern, name for GET, name for other methods).
# tests/unit/test_access.py checks that every route of the app is here or unaudited.
_CALL = "/api/v1/calls/[^/]+"
AUDITED_PATHS = (
    (re.compile(r"/web/dial\.php"), "dial.php", "dial.php"),
    (re.compile(r"/voipe/dial_external\.php"), "dial_external.php", "dial_external.php"),
    (re.compile(r"/api/v1/calls"), "v1.list", "v1.calls"),
    (re.compile(r"/api/v1/calls\.csv"), "v1.export", "v1.export"),
    (re.compile(r"/api/v1/events"), "v1.feed", "v1.feed"),
    (re.compile(_CALL), "v1.get", "v1.get"),
    (re.compile(f"{_CALL}/events"), "v1.events", "v1.events"),
    (re.compile(f"{_CALL}/webhooks"), "v1.webhooks", "v1.webhooks"),
    (re.compile(f"{_CALL}/hangup"), "v1.hangup", "v1.hangup"),
    (re.compile(r"/metrics"), "metrics", "metrics"),
    (re.compile(r"/api/v1/widget-tokens"), "widget.tokens", "widget.tokens"),
    (re.compile(r"/api/v1/widget/calls"), "widget.calls", "widget.calls"),
)


def audit_name(method: str, path: str) -> str | None:
    """The audit log's name for the endpoint at `path`, or None for an unaudited path."""
    for pattern, on_get, otherwise in AUDITED_PATHS:
        if pattern.fullmatch(path):
            return on_get if method == "GET" else otherwise
    return None


def record_refusal(request: Request, error: Click2CallError) -> None:
    """Audit a refusal made outside an endpoint, when the path is an audited endpoint's."""
    endpoint = audit_name(request.method, request.url.path)
    if endpoint is not None:
        _record(request, endpoint, None, error.call_id, error.message)


def _record(
    request: Request,
    endpoint: str,
    identity: Identity | None,
    call_id: int | None,
    refusal: str | None,
) -> None:
    ok = f"ok ({identity.method})" if identity else None
    runtime_of(request).tracking.audit(
        AuditEntry(
            at=datetime.now(UTC),
            tenant=identity.tenant if identity else None,
            key_id=identity.key_id if identity else None,
            client_ip=request.client.host if request.client else None,
            endpoint=endpoint,
            allowed=refusal is None,
            reason=refusal if refusal is not None else ok,
            call_id=call_id,
        )
    )


# A query of name=value pairs in characters that decoding leaves alone and encoding writes
# back as they are ("+" is a space both ways): re-encoded, it would come out the same.
_PLAIN_QUERY = re.compile(r"[\w.~+-]+=[\w.~+-]*(?:&[\w.~+-]+=[\w.~+-]*)*", re.ASCII)


def redacted_query(query: str) -> str:
    """The query string with the values of keys and signatures replaced, percent-encoded
    again so a CR/LF or other control character in a value cannot forge a log line."""
    # Most queries (a CRM's dial.php link) are plain: logged as they came, with no decoding
    # and encoding again (~10 µs of the event loop per request) unless a secret is in them.
    if _PLAIN_QUERY.fullmatch(query) and not any(
        pair.partition("=")[0] in SECRET_PARAMS for pair in query.split("&")
    ):
        return query
    pairs = parse_qsl(query, keep_blank_values=True)
    return urlencode([(k, "***" if k in SECRET_PARAMS else v) for k, v in pairs], safe="*")


Finished = Callable[[int, float], None]
"""Told the response status and the seconds a request took, once it is done."""


async def observe(app: ASGIApp, scope: Scope, receive: Receive, send: Send, done: Finished) -> None:
    """Run `app` for one HTTP request and tell `done` its status and duration, also when it
    fails (500). Plain ASGI: Starlette's BaseHTTPMiddleware halved the requests/s."""
    started = time.perf_counter()
    status = 500

    async def keep_status(message: Message) -> None:
        nonlocal status
        if message["type"] == "http.response.start":
            status = message["status"]
        await send(message)

    try:
        await app(scope, receive, keep_status)
    finally:
        done(status, time.perf_counter() - started)


class AccessLog:
    """uvicorn's access log prints query strings, keys included; this one hides them."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not log.isEnabledFor(logging.INFO):
            await self.app(scope, receive, send)
            return

        def line(status: int, seconds: float) -> None:
            query = redacted_query(scope.get("query_string", b"").decode("latin-1"))
            client = scope.get("client")
            log.info(
                '%s "%s %s%s" %d %.1fms',
                client[0] if client else "-",
                scope["method"],
                # The raw path, still percent-encoded: a decoded %0d%0a would end the line.
                scope.get("raw_path", scope["path"].encode()).decode("latin-1"),
                f"?{query}" if query else "",
                status,
                seconds * 1000,
            )

        await observe(self.app, scope, receive, send, line)
