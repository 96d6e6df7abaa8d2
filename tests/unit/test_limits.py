"""The body limit refuses at the read that would pass it, and never reads ahead."""

from __future__ import annotations

import pytest
from starlette.types import Message, Receive, Scope, Send

from click2call.api.limits import BodyLimit
from click2call.errors import BodyTooLarge


def _scope(*headers: tuple[bytes, bytes]) -> Scope:
    return {"type": "http", "method": "POST", "path": "/", "headers": list(headers)}


async def _read_all(app: BodyLimit, scope: Scope, chunks: list[bytes]) -> tuple[bytes, int]:
    """The body the app read, and how many messages it took from the server."""
    taken = 0
    read = b""

    async def receive() -> Message:
        nonlocal taken
        taken += 1
        return {"type": "http.request", "body": chunks.pop(0), "more_body": bool(chunks)}

    async def endpoint(_scope: Scope, receive: Receive, _send: Send) -> None:
        nonlocal read
        while True:
            message = await receive()
            read += message["body"]
            if not message["more_body"]:
                return

    async def send(_message: Message) -> None:
        raise AssertionError("nothing is sent by the limit itself")

    app.app = endpoint
    await app(scope, receive, send)
    return read, taken


async def test_a_declared_length_over_the_limit_is_refused_before_any_read() -> None:
    limit = BodyLimit(app=None, max_body_bytes=10)  # type: ignore[arg-type]
    arriving = [b"x" * 11]
    with pytest.raises(BodyTooLarge, match="over 10 bytes"):
        await _read_all(limit, _scope((b"content-length", b"11")), arriving)
    assert arriving == [b"x" * 11]


async def test_a_chunked_body_is_counted_as_it_arrives() -> None:
    limit = BodyLimit(app=None, max_body_bytes=10)  # type: ignore[arg-type]
    chunked = _scope((b"transfer-encoding", b"chunked"))
    assert await _read_all(limit, chunked, [b"12345", b"67890"]) == (b"1234567890", 2)
    arriving = [b"12345", b"67890", b"1", b"never read"]
    with pytest.raises(BodyTooLarge):
        await _read_all(limit, chunked, arriving)
    assert arriving == [b"never read"]
