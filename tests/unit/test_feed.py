"""api/feed.py: the SSE framing, resume ids, keep-alives and the slow-client bound."""

from __future__ import annotations

import asyncio
import time
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

import pytest
from sqlalchemy import Engine

from click2call.api.feed import EventStream, frame, resume_point
from click2call.calls import CallState
from click2call.errors import InvalidInput, Unauthorized
from click2call.policy import Limits
from click2call.store import NewCall, Store, StoredEvent
from click2call.store.history import History
from click2call.store_threads import StoreThreads
from click2call.tracking import Tracking

T0 = datetime(2026, 11, 24, 8, 0, tzinfo=UTC)
NEW = NewCall("default", "extension", "sip", "200", "0502760206", "1", "2", None)
EVENT = StoredEvent(41, 7, 1, "call.queued", CallState.QUEUED, None, None, T0, '{"a":1}')


def test_an_event_is_id_type_and_data() -> None:
    assert frame(EVENT) == b'id: 41\nevent: call.queued\ndata: {"a":1}\n\n'
    assert (
        frame(replace(EVENT, payload="x\ny")) == b"id: 41\nevent: call.queued\ndata: x\ndata: y\n\n"
    )


def test_the_header_wins_and_garbage_is_refused() -> None:
    assert resume_point("12", "5") == 12
    assert resume_point(None, "5") == 5
    assert resume_point(" ", None) is None
    with pytest.raises(InvalidInput) as caught:
        resume_point("1\r\nX: y", None)
    assert caught.value.field == "Last-Event-ID"


async def allowed() -> None:
    """Credentials that still hold."""


@pytest.fixture
def parts(database: Engine) -> tuple[Store, Tracking]:
    store = Store(database)
    return store, Tracking(store, Limits(time.monotonic), lambda: T0)


async def test_a_quiet_feed_sends_keep_alives(parts: tuple[Store, Tracking]) -> None:
    store, tracking = parts
    sent: list[dict[str, Any]] = []

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    async def receive() -> dict[str, Any]:
        await asyncio.sleep(0.35)
        return {"type": "http.disconnect"}

    stream = EventStream(
        History(store.engine), tracking, StoreThreads(2, 5), "default", 0, allowed, keepalive=0.1
    )
    await stream({"type": "http"}, receive, send)  # type: ignore[arg-type]
    bodies = [m.get("body") for m in sent[1:]]
    assert bodies[0] == b"retry: 2000\n\n"
    assert bodies.count(b": keep-alive\n\n") >= 2


async def test_a_stored_change_wakes_the_feed(parts: tuple[Store, Tracking]) -> None:
    store, tracking = parts
    sent: list[bytes] = []
    got_event = asyncio.Event()

    async def send(message: dict[str, Any]) -> None:
        sent.append(message.get("body", b""))
        if b"event: call.queued" in sent[-1]:
            got_event.set()

    async def receive() -> dict[str, Any]:
        await got_event.wait()
        return {"type": "http.disconnect"}

    stream = EventStream(
        History(store.engine), tracking, StoreThreads(2, 5), "default", 0, allowed, keepalive=60
    )
    task = asyncio.create_task(stream({"type": "http"}, receive, send))  # type: ignore[arg-type]
    await asyncio.sleep(0.1)
    await tracking.create(replace(NEW, tenant="other"))  # another tenant's: not sent
    await tracking.create(NEW)
    await asyncio.wait_for(task, 5)
    assert sum(b"event: " in body for body in sent) == 1


async def test_a_client_that_stops_reading_is_disconnected(parts: tuple[Store, Tracking]) -> None:
    store, tracking = parts
    await tracking.create(NEW)
    started = asyncio.Event()

    async def send(message: dict[str, Any]) -> None:
        if b"event:" in message.get("body", b""):
            started.set()
            await asyncio.sleep(3600)  # the socket's buffer is full and stays full

    async def receive() -> dict[str, Any]:
        await asyncio.sleep(3600)
        return {"type": "http.disconnect"}

    stream = EventStream(
        History(store.engine), tracking, StoreThreads(2, 5), "default", 0, allowed, send_timeout=0.2
    )
    await asyncio.wait_for(stream({"type": "http"}, receive, send), 5)  # type: ignore[arg-type]
    assert started.is_set()
    assert len(tracking._listeners) == 0  # unsubscribed


async def test_a_feed_whose_key_was_revoked_ends(parts: tuple[Store, Tracking]) -> None:
    """A stream outlives the request that opened it: credentials are checked again as it
    goes, and a key revoked (a session ended) since ends it; the client's reconnect then
    gets the 401 in words."""
    store, tracking = parts
    checks: list[float] = []

    async def revoked_after_first() -> None:
        checks.append(time.monotonic())
        if len(checks) > 1:
            raise Unauthorized("this API key was revoked")

    async def receive() -> dict[str, Any]:
        await asyncio.sleep(3600)
        return {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        pass

    stream = EventStream(
        History(store.engine),
        tracking,
        StoreThreads(2, 5),
        "default",
        0,
        revoked_after_first,
        keepalive=0.05,
    )
    await asyncio.wait_for(stream({"type": "http"}, receive, send), 5)  # type: ignore[arg-type]
    assert len(checks) == 2
    assert len(tracking._listeners) == 0
