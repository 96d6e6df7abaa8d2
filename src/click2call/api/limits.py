"""The request body limit, as a plain ASGI layer around the app.

Nothing is buffered here: the limit is checked as the endpoint reads. A declared
Content-Length over the limit is refused at the first read, before a byte of the body is
taken; a chunked or understated body is counted as it arrives and refused once it passes
the limit. The refusal is `BodyTooLarge`, raised inside the endpoint's own read, so each
endpoint answers it in its own shape and audits it like any other refusal.

The unread rest of a refused body is discarded by the HTTP server as it arrives (never
kept), within the request_timeout of `api/connections.py`; the client reads the refusal
once it has sent its body, as HTTP/1.1 clients do.
"""

from __future__ import annotations

from starlette.requests import ClientDisconnect
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from click2call.errors import BodyTooLarge


def _content_length(scope: Scope) -> int | None:
    for name, value in scope["headers"]:
        if name == b"content-length" and value.isdigit():
            return int(value)
    return None


class BodyLimit:
    def __init__(self, app: ASGIApp, max_body_bytes: int) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.max_body_bytes
        declared = _content_length(scope)
        received = 0

        async def bounded_receive() -> Message:
            nonlocal received
            if declared is not None and declared > limit:
                raise BodyTooLarge(limit)
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise BodyTooLarge(limit)
            return message

        try:
            await self.app(scope, bounded_receive, send)
        except ClientDisconnect:
            # The client left, or was cut off as too slow, while its body was being read:
            # there is nobody to answer, and the endpoint has audited the refusal.
            return
