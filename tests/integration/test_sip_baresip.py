"""baresip as the agent's phone, auto-answering; SIPp as the trunk.

A dial.php call connects end to end: baresip answers our offer-less INVITE, accepts the
bridging re-INVITE, and then sends its RTP straight to the destination's media address
(here a socket of the test, named in SIPp's SDP) — from baresip's own port, not through
the server. The destination hangs up and the call ends `completed`.
"""

from __future__ import annotations

import math
import re
import select
import shutil
import socket
import struct
import subprocess
import time
import wave
from collections.abc import Iterator
from pathlib import Path

import pytest

from click2call.demo.sipp import free_port, terminate
from tests.integration.conftest import launch_sip

CONFIG = """
poll_method\t\tepoll
sip_listen\t\t127.0.0.1:{port}
net_interface\t\t127.0.0.1
audio_player\t\taubridge,loop
audio_alert\t\taubridge,loop
audio_source\t\taufile,{tone}
module_path\t\t/usr/lib/baresip/modules
module\t\t\tg711.so
module\t\t\taufile.so
module\t\t\taubridge.so
module_app\t\taccount.so
module_app\t\tmenu.so
rtp_ports\t\t{rtp}-{rtp_end}
"""


class Phone:
    def __init__(self, folder: Path) -> None:
        self.port, rtp = free_port(), free_port()
        tone = folder / "tone.wav"  # what the agent "says": 10 s of 440 Hz at 8 kHz
        with wave.open(str(tone), "wb") as out:
            out.setnchannels(1)
            out.setsampwidth(2)
            out.setframerate(8000)
            out.writeframes(
                b"".join(
                    struct.pack("<h", round(8000 * math.sin(2 * math.pi * 440 * n / 8000)))
                    for n in range(80000)
                )
            )
        config = CONFIG.format(port=self.port, rtp=rtp, rtp_end=rtp + 1, tone=tone)
        (folder / "config").write_text(config)
        (folder / "accounts").write_text("<sip:200@127.0.0.1>;regint=0;answermode=auto\n")
        self.log = folder / "baresip.log"
        with self.log.open("wb") as log:
            self.process = subprocess.Popen(
                ["baresip", "-f", str(folder)],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + 10
        while "baresip is ready" not in self.log.read_text(errors="replace"):
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"baresip did not start:\n{self.log.read_text()}")
            time.sleep(0.05)

    def stop(self) -> None:
        terminate(self.process)


@pytest.fixture
def phone(tmp_path: Path) -> Iterator[Phone]:
    if shutil.which("baresip") is None:
        pytest.skip("baresip is not installed (make system-deps installs it)")
    folder = tmp_path / "baresip"
    folder.mkdir()
    running = Phone(folder)
    yield running
    running.stop()


def test_baresip_answers_accepts_the_bridge_and_sends_rtp_to_the_trunk(
    tmp_path: Path, phone: Phone
) -> None:
    media = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    media.bind(("127.0.0.1", 0))
    trunk_port = free_port()
    process, server = launch_sip(
        tmp_path,
        {"default": (f"127.0.0.1:{phone.port}", f"127.0.0.1:{trunk_port}")},
        "options_interval = 0",
    )
    try:
        rtp_port = str(media.getsockname()[1])
        trunk = server.peer(
            "destination_media_hangup.xml", trunk_port, extra_args=("-key", "rtp_port", rtp_port)
        )
        with server.client() as client:
            reply = client.get("/web/dial.php?extension=200&destination=0502760206")
            assert reply.status_code == 200, reply.text
            call_id = int(reply.text.split("unique: ")[1])
        sources = set()
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and not sources:
            ready, _, _ = select.select([media], [], [], 0.1)
            if ready:
                sources.add(media.recvfrom(2048)[1])
        call = server.wait_for(call_id)
        assert trunk.wait(20) == 0, trunk.errors()
    finally:
        media.close()
        process.stop()
    assert (call["result"], call["cause"]) == ("completed", "destination hung up")
    offer = trunk.received()[0]  # the agent's offer, passed on to the destination
    baresip_media = re.search(r"^m=audio ([0-9]+) ", offer, re.MULTILINE)
    assert baresip_media, offer
    assert sources == {("127.0.0.1", int(baresip_media.group(1)))}  # from baresip itself
