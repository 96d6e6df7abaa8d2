"""Refusals made before an endpoint runs are audited under the endpoint's own name."""

from __future__ import annotations

import inspect
import re

import pytest
from fastapi import Request
from fastapi.routing import APIRoute

from click2call.api import compat, feed, history, metrics, v1, widget
from click2call.api.access import SESSION_COOKIE, audit_name, reads_store

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


def _request(method: str, query: bytes, *headers: tuple[bytes, bytes]) -> Request:
    scope = {"type": "http", "method": method, "path": "/", "query_string": query}
    return Request({**scope, "headers": list(headers), "client": ("127.0.0.1", 1)})


@pytest.mark.parametrize(
    ("request_", "reads"),
    [
        (_request("GET", b""), False),  # an address or an open tenant
        (_request("GET", b"exp=1&sig=ab"), False),  # a signed link
        (_request("GET", b"key=not%20a%20key"), False),  # refused as malformed, unread
        (_request("GET", b"", (b"x-api-key", b"c2c_" + b"a" * 43)), True),
        (_request("GET", b"", (b"cookie", SESSION_COOKIE.encode() + b"=token")), True),
        (_request("POST", b"", (b"cookie", SESSION_COOKIE.encode() + b"=token")), False),
    ],
)
def test_only_a_key_or_a_session_is_looked_up_in_the_store(request_: Request, reads: bool) -> None:
    assert reads_store(request_) is reads
