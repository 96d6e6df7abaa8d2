"""Kamailio as a record-routing proxy between click2call and the SIPp phones, over UDP
and over TLS (SIPp as packaged by Debian has no TLS; Kamailio terminates it).

The call connects through the proxy, and every later request follows the route set in
both directions: our ACK, re-INVITE and BYE reach the phones through Kamailio (two Via
headers, a Route naming the proxy consumed), and the destination's BYE, sent along its
own route set, reaches us through it too.
"""

from __future__ import annotations

import re
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from click2call.demo.sipp import SippPeer, free_port, terminate
from tests.integration.conftest import Server, launch_sip, make_certificate

KAMAILIO_CFG = Path(__file__).parents[1] / "peers" / "kamailio.cfg"


def _bound_udp(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return True
        return False


TLS_CFG = """
[server:default]
method = TLSv1.2+
verify_certificate = no
require_certificate = no
certificate = {cert}
private_key = {key}

[client:default]
method = TLSv1.2+
verify_certificate = no
require_certificate = no
"""


def _listening(port: int) -> bool:
    with socket.socket() as probe:
        return probe.connect_ex(("127.0.0.1", port)) == 0


class Proxy:
    def __init__(self, folder: Path, tls: tuple[Path, Path] | None = None) -> None:
        self.pbx_front, self.trunk_front = free_port(), free_port()
        self.tls_front = free_port(socket.SOCK_STREAM)
        self.pbx, self.trunk = free_port(), free_port()
        self.log = folder / "kamailio.log"
        config = KAMAILIO_CFG.read_text()
        for mark, value in (
            ("@PBX_FRONT@", self.pbx_front),
            ("@TRUNK_FRONT@", self.trunk_front),
            ("@TLS_FRONT@", self.tls_front),
            ("@PBX@", self.pbx),
            ("@TRUNK@", self.trunk),
            ("@TLS_CONFIG@", folder / "tls.cfg"),
        ):
            config = config.replace(mark, str(value))
        (folder / "kamailio.cfg").write_text(config)
        options: tuple[str, ...] = ()
        if tls is not None:
            (folder / "tls.cfg").write_text(TLS_CFG.format(cert=tls[0], key=tls[1]))
            options = ("-A", "WITH_TLS")
        with self.log.open("wb") as log:
            self.process = subprocess.Popen(
                [
                    *("kamailio", "-DD", "-E", "-f", str(folder / "kamailio.cfg"), *options),
                    *("-Y", str(folder), "-P", str(folder / "kamailio.pid"), "-w", str(folder)),
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + 10
        while not (
            _bound_udp(self.pbx_front)
            and _bound_udp(self.trunk_front)
            and (tls is None or _listening(self.tls_front))
        ):
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"kamailio did not start:\n{self.log.read_text()}")
            time.sleep(0.05)

    def stop(self) -> None:
        terminate(self.process)


@pytest.fixture(scope="module")
def proxy(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Proxy]:
    if shutil.which("kamailio") is None:
        pytest.skip("kamailio is not installed (make system-deps installs it)")
    running = Proxy(tmp_path_factory.mktemp("kamailio"))
    yield running
    running.stop()


@pytest.fixture(scope="module")
def tls_proxy(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Proxy, Path, Path]]:
    if shutil.which("kamailio") is None:
        pytest.skip("kamailio is not installed (make system-deps installs it)")
    folder = tmp_path_factory.mktemp("kamailio-tls")
    cert, key = make_certificate(folder)
    running = Proxy(folder, (cert, key))
    yield running, cert, key
    running.stop()


@pytest.fixture(scope="module")
def proxied(tmp_path_factory: pytest.TempPathFactory, proxy: Proxy) -> Iterator[Server]:
    front = (f"127.0.0.1:{proxy.pbx_front}", f"127.0.0.1:{proxy.trunk_front}")
    process, server = launch_sip(
        tmp_path_factory.mktemp("proxied"), {"default": front}, "options_interval = 0"
    )
    yield server
    process.stop()


def requests(messages: list[str], method: str) -> list[str]:
    return [m for m in messages if m.startswith(f"{method} ")]


def routed_call(server: Server, proxy: Proxy) -> tuple[SippPeer, SippPeer]:
    """One dial.php call through the proxy to SIPp phones that copy Record-Route; the
    destination hangs up first. The two phones, once they passed their scenarios."""
    agent = server.peer("agent_answer_routed.xml", proxy.pbx)
    destination = server.peer("destination_hangup_routed.xml", proxy.trunk)
    with server.client() as client:
        reply = client.get("/web/dial.php?extension=200&destination=0502760206")
        assert reply.status_code == 200, reply.text
        call_id = int(reply.text.split("unique: ")[1])
    call = server.wait_for(call_id)
    for peer in (agent, destination):
        assert peer.wait(20) == 0, peer.errors()
    assert (call["result"], call["cause"]) == ("completed", "destination hung up")
    return agent, destination


def vias(message: str) -> list[str]:
    return re.findall(r"^Via:\s*(.*)$", message, re.MULTILINE | re.IGNORECASE)


def test_calls_and_in_dialog_requests_follow_the_route_set(proxied: Server, proxy: Proxy) -> None:
    agent, destination = routed_call(proxied, proxy)

    front = f"127.0.0.1:{proxy.pbx_front}"
    invite, reinvite = requests(agent.received(), "INVITE")
    assert invite.startswith(f"INVITE sip:200@{front}")
    assert re.search(rf"^Record-Route:\s*<sip:{re.escape(front)};lr", invite, re.M | re.I)
    for message in (
        reinvite,
        *requests(agent.received(), "ACK"),
        *requests(agent.received(), "BYE"),
    ):
        assert len(vias(message)) == 2, message  # ours, then Kamailio's: through the proxy
        assert "Route:" not in message  # the proxy consumed its own Route entry
    assert reinvite.startswith("INVITE sip:service@127.0.0.1:")  # the phone's Contact
    trunk_ack = requests(destination.received(), "ACK")[0]
    assert len(vias(trunk_ack)) == 2, trunk_ack
    log = proxy.log.read_text()
    assert re.search(r"proxy: BYE sip:click2call@127\.0\.0\.1:[0-9]+", log), log[-2000:]


def test_a_call_over_tls_to_the_pbx(tmp_path: Path, tls_proxy: tuple[Proxy, Path, Path]) -> None:
    """sips: towards the PBX: TLS verified against the test's CA, our TLS listener for
    the requests the proxy sends back."""
    proxy, cert, key = tls_proxy
    tls_port = free_port(socket.SOCK_STREAM)
    sip = (
        f'options_interval = 0\ntls_port = {tls_port}\ntls_ca_file = "{cert}"\n'
        f'tls_cert_file = "{cert}"\ntls_key_file = "{key}"'
    )
    pbx, trunk = f"sips:127.0.0.1:{proxy.tls_front}", f"127.0.0.1:{proxy.trunk_front}"
    process, server = launch_sip(tmp_path, {"default": (pbx, trunk)}, sip)
    try:
        agent, _ = routed_call(server, proxy)
    finally:
        process.stop()
    invite, reinvite = requests(agent.received(), "INVITE")
    assert invite.startswith(f"INVITE sips:200@127.0.0.1:{proxy.tls_front}")
    assert vias(invite)[1].startswith("SIP/2.0/TLS 127.0.0.1:")  # ours, over TLS
    assert vias(reinvite)[1].startswith("SIP/2.0/TLS 127.0.0.1:")
    assert requests(agent.received(), "BYE"), "the agent's BYE went out over TLS too"
