"""Slow and greedy clients, stopped at the HTTP server's own layer (uvicorn's h11 protocol):
what an ASGI app cannot see, because it is called only once a request head is complete.

- `request_timeout`: a request has this long, from the connection opening (or the end of
  the previous response on a kept-alive connection) to its last body byte. Too slow: a
  client still sending its head gets `408` and the connection is closed; one still sending
  a body is disconnected. uvicorn's own `timeout_keep_alive` only covers idle connections,
  and is reset by every byte, so one byte every few seconds held a connection for ever.
- `max_connections_per_address`: connections one client address may hold at once; more
  are closed as they open.

The size of a request head is bounded by h11 (16 KiB); bodies by `limits.BodyLimit`.
"""

from __future__ import annotations

import asyncio
import logging

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol

from click2call.settings import ServerSettings

log = logging.getLogger("click2call.connections")
_REQUEST_TIMEOUT = b"HTTP/1.1 408 Request Timeout\r\nconnection: close\r\ncontent-length: 0\r\n\r\n"
_RECEIVED = (h11.DONE, h11.MUST_CLOSE)


def guarded_protocol(server: ServerSettings) -> type[H11Protocol]:
    """uvicorn's h11 protocol with the two bounds; one class (one count) per server."""
    timeout, cap = server.request_timeout, server.max_connections_per_address
    held: dict[str, int] = {}  # client address → connections open
    capped: set[str] = set()  # addresses refused since they last went under the cap

    class GuardedH11Protocol(H11Protocol):
        _deadline: asyncio.TimerHandle | None = None
        _address: str | None = None

        def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
            super().connection_made(transport)
            address = self.client[0] if self.client else None
            if address is not None:
                if held.get(address, 0) >= cap:
                    if address not in capped:
                        capped.add(address)
                        log.warning("%s holds %d connections: closing new ones", address, cap)
                    transport.close()
                    return
                held[address] = held.get(address, 0) + 1
                self._address = address
            self._arm()

        def connection_lost(self, exc: Exception | None) -> None:
            self._disarm()
            if self._address is not None:
                held[self._address] -= 1
                if held[self._address] < cap:
                    capped.discard(self._address)
                if not held[self._address]:
                    del held[self._address]
                self._address = None
            super().connection_lost(exc)

        def handle_events(self) -> None:
            super().handle_events()
            if self.conn.their_state in _RECEIVED:
                self._disarm()

        def on_response_complete(self) -> None:
            # The next request's time starts now, unless this one is still arriving (its
            # body unread by a refusal): that one keeps its deadline.
            if self._deadline is None and not self.transport.is_closing():
                self._arm()
            super().on_response_complete()

        def _arm(self) -> None:
            self._disarm()
            self._deadline = self.loop.call_later(timeout, self._expired)

        def _disarm(self) -> None:
            if self._deadline is not None:
                self._deadline.cancel()
                self._deadline = None

        def _expired(self) -> None:
            self._deadline = None
            if self.transport.is_closing():
                return
            client = self.client[0] if self.client else "-"
            log.info("%s: no whole request within %g s, closing the connection", client, timeout)
            if self.conn.our_state is h11.IDLE:  # no request to answer yet: say why
                self.transport.write(_REQUEST_TIMEOUT)
            self.transport.close()

    return GuardedH11Protocol
