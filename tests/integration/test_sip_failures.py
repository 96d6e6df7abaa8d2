"""Peers that cannot be reached end the leg at once, with the cause in words.

An unresolvable PBX name, a closed UDP port (ICMP port unreachable), a refused TCP
connection and a TLS peer whose certificate we do not trust: each call ends
`agent_failed` within a moment, far before its ring timeout, and the log says why.
OPTIONS probes show each tenant's PBX and trunk in /api/v1/health.
"""

from __future__ import annotations

import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from click2call.demo.sipp import SippPeer, free_port, terminate
from tests.integration.conftest import Server, launch_sip, make_certificate

TESTS = Path(__file__).parents[1] / "sipp"


def _listening(port: int) -> bool:
    with socket.socket() as probe:
        return probe.connect_ex(("127.0.0.1", port)) == 0


@pytest.fixture(scope="module")
def untrusted_tls(tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    """`openssl s_server` with a self-signed certificate nobody trusts."""
    folder = tmp_path_factory.mktemp("tls")
    cert, key = make_certificate(folder)
    port = free_port(socket.SOCK_STREAM)
    process = subprocess.Popen(
        [
            *("openssl", "s_server", "-quiet", "-accept", f"127.0.0.1:{port}"),
            *("-cert", str(cert), "-key", str(key)),
        ],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 5
    while not _listening(port):
        assert time.monotonic() < deadline, "openssl s_server did not start"
        time.sleep(0.05)
    yield port
    terminate(process)


@pytest.fixture(scope="module")
def options_peer(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SippPeer]:
    folder = tmp_path_factory.mktemp("options")
    peer = SippPeer(TESTS / "options_answer.xml", free_port(), folder, calls=1000).start()
    yield peer
    peer.stop()


@pytest.fixture(scope="module")
def failing(
    tmp_path_factory: pytest.TempPathFactory, untrusted_tls: int, options_peer: SippPeer
) -> Iterator[Server]:
    folder = tmp_path_factory.mktemp("failing")
    closed = f"127.0.0.1:{free_port()}"
    pbxs = {
        "unresolvable": "pbx.invalid:5070",
        "udp_down": closed,
        "tcp_down": f"sip:127.0.0.1:{free_port(socket.SOCK_STREAM)};transport=tcp",
        "tls_untrusted": f"sips:127.0.0.1:{untrusted_tls}",
        "probed": options_peer.address,
    }
    process, server = launch_sip(
        folder, {name: (pbx, closed) for name, pbx in pbxs.items()}, "options_interval = 0.3"
    )
    yield server
    process.stop()


@pytest.mark.parametrize(
    ("tenant", "cause"),
    [
        ("unresolvable", "cannot resolve pbx.invalid"),
        ("udp_down", "port unreachable"),
        ("tcp_down", "connection refused by 127.0.0.1:"),
        ("tls_untrusted", "TLS handshake with 127.0.0.1:"),
    ],
)
def test_an_unreachable_pbx_fails_the_call_at_once(
    failing: Server, tenant: str, cause: str
) -> None:
    started = time.monotonic()
    with failing.client() as client:
        body = {"tenant": tenant, "extension": "200", "destination": "0502760206"}
        reply = client.post("/api/v1/calls", json=body)
        assert reply.status_code == 201, reply.text
        call_id = reply.json()["id"]
        while True:
            call = client.get(f"/api/v1/calls/{call_id}").json()
            if call["state"] == "ended" or time.monotonic() - started > 10:
                break
            time.sleep(0.05)
    assert call["state"] == "ended"
    assert time.monotonic() - started < 5  # not the 20 s ring timeout
    assert call["result"] == "agent_failed"
    assert cause in call["cause"]
    assert cause in (failing.workdir / "server.log").read_text()  # and the log says so


def test_health_shows_each_peer_from_options_probes(failing: Server) -> None:
    deadline = time.monotonic() + 5
    with failing.client() as client:
        while True:
            tenants = client.get("/api/v1/health").json()["tenants"]
            peers = {p["role"]: p for p in tenants["probed"]["peers"]}
            if peers["pbx"]["state"] == "up" and peers["trunk"]["state"] == "down":
                break
            assert time.monotonic() < deadline, peers
            time.sleep(0.1)
    assert peers["pbx"]["last_reply"] == "200 OK"
    assert peers["pbx"]["rtt_ms"] is not None and peers["pbx"]["rtt_ms"] < 1000
    assert peers["pbx"]["reason"] is None
    assert "port unreachable" in peers["trunk"]["reason"]
    assert tenants["probed"]["ok"] is True  # the engine itself is fine
    unresolvable = {p["role"]: p for p in tenants["unresolvable"]["peers"]}["pbx"]
    assert unresolvable["state"] == "down"
    assert "cannot resolve pbx.invalid" in unresolvable["reason"]
