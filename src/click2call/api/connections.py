"""Slow and greedy clients, stopped at the HTTP server's own layer (uvicorn's httptools
protocol, llhttp in C): what an ASGI app cannot see, because it is called only once a
request head is complete.

- `request_timeout`: a request has this long, from the connection opening (or the end of
  the previous response on a kept-alive connection) to its last body byte. Too slow: a
  client still sending its head gets `408` and the connection is closed; one still sending
  a body is disconnected. uvicorn's own `timeout_keep_alive` only covers idle connections,
  and is reset by every byte, so one byte every few seconds held a connection for ever.
- `max_connections_per_address`: connections one client address may hold at once; more
  are closed as they open.
- A request head (request line and header fields, and a chunked body's trailer fields)
  over `MAX_HEAD_BYTES` (16 KiB, the bound h11 kept before) is answered
  `431 Request Header Fields Too Large` and the connection is closed. llhttp keeps no
  bound of its own: it hands over the head in pieces, and the parser's Python wrapper
  joins a header field's pieces until the field ends. A chunked body's framing is not a
  head: llhttp streams it and keeps none of it.
- uvicorn is run with `ws="none"`: an upgraded connection would leave this protocol
  without its `connection_lost`, and its address's count would never go down.

Bodies are bounded by `limits.BodyLimit`.
"""

from __future__ import annotations

import asyncio
import logging

import httptools
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from click2call.settings import ServerSettings

log = logging.getLogger("click2call.connections")
MAX_HEAD_BYTES = 16 * 1024
_REQUEST_TIMEOUT = b"HTTP/1.1 408 Request Timeout\r\nconnection: close\r\ncontent-length: 0\r\n\r\n"
_TOO_LARGE = b"request head over %d bytes" % MAX_HEAD_BYTES
_HEAD_TOO_LARGE = (
    b"HTTP/1.1 431 Request Header Fields Too Large\r\nconnection: close\r\n"
    b"content-type: text/plain; charset=utf-8\r\ncontent-length: %d\r\n\r\n%s"
    % (len(_TOO_LARGE), _TOO_LARGE)
)
# A head's bytes beside its method, target and fields ("Name: value\r\n" is 4 more).
_REQUEST_LINE = len(" ") + len(" HTTP/1.1\r\n") + len("\r\n")

# Where the parser is in the request it reads.
_IDLE, _HEAD, _BODY = "idle", "head", "body"


class _HeadTooLarge(Exception):
    """Raised inside a parser callback: stops llhttp at once."""


def guarded_protocol(server: ServerSettings) -> type[HttpToolsProtocol]:
    """uvicorn's httptools protocol with the bounds; one class (one count) per server."""
    timeout, cap = server.request_timeout, server.max_connections_per_address
    held: dict[str, int] = {}  # client address → connections open
    capped: set[str] = set()  # addresses refused since they last went under the cap

    class GuardedHttpToolsProtocol(HttpToolsProtocol):
        _deadline: asyncio.TimerHandle | None = None
        _address: str | None = None
        _phase = _IDLE
        _head_bytes = 0  # of the request being read, as the parser's callbacks saw them
        _spanned = 0  # bytes outside its body of feeds wholly inside one request
        _boundaries = 0  # requests begun or ended so far
        _fed_body = 0  # body bytes of the feed in progress
        _fed_heads = 0  # head bytes of the requests read whole in the feed in progress
        _received = 0  # whole requests read
        _answered = 0  # responses completed
        _stopped_by: _HeadTooLarge | None = None  # why a callback stopped the parser

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

        def data_received(self, data: bytes) -> None:
            self._unset_keepalive_if_required()
            boundaries, self._fed_body, self._fed_heads = self._boundaries, 0, 0
            try:
                self.parser.feed_data(data)
            except httptools.HttpParserUpgrade:
                if self._should_upgrade():
                    self.handle_websocket_upgrade()
                else:
                    self._unsupported_upgrade_warning()
                return
            except httptools.HttpParserError:
                if self._stopped_by is not None:
                    self._refuse_head()
                else:
                    self.logger.warning("Invalid HTTP request received.")
                    self.send_400_response("Invalid HTTP request received.")
                return
            # What the callbacks have not seen yet: a field's pieces, joined by the parser
            # until the field ends. What is neither body nor an earlier request's head is
            # the head (or trailer, or chunk framing) of the request being read.
            if boundaries == self._boundaries and self._phase is not _IDLE:
                if self._phase is _BODY and self._fed_body:
                    # Chunk framing between body bytes: llhttp streams it and keeps none,
                    # so only what follows the last body byte (a trailer) is counted.
                    self._spanned = 0
                else:
                    self._spanned += len(data) - self._fed_body
            elif self._phase is _HEAD:  # a request began in this feed, its head unfinished
                self._spanned = len(data) - self._fed_body - self._fed_heads
            if self._spanned > MAX_HEAD_BYTES:
                self._refuse_head()

        def _count_head(self, size: int) -> None:
            self._head_bytes += size
            if self._head_bytes > MAX_HEAD_BYTES:
                self._stopped_by = _HeadTooLarge()
                raise self._stopped_by

        def on_message_begin(self) -> None:
            self._boundaries += 1
            self._phase, self._head_bytes, self._spanned = _HEAD, 0, 0
            super().on_message_begin()

        def on_url(self, url: bytes) -> None:
            self._count_head(len(url))
            super().on_url(url)

        def on_header(self, name: bytes, value: bytes) -> None:
            self._count_head(len(name) + len(value) + 4)
            if self._phase is _HEAD:
                super().on_header(name, value)
            # Trailer fields are counted, never kept: no endpoint reads them.

        def on_headers_complete(self) -> None:
            self._count_head(len(self.parser.get_method()) + _REQUEST_LINE)
            self._phase = _BODY
            super().on_headers_complete()

        def on_body(self, body: bytes) -> None:
            self._fed_body += len(body)
            super().on_body(body)

        def on_message_complete(self) -> None:
            self._boundaries += 1
            self._received += 1
            self._fed_heads += self._head_bytes
            self._phase = _IDLE
            self._disarm()
            super().on_message_complete()
            if self._received == self._answered and not self.transport.is_closing():
                # Answered before its body was read (a refusal): the next request's time
                # starts now, as it would have at the response's end.
                self._arm()

        def on_response_complete(self) -> None:
            self._answered += 1
            # The next request's time starts now, unless it is here whole already (it was
            # pipelined), or this one is still arriving (its body unread by a refusal): that
            # one keeps its deadline.
            if (
                self._deadline is None
                and self._received == self._answered
                and not self.transport.is_closing()
            ):
                self._arm()
            super().on_response_complete()

        def _refuse_head(self) -> None:
            client = self.client[0] if self.client else "-"
            log.info("%s: request head over %d bytes, closing", client, MAX_HEAD_BYTES)
            self._close_with(_HEAD_TOO_LARGE)

        def _close_with(self, reply: bytes) -> None:
            """Close the connection, saying why unless a response is being sent."""
            cycle = self.cycle
            if cycle is None or not cycle.response_started or cycle.response_complete:
                if cycle is not None:
                    cycle.disconnected = True  # a request still in the app is not answered
                self.transport.write(reply)
            self.transport.close()

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
            if self._phase is _BODY:  # its app is reading the body: it answers nobody
                self.transport.close()
            else:  # no whole head yet: say why
                self._close_with(_REQUEST_TIMEOUT)

    return GuardedHttpToolsProtocol
