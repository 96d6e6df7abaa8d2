"""The SIP socket of a running server: keep-alive OPTIONS, junk, and a port it cannot share."""

from __future__ import annotations

import re
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from click2call.demo.server import ServerProcess
from click2call.demo.sipp import free_port
from tests.integration.conftest import Server, launch_sip

OPTIONS = (
    "OPTIONS sip:click2call@127.0.0.1:{port} SIP/2.0\r\n"
    "Via: SIP/2.0/UDP 127.0.0.1:{me};branch=z9hG4bK{branch};rport\r\n"
    "Max-Forwards: 70\r\nFrom: <sip:probe@127.0.0.1>;tag=p1\r\n"
    "To: <sip:click2call@127.0.0.1>\r\nCall-ID: probe-{branch}\r\nCSeq: 1 OPTIONS\r\n"
    "Content-Length: 0\r\n\r\n"
)


def sip_port(server: Server) -> int:
    config = (server.workdir / "click2call.toml").read_text()
    match = re.search(r"\[sip\]\nport = ([0-9]+)", config)
    assert match, config
    return int(match.group(1))


def ask(sock: socket.socket, port: int, data: bytes) -> bytes:
    sock.sendto(data, ("127.0.0.1", port))
    return sock.recv(65535)


@pytest.fixture
def probe() -> Iterator[socket.socket]:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    sock.settimeout(3)
    yield sock
    sock.close()


def test_options_outside_a_dialog_is_answered_200(server: Server, probe: socket.socket) -> None:
    port, me = sip_port(server), probe.getsockname()[1]
    answer = ask(probe, port, OPTIONS.format(port=port, me=me, branch="1").encode()).decode()
    assert answer.startswith("SIP/2.0 200 OK\r\n")
    assert "Allow: INVITE, ACK, CANCEL, BYE" in answer
    assert "CSeq: 1 OPTIONS" in answer and "Call-ID: probe-1" in answer


def test_junk_is_dropped_and_the_socket_keeps_working(server: Server, probe: socket.socket) -> None:
    port, me = sip_port(server), probe.getsockname()[1]
    for junk in (b"\x00\xff" * 40, b"INVITE sip:x SIP/2.0\r\n\r\n", b"SIP/2.0 999 x\r\n\r\n"):
        probe.sendto(junk, ("127.0.0.1", port))
    answer = ask(probe, port, OPTIONS.format(port=port, me=me, branch="2").encode())
    assert answer.startswith(b"SIP/2.0 200 OK")
    assert "dropped a malformed SIP message" in (server.workdir / "server.log").read_text()


def test_an_unknown_in_dialog_request_gets_481(server: Server, probe: socket.socket) -> None:
    port, me = sip_port(server), probe.getsockname()[1]
    bye = OPTIONS.format(port=port, me=me, branch="3").replace("OPTIONS", "BYE")
    bye = bye.replace("To: <sip:click2call@127.0.0.1>", "To: <sip:click2call@127.0.0.1>;tag=x")
    assert ask(probe, port, bye.encode()).startswith(b"SIP/2.0 481 ")


def test_an_unsolicited_invite_gets_one_405_and_no_retransmissions(
    server: Server, probe: socket.socket
) -> None:
    # Over UDP a stateful 405 would be resent for 32 s to whatever source address the
    # datagram claimed: a reflector. One stateless reply is all a stranger gets.
    port, me = sip_port(server), probe.getsockname()[1]
    invite = OPTIONS.format(port=port, me=me, branch="7").replace("OPTIONS", "INVITE")
    assert ask(probe, port, invite.encode()).startswith(b"SIP/2.0 405 ")
    probe.settimeout(1.2)  # Timer G would resend at 0.5 s and 1.5 s
    with pytest.raises(TimeoutError):
        probe.recv(65535)


def test_a_second_server_on_a_taken_sip_port_refuses_to_start(
    server: Server, tmp_path: Path
) -> None:
    http = free_port(socket.SOCK_STREAM)
    config = (server.workdir / "click2call.toml").read_text()
    config = re.sub(r"(\[server\]\nhost = \"127.0.0.1\"\nport = )[0-9]+", rf"\g<1>{http}", config)
    config = config.replace(str(server.workdir / "calls.db"), str(tmp_path / "calls.db"))
    (tmp_path / "click2call.toml").write_text(config)
    second = ServerProcess(
        tmp_path / "click2call.toml", f"http://127.0.0.1:{http}", tmp_path / "server.log"
    )
    with pytest.raises(RuntimeError, match="already in use by another process"):
        second.start(timeout=15)
    assert second.process is not None and second.process.returncode != 0
    # The first server still owns its port and answers on it.
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.bind(("127.0.0.1", 0))
        probe.settimeout(3)
        port, me = sip_port(server), probe.getsockname()[1]
        answer = ask(probe, port, OPTIONS.format(port=port, me=me, branch="4").encode())
        assert answer.startswith(b"SIP/2.0 200 OK")


def test_a_malformed_request_gets_400(server: Server, probe: socket.socket) -> None:
    port, me = sip_port(server), probe.getsockname()[1]
    bye = OPTIONS.format(port=port, me=me, branch="5").replace("OPTIONS", "BYE")
    bye = bye.replace("CSeq: 1 BYE", "CSeq: one BYE")
    answer = ask(probe, port, bye.encode()).decode()
    assert answer.startswith("SIP/2.0 400 Bad Request\r\n")
    assert "Call-ID: probe-5" in answer and "CSeq: one BYE" in answer


def _closed_by_server(sock: socket.socket, within: float) -> bool:
    sock.settimeout(within)
    try:
        return sock.recv(1) == b""
    except TimeoutError:
        return False
    except ConnectionResetError:
        return True


def test_tcp_connections_are_capped_and_quiet_ones_closed(tmp_path: Path) -> None:
    extra = "max_connections = 3\nconnection_idle_timeout = 2"
    process, server = launch_sip(tmp_path, {"default": ("127.0.0.1:9", "127.0.0.1:9")}, extra)
    port = sip_port(server)
    opened: list[socket.socket] = []
    try:
        for _ in range(4):
            opened.append(socket.create_connection(("127.0.0.1", port), timeout=3))
        *kept, refused = opened
        assert _closed_by_server(refused, 2)  # the fourth: over the cap
        speaking, keeping_alive, silent = kept
        options = OPTIONS.replace("UDP", "TCP").format(port=port, me=1, branch="tcp")
        speaking.sendall(options.encode())
        assert speaking.recv(65535).startswith(b"SIP/2.0 200 OK")
        for _ in range(6):  # CRLF keep-alives every 0.4 s hold a connection open
            keeping_alive.sendall(b"\r\n\r\n")
            time.sleep(0.4)
        assert not _closed_by_server(keeping_alive, 0.1)
        assert _closed_by_server(silent, 3)  # nothing for 2 s: closed
        assert _closed_by_server(speaking, 3)  # its one message is long past
    finally:
        for sock in opened:
            sock.close()
        process.stop()
    log = (tmp_path / "server.log").read_text()
    assert "SIP connections already open ([sip] max_connections)" in log
