"""Hostile clients over real sockets: huge bodies, slow clients, connection floods."""

from __future__ import annotations

import re
import select
import socket
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from click2call.api.connections import MAX_HEAD_BYTES
from click2call.demo.server import ServerProcess
from click2call.demo.sipp import free_port
from tests.integration.conftest import CONFIG

REQUEST_TIMEOUT = 2.0
PER_ADDRESS = 20
LIMITS = f"""log_level = "info"
request_timeout = {REQUEST_TIMEOUT}
max_connections_per_address = {PER_ADDRESS}
"""


@dataclass
class Guarded:
    base_url: str
    port: int
    process: ServerProcess

    def memory_peak_kib(self) -> int:
        status = Path(f"/proc/{self.process.pid}/status").read_text()
        return int(
            next(line for line in status.splitlines() if line.startswith("VmHWM")).split()[1]
        )

    def connect(self) -> socket.socket:
        return socket.create_connection(("127.0.0.1", self.port), timeout=10)


@pytest.fixture(scope="module")
def guarded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Guarded]:
    workdir = tmp_path_factory.mktemp("limits")
    http = free_port(socket.SOCK_STREAM)
    ports = {name: free_port() for name in ("sip", "pbx", "trunk", "mobile_trunk")}
    config = workdir / "click2call.toml"
    database = f"sqlite:///{workdir / 'calls.db'}"
    text = CONFIG.format(http=http, database=database, server_extra="", **ports)
    config.write_text(text.replace('log_level = "info"\n', LIMITS, 1))
    base_url = f"http://127.0.0.1:{http}"
    process = ServerProcess(config, base_url, workdir / "server.log").start()
    yield Guarded(base_url, http, process)
    process.stop()


def _reply(sock: socket.socket, timeout: float = 10) -> bytes:
    """Everything the server sends until it closes or goes quiet."""
    sock.settimeout(timeout)
    data = b""
    try:
        while chunk := sock.recv(65536):
            data += chunk
            if b"\r\n\r\n" in data and sock.gettimeout() != 0.5:
                sock.settimeout(0.5)  # the head is in; take what follows, then stop
    except (TimeoutError, ConnectionResetError):
        pass
    return data


def _push(
    sock: socket.socket, head: bytes, body_bytes: int, chunked: bool, start: bytes = b""
) -> bytes:
    """Send `head` and up to `body_bytes` of body (beginning with `start`), stopping as soon
    as a reply arrives."""
    sock.sendall(head)
    sock.setblocking(False)
    piece = b"x" * (1 << 20)
    if chunked:
        piece = b"%x\r\n" % len(piece) + piece + b"\r\n"
        start = b"%x\r\n" % len(start) + start + b"\r\n" if start else b""
    if start:
        sock.sendall(start)
    sent = 0
    while sent < body_bytes:
        readable, writable, _ = select.select([sock], [sock], [], 10)
        if readable:
            break
        if writable:
            try:
                sent += sock.send(piece)
            except (BlockingIOError, BrokenPipeError, ConnectionResetError):
                break
    sock.setblocking(True)
    return _reply(sock)


HUGE = 300 * 1024 * 1024


@pytest.mark.parametrize(
    ("path", "headers", "chunked", "status", "shape"),
    [
        # credentials come first: a wrong key is refused before a byte of the body is read
        ("/api/v1/calls", "X-API-Key: not-a-key", False, 401, b'"id":"unauthorized"'),
        ("/api/v1/widget-tokens", "X-API-Key: not-a-key", False, 401, b'"id":"unauthorized"'),
        ("/api/v1/calls", "Accept: */*", False, 413, b'"body_too_large"'),
        ("/api/v1/calls", "Accept: */*", True, 413, b'"body_too_large"'),
        (
            "/web/dial.php",
            "Content-Type: application/x-www-form-urlencoded",
            False,
            413,
            b"response: false\nunique: \nerror: request body over 65536 bytes",
        ),
        (
            "/web/dial.php",
            "Content-Type: multipart/form-data; boundary=b",
            True,
            413,
            b"response: false\n",
        ),
        (
            "/voipe/dial_external.php",
            "Content-Type: application/x-www-form-urlencoded",
            True,
            413,
            b'{"status":"error","error":"request body over 65536 bytes',
        ),
    ],
)
def test_a_huge_body_is_refused_without_being_kept(
    guarded: Guarded, path: str, headers: str, chunked: bool, status: int, shape: bytes
) -> None:
    before = guarded.memory_peak_kib()
    length = "Transfer-Encoding: chunked" if chunked else f"Content-Length: {HUGE}"
    head = f"POST {path} HTTP/1.1\r\nHost: x\r\n{headers}\r\n{length}\r\n\r\n".encode()
    if path.startswith("/api/v1/"):
        head = head.replace(b"\r\n\r\n", b"\r\nContent-Type: application/json\r\n\r\n")
    # A well-formed start, so the form parser is still reading a field when the limit
    # is reached (junk from the first byte may be refused as junk first: also a 400).
    start = b'--b\r\nContent-Disposition: form-data; name="foreignid"\r\n\r\n'
    with guarded.connect() as sock:
        reply = _push(sock, head, HUGE, chunked, start if "multipart" in headers else b"")
    assert reply.startswith(f"HTTP/1.1 {status} ".encode()), reply[:200]
    assert shape in reply
    assert guarded.memory_peak_kib() - before < 20 * 1024  # KiB; the body was 300 MiB


