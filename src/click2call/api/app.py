"""The FastAPI application factory."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException

from click2call import __version__, ui
from click2call.api import compat, feed, history, metrics, v1, widget
from click2call.api.access import AccessLog
from click2call.api.direct import DirectCalls
from click2call.api.docs import serve_docs
from click2call.api.errors import (
    handle_click2call_error,
    handle_http_error,
    handle_validation_error,
)
from click2call.api.limits import BodyLimit
from click2call.errors import Click2CallError
from click2call.runtime import Runtime

# The endpoints called past FastAPI's router (api/direct.py): each takes only the Request
# and returns a Response; these are what CRMs and monitors call most.
DIRECT_ENDPOINTS = frozenset({compat.dial, compat.dial_external, v1.create_call, v1.health})


def create_app(runtime: Runtime) -> FastAPI:
    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        await runtime.start()
        try:
            yield
        finally:
            await runtime.close()

    app = FastAPI(
        title="click2call",
        version=__version__,
        description="One HTTP request places a two-leg phone call.",
        lifespan=lifespan,
        docs_url=None,  # served by api/docs.py from the server's own files
        redoc_url=None,
        # FastAPI's own OpenTelemetry asks the global providers on every request; our
        # metrics are Prometheus (api/metrics.py), and nothing here sets a provider.
        telemetry={"tracing": False, "metrics": False, "logs": False},
    )
    app.state.runtime = runtime
    app.add_exception_handler(Click2CallError, handle_click2call_error)
    app.add_exception_handler(RequestValidationError, handle_validation_error)
    app.add_exception_handler(StarletteHTTPException, handle_http_error)
    app.add_middleware(
        DirectCalls,  # innermost: the body limit and the logs still see every request
        endpoints=DIRECT_ENDPOINTS,
        exception_handlers=app.exception_handlers,
    )
    app.add_middleware(BodyLimit, max_body_bytes=runtime.settings.server.max_body_bytes)
    app.add_middleware(AccessLog)
    app.add_middleware(metrics.HttpLatency, metrics=runtime.metrics)
    app.include_router(compat.router)
    app.include_router(history.router)  # before v1: /calls.csv is not a call ref
    app.include_router(v1.router)
    app.include_router(feed.router)
    app.include_router(metrics.router)
    serve_docs(app)
    app.include_router(widget.router)
    ui.mount(app)
    return app
