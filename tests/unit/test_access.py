"""Refusals made before an endpoint runs are audited under the endpoint's own name."""

from __future__ import annotations

import inspect
import re

from fastapi.routing import APIRoute

from click2call.api import compat, feed, history, metrics, v1, widget
from click2call.api.access import audit_name

# Health is public; the widget's reads answer with CORS headers and keep no audit rows;
# its script is a static file.
UNAUDITED = {"/api/v1/health", "/api/v1/widget/calls/{ref}", "/widget.js"}


def test_every_route_is_audited_under_the_name_its_endpoint_uses() -> None:
    checked = 0
    routers = (compat.router, history.router, v1.router, feed.router, metrics.router, widget.router)
    for router in routers:
        for route in router.routes:
            assert isinstance(route, APIRoute)
            if route.path in UNAUDITED:
                continue
            source = inspect.getsource(inspect.getmodule(route.endpoint))
            path = re.sub(r"\{[^}]+\}", "123", route.path)
            for method in route.methods - {"OPTIONS"}:  # CORS preflights
                name = audit_name(method, path)
                assert name is not None, (method, route.path)
                assert f'"{name}"' in source, (method, route.path, name)
                checked += 1
    assert checked >= 12


def test_unknown_paths_are_not_audited() -> None:
    assert audit_name("GET", "/favicon.ico") is None
    assert audit_name("GET", "/api/v1/calls/1/unknown") is None