def test_a_slow_client_is_cut_off_while_others_are_served(guarded: Guarded) -> None:
    slow_head, slow_body = guarded.connect(), guarded.connect()
    started = time.monotonic()
    slow_head.sendall(b"GET /api/v1/health HTTP/1.1\r\nHost: x\r\n")
    slow_body.sendall(
        b"POST /web/dial.php HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n"
        b"Content-Type: application/x-www-form-urlencoded\r\n\r\nextension=200"
    )
    closed: dict[str, float] = {}
    with httpx.Client(base_url=guarded.base_url, timeout=5) as client:
        while len(closed) < 2 and time.monotonic() - started < REQUEST_TIMEOUT * 3:
            for name, sock in (("head", slow_head), ("body", slow_body)):
                if name in closed:
                    continue
                try:
                    sock.sendall(b"X")  # a byte now and then: never a whole request
                except (BrokenPipeError, ConnectionResetError):
                    closed[name] = time.monotonic() - started
            assert client.get("/api/v1/health").status_code == 200  # others are served
            time.sleep(0.2)
    assert set(closed) == {"head", "body"}
    assert all(REQUEST_TIMEOUT * 0.9 < after < REQUEST_TIMEOUT * 2.5 for after in closed.values())
    assert _reply(slow_head).startswith(b"HTTP/1.1 408 ")
    slow_head.close()
    slow_body.close()


def test_one_address_holds_a_bounded_number_of_connections(guarded: Guarded) -> None:
    held = [guarded.connect() for _ in range(PER_ADDRESS)]
    try:
        with guarded.connect() as extra:
            extra.sendall(b"GET /api/v1/health HTTP/1.1\r\nHost: x\r\n\r\n")
            assert _reply(extra, timeout=2) == b""  # closed at once, unanswered
        held.pop().close()
        time.sleep(0.1)
        with guarded.connect() as again:
            again.sendall(b"GET /api/v1/health HTTP/1.1\r\nHost: x\r\n\r\n")
            assert _reply(again).startswith(b"HTTP/1.1 200 ")
    finally:
        for sock in held:
            sock.close()


HEALTH = b"GET /api/v1/health HTTP/1.1\r\nHost: x\r\n"


def _pieces(data: bytes, size: int) -> list[bytes]:
    return [data[i : i + size] for i in range(0, len(data), size)]


@pytest.mark.parametrize(
    "head",
    [
        b"GET /api/v1/health?pad=" + b"x" * MAX_HEAD_BYTES + b" HTTP/1.1\r\nHost: x\r\n\r\n",
        HEALTH + b"X-Pad: " + b"x" * MAX_HEAD_BYTES + b"\r\n\r\n",
        HEALTH + b"".join(b"X-Pad-%d: %s\r\n" % (i, b"x" * 1000) for i in range(17)) + b"\r\n",
        HEALTH + b"X-Pad: " + b"x" * (4 * MAX_HEAD_BYTES),  # a field that never ends
    ],
    ids=["target", "one field", "many fields", "endless field"],
)
@pytest.mark.parametrize("piece", [None, 1000], ids=["whole", "in pieces"])
def test_a_head_over_16_kib_is_refused_with_431(
    guarded: Guarded, head: bytes, piece: int | None
) -> None:
    with guarded.connect() as sock:
        for part in _pieces(head, piece) if piece else [head]:
            try:
                sock.sendall(part)
            except (BrokenPipeError, ConnectionResetError):
                break
            if piece:
                time.sleep(0.001)
        reply = _reply(sock)
    assert reply.startswith(b"HTTP/1.1 431 Request Header Fields Too Large\r\n"), reply[:200]
    assert reply.endswith(b"request head over 16384 bytes")


