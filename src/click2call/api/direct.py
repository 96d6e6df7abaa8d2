"""The hot endpoints called straight from the middleware stack, past FastAPI's router.

Between the middlewares and an endpoint, FastAPI's own layers (exception middleware, exit
stacks, the router's walk over every route, the route's request/response wrapper, the
dependency solver) took about half of the event loop's time for `GET /api/v1/health`
(py-spy). An endpoint that takes only the `Request` and returns a `Response` needs none.

The first request to a path goes through the router as before. When the route it reaches
belongs to one of the `endpoints` named here (exact paths, no parameters), later requests
with the same method and path call that endpoint directly: the same scope keys the router
sets (`route`, which the latency metric labels by, `endpoint`, `path_params`), the same
exception handlers, looked up the way Starlette does; anything they do not handle goes up
to the server-error layer as before. The routes stay FastAPI's, and so does the OpenAPI
document.
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute
from starlette.types import ASGIApp, Receive, Scope, Send

Endpoint = Callable[[Request], Awaitable[Response]]
Handler = Callable[[Request, Exception], Any]


class DirectCalls:
    def __init__(
        self,
        app: ASGIApp,
        endpoints: frozenset[Endpoint],
        exception_handlers: Mapping[Any, Handler],
    ) -> None:
        self.app = app
        self._endpoints = endpoints
        # What Starlette's ExceptionMiddleware handles; 500/Exception are the outer layer's.
        self._handlers = {
            kind: handler
            for kind, handler in exception_handlers.items()
            if isinstance(kind, type) and kind is not Exception
        }
        self._routes: dict[tuple[str, str], tuple[BaseRoute, Endpoint]] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        found = (
            self._routes.get((scope["method"], scope["path"])) if scope["type"] == "http" else None
        )
        if found is None:
            await self.app(scope, receive, send)
            self._learn(scope)
            return
        scope["route"], scope["endpoint"] = found
        scope["path_params"] = {}
        request = Request(scope, receive, send)
        try:
            response = await found[1](request)
        except Exception as exc:
            handler = self._handler(exc)
            if handler is None:
                raise
            response = handler(request, exc)
            if inspect.isawaitable(response):
                response = await response
        await response(scope, receive, send)

    def _learn(self, scope: Scope) -> None:
        """Remember the route the router chose, when its endpoint is one called directly
        and took the request (a wrong method reaches the route too, for its 405). Only
        exact paths are remembered: the table holds at most one entry per route and method."""
        endpoint = scope.get("endpoint")
        if scope["type"] != "http" or endpoint not in self._endpoints or scope["path_params"]:
            return
        if scope["method"] in getattr(scope["route"], "methods", ()):
            self._routes[scope["method"], scope["path"]] = (scope["route"], endpoint)

    def _handler(self, exc: Exception) -> Handler | None:
        for kind in type(exc).__mro__:
            if kind in self._handlers:
                return self._handlers[kind]
        return None
