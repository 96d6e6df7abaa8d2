"""The dashboard and a key whose tenant has left the configuration (its keys not revoked)."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

from tests.unit.test_api_threads import Served, served

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