@pytest.mark.parametrize("piece", [None, 1000], ids=["whole", "in pieces"])
def test_a_head_under_16_kib_is_served(guarded: Guarded, piece: int | None) -> None:
    head = HEALTH + b"".join(b"X-Pad-%d: %s\r\n" % (i, b"x" * 1000) for i in range(15)) + b"\r\n"
    with guarded.connect() as sock:
        for part in _pieces(head, piece) if piece else [head]:
            sock.sendall(part)
        assert _reply(sock).startswith(b"HTTP/1.1 200 ")


def test_pipelined_requests_are_answered_in_order_on_one_connection(guarded: Guarded) -> None:
    # 300 requests in one send, over 16 KiB together: each head is counted on its own.
    heads = [b"GET /api/v1/calls/%d HTTP/1.1\r\nHost: x\r\n\r\n" % i for i in range(299)]
    with guarded.connect() as sock:
        sock.sendall(b"".join(heads) + HEALTH + b"Connection: close\r\n\r\n")
        reply = b""
        while chunk := sock.recv(65536):
            reply += chunk
    statuses = re.findall(rb"HTTP/1\.1 ([0-9]{3}) ", reply)
    assert statuses == [b"404"] * 299 + [b"200"]


def test_a_chunked_body_with_trailer_fields_is_read_and_its_trailers_bounded(
    guarded: Guarded,
) -> None:
    body = b'{"extension": "200", "destination": "0502760206"}'
    head = (
        b"POST /api/v1/calls HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        b"Transfer-Encoding: chunked\r\nX-API-Key: not-a-key\r\n\r\n"
    )
    chunks = b"".join(b"%x\r\n%s\r\n" % (len(p), p) for p in _pieces(body, 7))
    with guarded.connect() as sock:
        sock.sendall(head + chunks + b"0\r\nX-Checksum: 1\r\n\r\n")
        assert _reply(sock).startswith(b"HTTP/1.1 401 ")  # the request went through whole
    head = head.replace(b"X-API-Key: not-a-key\r\n", b"")
    with guarded.connect() as sock:
        sock.sendall(head + chunks + b"0\r\nX-Checksum: " + b"1" * MAX_HEAD_BYTES + b"\r\n\r\n")
        assert _reply(sock).startswith(b"HTTP/1.1 431 ")


def test_a_body_in_many_small_chunks_is_not_taken_for_a_head(guarded: Guarded) -> None:
    # 4,000 body bytes as 1-byte chunks: ~20 KB of chunk framing, all of it streamed by
    # llhttp, none of it a head.
    body = b"extension=abc&destination=0502760206&pad=" + b"y" * 3960
    head = (
        b"POST /web/dial.php HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n"
        b"Content-Type: application/x-www-form-urlencoded\r\n\r\n"
    )
    chunks = b"".join(b"1\r\n%s\r\n" % body[i : i + 1] for i in range(len(body)))
    with guarded.connect() as sock:
        sock.sendall(head)
        for part in _pieces(chunks + b"0\r\n\r\n", len(chunks) // 10):
            sock.sendall(part)
            time.sleep(0.01)
        reply = _reply(sock)
    assert reply.startswith(b"HTTP/1.1 400 "), reply[:200]
    assert b"extension" in reply


def test_a_request_answered_before_its_body_still_bounds_the_next_one(guarded: Guarded) -> None:
    # A wrong key is refused before the body is read; the body then comes, and the next
    # request's head trickles in a byte at a time: it gets the same deadline as any other.
    with guarded.connect() as sock:
        sock.sendall(
            b"POST /api/v1/calls HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"X-API-Key: not-a-key\r\nContent-Length: 20\r\n\r\n"
        )
        sock.settimeout(10)
        first = sock.recv(65536)
        assert first.startswith(b"HTTP/1.1 401 ")
        head, _, body = first.partition(b"\r\n\r\n")
        length = int(re.search(rb"content-length: (\d+)", head, re.IGNORECASE)[1])  # type: ignore[index]
        while len(body) < length:  # the 401's body may come in a later read
            body += sock.recv(65536)
        sock.sendall(b"{" + b" " * 18 + b"}" + HEALTH + b"X-Pad: ")
        started = time.monotonic()
        closed = None
        while closed is None and time.monotonic() - started < REQUEST_TIMEOUT * 4:
            try:
                sock.sendall(b"x")  # a field that never ends: never a whole head
            except (BrokenPipeError, ConnectionResetError):
                closed = time.monotonic() - started
                break
            readable, _, _ = select.select([sock], [], [], 0.2)
            if readable:
                # The 408, or a reset: the bytes still arriving when the server closed
                # make its kernel reset the connection, which may drop the 408 unread.
                reply = _reply(sock)
                assert reply == b"" or reply.startswith(b"HTTP/1.1 408 "), reply[:200]
                closed = time.monotonic() - started
    assert closed is not None, "the trickling head was never cut off"
