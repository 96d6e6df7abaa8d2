"""Kamailio as a record-routing proxy between click2call and the SIPp phones.

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

from click2call.demo.sipp import free_port, terminate
from tests.integration.conftest import Server, launch_sip

KAMAILIO_CFG = Path(__file__).parents[1] / "peers" / "kamailio.cfg"


def _bound_udp(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return True
        return False


class Proxy:
    def __init__(self, folder: Path) -> None:
        self.pbx_front, self.trunk_front = free_port(), free_port()
        self.pbx, self.trunk = free_port(), free_port()
        self.log = folder / "kamailio.log"
        config = KAMAILIO_CFG.read_text()
        for mark, port in (
            ("@PBX_FRONT@", self.pbx_front),
            ("@TRUNK_FRONT@", self.trunk_front),
            ("@PBX@", self.pbx),
            ("@TRUNK@", self.trunk),
        ):
            config = config.replace(mark, str(port))
        (folder / "kamailio.cfg").write_text(config)
        with self.log.open("wb") as log:
            self.process = subprocess.Popen(
                [
                    *("kamailio", "-DD", "-E", "-f", str(folder / "kamailio.cfg")),
                    *("-Y", str(folder), "-P", str(folder / "kamailio.pid"), "-w", str(folder)),
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + 10
        while not (_bound_udp(self.pbx_front) and _bound_udp(self.trunk_front)):
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
def proxied(tmp_path_factory: pytest.TempPathFactory, proxy: Proxy) -> Iterator[Server]:
    front = (f"127.0.0.1:{proxy.pbx_front}", f"127.0.0.1:{proxy.trunk_front}")
    process, server = launch_sip(
        tmp_path_factory.mktemp("proxied"), {"default": front}, "options_interval = 0"
    )
    yield server
    process.stop()


def requests(messages: list[str], method: str) -> list[str]:
    return [m for m in messages if m.startswith(f"{method} ")]


def vias(message: str) -> list[str]:
    return re.findall(r"^Via:\s*(.*)$", message, re.MULTILINE | re.IGNORECASE)


def test_calls_and_in_dialog_requests_follow_the_route_set(proxied: Server, proxy: Proxy) -> None:
    agent = proxied.peer("agent_answer_routed.xml", proxy.pbx)
    destination = proxied.peer("destination_hangup_routed.xml", proxy.trunk)
    with proxied.client() as client:
        reply = client.get("/web/dial.php?extension=200&destination=0502760206")
        assert reply.status_code == 200, reply.text
        call_id = int(reply.text.split("unique: ")[1])
    call = proxied.wait_for(call_id)
    for peer in (agent, destination):
        assert peer.wait(20) == 0, peer.errors()
    assert (call["result"], call["cause"]) == ("completed", "destination hung up")

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
