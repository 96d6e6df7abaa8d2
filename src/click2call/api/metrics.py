"""`GET /metrics` (Prometheus text) and the HTTP latency of every request by route template.

/metrics spans every tenant, so it needs more than a tenant's open door: an API key
(any tenant's), or a client address in `[server] metrics_allowed_ips`.
"""

from __future__ import annotations

import ipaddress

from fastapi import APIRouter, Request
from fastapi.responses import Response
from starlette.types import ASGIApp, Receive, Scope, Send

from click2call.api.access import (
    audited,
    credentials,
    identify,
    in_store_thread,
    observe,
    runtime_of,
)
from click2call.api.schemas import ERRORS
from click2call.errors import Forbidden, Unauthorized
from click2call.metrics import CONTENT_TYPE, Metrics

router = APIRouter(tags=["operations"])


def _allowed_address(request: Request) -> bool:
    networks = runtime_of(request).settings.server.metrics_allowed_ips
    if not networks or request.client is None:
        return False
    try:
        address = ipaddress.ip_address(request.client.host)
    except ValueError:
        return False
    return any(address in ipaddress.ip_network(n, strict=False) for n in networks)


@router.get(
    "/metrics",
    response_class=Response,
    responses={
        **ERRORS,
        200: {"content": {CONTENT_TYPE: {}}, "description": "Prometheus text format"},
    },
)
async def metrics(request: Request) -> Response:
    """Prometheus metrics: an admin API key, or an address in `[server] metrics_allowed_ips`."""
    runtime = runtime_of(request)
    if not _allowed_address(request):
        with audited(request, "metrics", refusals_only=True) as decision:
            if credentials(request).key is None:
                raise Unauthorized("an API key or an address in metrics_allowed_ips is needed")
            decision.identity = identity = await identify(request, None)
            if not await in_store_thread(request, runtime.keys.is_admin, identity.key_id):
                # Metrics name every tenant and its volumes: not for one tenant's CRM key.
                raise Forbidden(
                    "/metrics needs an admin key (keys create --admin) "
                    "or an address in metrics_allowed_ips"
                )
    body = await in_store_thread(request, runtime.metrics.exposition)
    return Response(body, media_type=CONTENT_TYPE)


class HttpLatency:
    """Times each request under its route template (`/api/v1/calls/{ref}`), never the raw
    path, so call ids do not become label values. Plain ASGI, like api/access.AccessLog."""

    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self.app = app
        self._latency = metrics.http_latency

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        def record(status: int, seconds: float) -> None:
            route = getattr(scope.get("route"), "path", None) or "unmatched"
            self._latency.labels(scope["method"], route, str(status)).observe(seconds)

        await observe(self.app, scope, receive, send, record)
