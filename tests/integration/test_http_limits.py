"""Hostile clients over real sockets: huge bodies, slow clients, connection floods."""

from __future__ import annotations

import select
import socket
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

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


def _push(sock: socket.socket, head: bytes, body_bytes: int, chunked: bool) -> bytes:
    """Send `head` and up to `body_bytes` of body, stopping as soon as a reply arrives."""
    sock.sendall(head)
    sock.setblocking(False)
    piece = b"x" * (1 << 20)
    if chunked:
        piece = b"%x\r\n" % len(piece) + piece + b"\r\n"
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
    with guarded.connect() as sock:
        reply = _push(sock, head, HUGE, chunked)
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
