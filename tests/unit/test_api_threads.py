"""No HTTP request runs a database statement on the event loop, which carries the SIP
signalling: every endpoint reads and writes the store in worker threads (api/access.py)."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from sqlalchemy import Engine, event

from click2call.api import create_app
from click2call.auth import csrf_token
from click2call.demo.sipp import free_port
from click2call.runtime import Runtime
from click2call.settings import Settings

ORIGIN = "https://crm.example"
CALL = {"extension": "200", "destination": "0502760206"}


class Served:
    """The app in-process, its admin key, and the statements run on the event loop."""

    def __init__(self, client: httpx.AsyncClient, runtime: Runtime, key: str) -> None:
        self.client, self.runtime, self.key = client, runtime, key
        self.on_loop: list[str] = []
        event.listen(runtime.database, "before_cursor_execute", self._statement)

    def _statement(self, _conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            return  # a worker thread: no event loop runs here
        self.on_loop.append(statement.split("\n")[0])


@pytest.fixture
async def served(database_url: str, database: Engine) -> AsyncIterator[Served]:
    """On SQLite and on PostgreSQL (migrated by `database`), where the per-key request
    budget is a row too. Runtime.close waits for its pollers' threads before it disposes
    of the database: a connection one still held would be left to a pool that is gone
    (psycopg's ResourceWarning then fails a later test)."""
    peer = f"127.0.0.1:{free_port()}"  # nobody there: the calls fail as they start
    settings = Settings(
        server={"database": database_url},  # type: ignore[arg-type]
        sip={"port": free_port(), "options_interval": 0},  # type: ignore[arg-type]
        tenants=[  # type: ignore[list-item]
            {
                "name": "default",
                "sip": {"pbx": peer, "trunk": peer},
                "widget": {"allowed_origins": [ORIGIN]},
            }
        ],
    )
    runtime = Runtime(settings)
    _, key = runtime.keys.create("default", "tests", datetime.now(UTC), admin=True)
    app = create_app(runtime)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
            yield Served(client, runtime, key)  # listening once started: start-up reads the store


async def test_the_api_and_both_links_read_the_store_off_the_event_loop(served: Served) -> None:
    client, keyed = served.client, {"X-API-Key": served.key}
    call = (await client.post("/api/v1/calls", json=CALL, headers=keyed)).json()["id"]
    for path in (
        f"/api/v1/calls/{call}",
        f"/api/v1/calls/{call}/events",
        f"/api/v1/calls/{call}/webhooks",
        "/api/v1/calls",
        "/api/v1/calls.csv",
        "/api/v1/health",
        "/metrics",
    ):
        assert (await client.get(path, headers=keyed)).status_code == 200, path
    link = {"destination": "0502760206", "key": served.key}
    dial = await client.get("/web/dial.php", params={"extension": "201", **link})
    assert dial.status_code == 200, dial.text
    external = {"client": "default", "phone": "0502760207", **link}
    assert (await client.get("/voipe/dial_external.php", params=external)).status_code == 200
    unknown = {"X-API-Key": "c2c_" + "x" * 43}
    assert (await client.get("/api/v1/events", headers=unknown)).status_code == 401
    hangup = await client.post(f"/api/v1/calls/{call}/hangup", headers=keyed)
    assert hangup.status_code in (200, 202)  # 200: nobody answers at the PBX's address
    assert served.on_loop == []


async def test_the_widget_reads_the_store_off_the_event_loop(served: Served) -> None:
    client, keyed = served.client, {"X-API-Key": served.key}
    minted = await client.post("/api/v1/widget-tokens", json={"extension": "202"}, headers=keyed)
    page = {"Origin": ORIGIN, "X-Widget-Token": minted.json()["token"]}
    order = {"destination": "0502760206"}
    placed = await client.post("/api/v1/widget/calls", json=order, headers=page)
    assert placed.status_code == 201, placed.text
    read = await client.get(f"/api/v1/widget/calls/{placed.json()['id']}", headers=page)
    assert read.status_code == 200
    assert served.on_loop == []


async def test_the_dashboard_reads_the_store_off_the_event_loop(served: Served) -> None:
    client, keyed = served.client, {"X-API-Key": served.key}
    call = (await client.post("/api/v1/calls", json=CALL, headers=keyed)).json()["id"]
    form = re.search(r'name="csrf" value="([^"]+)"', (await client.get("/ui/signin")).text)
    assert form is not None
    signin = await client.post("/ui/signin", data={"csrf": form[1], "key": served.key})
    assert signin.status_code == 303
    for path in ("/ui/", "/ui/live", f"/ui/calls/{call}", "/ui/api/health", "/ui/api/keys"):
        assert (await client.get(path)).status_code in (200, 303), path
    posted = {"csrf": csrf_token(client.cookies["c2c_session"])}
    json = {"Accept": "application/json"}
    created = await client.post("/ui/keys", data={**posted, "label": "crm"}, headers=json)
    assert created.status_code == 201
    key_id = created.json()["id"]
    revoked = await client.post(f"/ui/keys/{key_id}/revoke", data=posted, headers=json)
    assert revoked.status_code == 200
    hangup = await client.post(f"/ui/calls/{call}/hangup", data=posted, headers=json)
    assert hangup.status_code == 202
    assert (await client.post("/ui/signout", data=posted)).status_code == 303
    assert served.on_loop == []
