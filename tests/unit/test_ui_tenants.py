"""The dashboard and a key whose tenant has left the configuration (its keys not revoked)."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from sqlalchemy import Engine

from click2call.api import create_app
from click2call.auth import csrf_token
from click2call.demo.sipp import free_port
from click2call.runtime import Runtime
from click2call.settings import Settings
from tests.unit.test_api_threads import CALL, Served, served

__all__ = ["served"]


async def test_a_key_of_a_tenant_no_longer_configured_cannot_sign_in(served: Served) -> None:
    client, runtime = served.client, served.runtime
    _, orphan = runtime.keys.create("gone", "old customer", datetime.now(UTC))
    form = re.search(r'name="csrf" value="([^"]+)"', (await client.get("/ui/signin")).text)
    assert form is not None
    signin = await client.post("/ui/signin", data={"csrf": form[1], "key": orphan})
    assert signin.status_code == 401
    assert "is not configured here" in signin.text and "gone" in signin.text


async def test_a_session_opened_before_its_tenant_left_gets_a_404_not_a_500(
    served: Served,
) -> None:
    client, runtime = served.client, served.runtime
    row, _ = runtime.keys.create("gone", "old customer", datetime.now(UTC))
    token = runtime.sessions.open(row, datetime.now(UTC), timedelta(minutes=5))
    client.cookies.set("c2c_session", token)
    health = await client.get("/ui/api/health")
    assert health.status_code == 404
    assert "unknown client 'gone'" in health.text


@pytest.fixture
async def two_tenants(
    database_url: str, database: Engine
) -> AsyncIterator[tuple[httpx.AsyncClient, str, str]]:
    peer = f"127.0.0.1:{free_port()}"  # nobody there: the calls fail as they start
    settings = Settings(
        server={"database": database_url},  # type: ignore[arg-type]
        sip={"port": free_port(), "options_interval": 0},  # type: ignore[arg-type]
        tenants=[  # type: ignore[list-item]
            {"name": "default", "sip": {"pbx": peer, "trunk": peer}},
            {"name": "acme-secret-customer", "sip": {"pbx": peer, "trunk": peer}},
        ],
    )
    runtime = Runtime(settings)
    _, mine = runtime.keys.create("default", "a", datetime.now(UTC))
    _, theirs = runtime.keys.create("acme-secret-customer", "b", datetime.now(UTC))
    app = create_app(runtime)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
            yield client, mine, theirs


async def test_a_session_finds_no_call_of_another_tenant_nor_its_name(
    two_tenants: tuple[httpx.AsyncClient, str, str],
) -> None:
    """Walking ids from a dashboard session answered 403 naming each call's tenant."""
    client, mine, theirs = two_tenants
    placed = await client.post("/api/v1/calls", json=CALL, headers={"X-API-Key": theirs})
    other = placed.json()["id"]
    form = re.search(r'name="csrf" value="([^"]+)"', (await client.get("/ui/signin")).text)
    assert form is not None
    await client.post("/ui/signin", data={"csrf": form[1], "key": mine})
    for path in (f"/api/v1/calls/{other}", f"/api/v1/calls/{other}/events"):
        reply = await client.get(path)
        assert reply.status_code == 404, path
        assert "acme" not in reply.text


async def test_a_dashboard_placement_refused_leaves_an_audit_row(served: Served) -> None:
    """Bad input and a forged form (CSRF) were refused before the audit began."""
    client, runtime = served.client, served.runtime
    form = re.search(r'name="csrf" value="([^"]+)"', (await client.get("/ui/signin")).text)
    assert form is not None
    await client.post("/ui/signin", data={"csrf": form[1], "key": served.key})
    csrf = csrf_token(client.cookies["c2c_session"])
    json = {"Accept": "application/json"}
    sent = [
        {"csrf": csrf, "extension": "200", "destination": "x"},
        {"csrf": "0" * 64, "extension": "200", "destination": "0502760206"},
        {"csrf": csrf, "extension": "200", "destination": "0502760206"},
    ]
    statuses = [(await client.post("/ui/calls", data=d, headers=json)).status_code for d in sent]
    assert statuses == [400, 403, 201]
    for _ in range(50):  # audit rows go through the writer
        rows = [e for e in runtime.keys.audit_entries(limit=100) if e.endpoint == "ui.calls"]
        if len(rows) == 3:
            break
        await asyncio.sleep(0.05)
    assert sorted(row.allowed for row in rows) == [False, False, True]
