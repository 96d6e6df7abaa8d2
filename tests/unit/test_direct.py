"""api/direct.py: endpoints called past FastAPI's router answer exactly as through it."""

from __future__ import annotations

import inspect
import typing

import httpx
import pytest
from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import PlainTextResponse, Response
from starlette.types import ASGIApp, Receive, Scope, Send

from click2call.api.app import DIRECT_ENDPOINTS
from click2call.api.direct import DirectCalls


class Refused(Exception):
    pass


router = APIRouter(prefix="/v")


@router.get("/hello")
async def hello(request: Request) -> Response:
    if "refuse" in request.query_params:
        raise Refused(request.query_params["refuse"])
    if "crash" in request.query_params:
        raise RuntimeError("a bug")
    return PlainTextResponse(f"hello {request.query_params.get('name')}", status_code=201)


@router.get("/{ref}")
async def other(request: Request, ref: str) -> Response:
    return PlainTextResponse(ref)


async def refused(request: Request, exc: Exception) -> Response:
    return PlainTextResponse(f"refused: {exc}", status_code=403)


class Seen:
    """The scope each request leaves behind, as the outer middlewares see it."""

    def __init__(self, app: ASGIApp, scopes: list[Scope]) -> None:
        self.app, self.scopes = app, scopes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await self.app(scope, receive, send)
        finally:
            self.scopes.append(scope)


@pytest.fixture
def scopes() -> list[Scope]:
    return []


def _client(scopes: list[Scope], direct: bool = True) -> httpx.AsyncClient:
    app = FastAPI()
    app.include_router(router)
    app.add_exception_handler(Refused, refused)
    if direct:
        app.add_middleware(
            DirectCalls, endpoints=frozenset({hello}), exception_handlers=app.exception_handlers
        )
    app.add_middleware(Seen, scopes=scopes)
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    return httpx.AsyncClient(transport=transport, base_url="http://test")


@pytest.fixture
def client(scopes: list[Scope]) -> httpx.AsyncClient:
    return _client(scopes)


def _shape(reply: httpx.Response) -> tuple[int, str, str | None]:
    return reply.status_code, reply.text, reply.headers.get("content-type")


@pytest.mark.parametrize("query", ["name=ann", "refuse=no", "crash=1"])
async def test_the_router_then_the_direct_call_answer_alike(
    client: httpx.AsyncClient, scopes: list[Scope], query: str
) -> None:
    first = await client.get("/v/hello?name=bob")  # the router shows the route
    assert "router" in scopes[0]
    replies = [await client.get(f"/v/hello?{query}") for _ in range(2)]
    routed = await _client([], direct=False).get(f"/v/hello?{query}")  # FastAPI alone
    assert _shape(replies[0]) == _shape(replies[1]) == _shape(routed)
    expected = {
        "name=ann": (201, "hello ann", "text/plain; charset=utf-8"),
        "refuse=no": (403, "refused: no", "text/plain; charset=utf-8"),
        "crash=1": (500, "Internal Server Error", "text/plain; charset=utf-8"),
    }[query]
    assert _shape(replies[1]) == expected
    assert first.status_code == 201
    direct = scopes[-1]
    assert "router" not in direct  # called directly
    assert direct["route"].path == "/v/hello"  # what the latency metric labels by
    assert direct["endpoint"] is hello


async def test_other_methods_and_routes_keep_going_through_the_router(
    client: httpx.AsyncClient, scopes: list[Scope]
) -> None:
    for _ in range(2):
        assert (await client.post("/v/hello")).status_code == 405
        assert (await client.get("/v/x1")).text == "x1"
        assert (await client.get("/v/hello/")).status_code in (307, 404)
    assert all("router" in scope for scope in scopes)


@pytest.mark.parametrize("endpoint", sorted(DIRECT_ENDPOINTS, key=lambda e: e.__qualname__))
def test_a_direct_endpoint_takes_the_request_and_returns_a_response(endpoint: object) -> None:
    assert inspect.iscoroutinefunction(endpoint)
    hints = typing.get_type_hints(endpoint)
    assert list(inspect.signature(endpoint).parameters) == ["request"]  # type: ignore[arg-type]
    assert hints["request"] is Request
    assert issubclass(hints["return"], Response)
