"""The live feed: `GET /api/v1/events`, Server-Sent Events of the caller's tenant's calls.

Each event is `id: <global event id>`, `event: <type>`, `data: <the stored event body>`.
The feed reads the `call_events` table, never memory: a stored change only wakes it up
(tracking.subscribe), so a client that reconnects with `Last-Event-ID` (or
`?last_event_id=`, for clients that cannot set headers) gets exactly what it missed.

Memory per client is bounded: events are read a batch at a time and only after the
previous batch was taken by the connection (uvicorn's send waits while the socket's
buffer is full). A client that takes nothing for `send_timeout` is disconnected; it
resumes by id like any other.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
from collections.abc import Awaitable, Callable
from typing import Annotated

from fastapi import APIRouter, Query, Request
from fastapi.responses import Response
from starlette.types import Receive, Scope, Send

from click2call.api import fields
from click2call.api.access import audited, identify, in_store_thread, runtime_of, still_allowed
from click2call.api.schemas import ERRORS
from click2call.errors import (
    DatabaseUnavailable,
    Forbidden,
    InvalidInput,
    Unauthorized,
    UnknownTenant,
)
from click2call.store import Change, StoredEvent
from click2call.store.history import History, Unsettled
from click2call.store_threads import StoreThreads
from click2call.tracking import Tracking

log = logging.getLogger("click2call.feed")
router = APIRouter(prefix="/api/v1", tags=["v1"])

KEEPALIVE_SECONDS = 15.0
SEND_TIMEOUT_SECONDS = 30.0
BATCH = 200
UNSETTLED_POLL_SECONDS = 0.05
RECONNECT_MS = 2000  # the `retry:` a browser's EventSource waits before reconnecting
_EVENT_ID = re.compile(r"[0-9]{1,18}", re.ASCII)


def frame(event: StoredEvent) -> bytes:
    """One event in the SSE wire format; a body with line breaks becomes several data lines."""
    data = "".join(f"data: {line}\n" for line in event.payload.splitlines() or [""])
    return f"id: {event.id}\nevent: {event.type}\n{data}\n".encode()


def resume_point(header: str | None, query: str | None) -> int | None:
    """The id a reconnecting client last saw (header first), or None for a new client."""
    for field, value in (("Last-Event-ID", header), ("last_event_id", query)):
        if value is None or value.strip() == "":
            continue
        if not _EVENT_ID.fullmatch(value.strip()):
            raise InvalidInput(field, "must be an event id (digits)")
        return int(value.strip())
    return None


class EventStream(Response):
    """The streaming reply: a plain ASGI callable, so it can notice a client that left
    (http.disconnect) and drop one that stopped reading (a send that does not finish)."""

    media_type = "text/event-stream"

    def __init__(
        self,
        history: History,
        tracking: Tracking,
        threads: StoreThreads,
        tenant: str,
        after_id: int,
        still_allowed: Callable[[], Awaitable[None]],
        keepalive: float = KEEPALIVE_SECONDS,
        send_timeout: float = SEND_TIMEOUT_SECONDS,
    ) -> None:
        super().__init__(media_type=self.media_type)
        self._history = history
        self._tracking = tracking
        self._threads = threads
        self._tenant = tenant
        self._after = after_id
        self._unsettled: Unsettled | None = None
        self._still_allowed = still_allowed
        self._sent_at = 0.0  # loop time of the last bytes sent (keep-alives when quiet)
        self._keepalive = keepalive
        self._send_timeout = send_timeout

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        loop = asyncio.get_running_loop()
        wake = asyncio.Event()

        def listener(change: Change) -> None:
            if change.call.tenant == self._tenant:
                loop.call_soon_threadsafe(wake.set)  # stores may announce from a thread

        unsubscribe = self._tracking.subscribe(listener)
        gone = asyncio.create_task(_disconnected(receive))
        try:
            await send(
                {
                    "type": "http.response.start",
                    "status": 200,
                    "headers": [
                        (b"content-type", b"text/event-stream; charset=utf-8"),
                        (b"cache-control", b"no-cache"),
                        (b"x-accel-buffering", b"no"),  # nginx: pass events on at once
                    ],
                }
            )
            await self._send(send, f"retry: {RECONNECT_MS}\n\n".encode())
            await self._stream(send, wake, gone)
        except (Unauthorized, Forbidden, UnknownTenant) as exc:
            # A reconnecting client gets the 401/403 in words.
            log.info("live feed of tenant %s ended: %s", self._tenant, exc.message)
        except TimeoutError:
            log.warning(
                "live feed client of tenant %s took nothing for %.0f s: disconnected "
                "(it resumes from event %d)",
                self._tenant,
                self._send_timeout,
                self._after,
            )
        finally:
            unsubscribe()
            gone.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await gone

    async def _stream(self, send: Send, wake: asyncio.Event, gone: asyncio.Task[None]) -> None:
        loop = asyncio.get_running_loop()
        checked_at = loop.time()
        while not gone.done():
            if loop.time() - checked_at >= self._keepalive:
                # A stream outlives its request: a key revoked or a session ended since
                # must not go on reading the tenant's calls.
                with contextlib.suppress(DatabaseUnavailable):  # unknown: checked again
                    await self._still_allowed()
                checked_at = loop.time()
            wake.clear()  # before reading: a change stored meanwhile wakes the next wait
            read = await self._threads.run(
                self._history.feed, self._tenant, self._after, BATCH, self._unsettled
            )
            self._unsettled = read.unsettled
            if read.events:
                await self._send(send, b"".join(frame(e) for e in read.events))
            self._after = read.after_id
            if len(read.events) == BATCH:
                continue  # more are waiting
            # Held at an id a transaction may still commit: look again soon, whoever's
            # change it is (another tenant's wakes nobody here).
            wait = UNSETTLED_POLL_SECONDS if read.unsettled else self._keepalive
            woken = asyncio.create_task(wake.wait())
            done, _ = await asyncio.wait(
                {woken, gone}, timeout=wait, return_when=asyncio.FIRST_COMPLETED
            )
            woken.cancel()
            if not done and loop.time() - self._sent_at >= self._keepalive:
                await self._send(send, b": keep-alive\n\n")

    async def _send(self, send: Send, body: bytes) -> None:
        message = {"type": "http.response.body", "body": body, "more_body": True}
        async with asyncio.timeout(self._send_timeout):
            await send(message)
        self._sent_at = asyncio.get_running_loop().time()


async def _disconnected(receive: Receive) -> None:
    while (await receive())["type"] != "http.disconnect":
        pass


_SSE_EVENT = {
    "type": "object",
    "description": "One call event: id = global event id, event = its type, data = its body",
    "properties": {
        "id": {"type": "string"},
        "event": {"type": "string"},
        "data": {"type": "string"},
    },
}


@router.get(
    "/events",
    status_code=200,
    # Errors answer in the v1 JSON shape; only the 200 is the stream.
    responses={
        **ERRORS,
        200: {"content": {"text/event-stream": {"schema": _SSE_EVENT}}, "description": "SSE"},
    },
)
async def events(
    request: Request,
    tenant: Annotated[str | None, Query(pattern=fields.NAME)] = None,
    last_event_id: Annotated[str | None, Query(max_length=32)] = None,
) -> EventStream:
    """Call events of the caller's tenant as they are stored; resumable by event id.

    Without `Last-Event-ID` the feed starts with the next event stored."""
    runtime = runtime_of(request)
    with audited(request, "v1.feed", refusals_only=True) as decision:
        claimed = fields.name("tenant", tenant) if tenant else None
        decision.identity = identity = await identify(request, claimed)
        after = resume_point(request.headers.get("last-event-id"), last_event_id)
    history = History(runtime.store.engine)
    if after is None:
        after = await in_store_thread(request, history.last_event_id)
    return EventStream(
        history,
        runtime.tracking,
        runtime.store_threads,
        identity.tenant,
        after,
        still_allowed(request, claimed),
    )
