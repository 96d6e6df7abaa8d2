"""A server killed (SIGKILL) with SIP calls in flight and started again on the same SIP
address: connected calls go on from their stored dialogs, the others are ended cleanly.

SIPp plays the agent's phone (PBX) and the destination (trunk); what they receive on
the wire, and what the store kept, are the outcome.
"""

from __future__ import annotations

import os
import signal
import socket
import time
from pathlib import Path

import pytest

from click2call.demo.server import ServerProcess
from click2call.demo.sipp import SippPeer, free_port
from tests.integration.conftest import Server, launch_sip, stored_sip_state, wait_sip_phase

DIAL = "/web/dial.php?extension=200&destination=0502760206&tech=sip"
TALK_PAUSE_MS = 5000  # the destination stays on this long after answering, then hangs up


def dial(server: Server) -> str:
    with server.client() as client:
        reply = client.get(DIAL)
    assert reply.status_code == 200, reply.text
    return reply.text.split("unique: ")[1].strip()  # the call's id


def kill_and_restart(process: ServerProcess, workdir: Path) -> ServerProcess:
    """SIGKILL: nothing is hung up or flushed; then the same config (same SIP port) again."""
    assert process.process is not None
    os.kill(process.pid, signal.SIGKILL)
    process.process.wait(10)
    again = ServerProcess(process.config, process.base_url, workdir / "server-again.log")
    return again.start()


def requests(peer: SippPeer, method: str) -> list[str]:
    return [m for m in peer.received() if m.startswith(f"{method} ")]


def test_a_connected_call_survives_a_kill_and_ends_completed_with_its_talk_time(
    tmp_path: Path,
) -> None:
    pbx, trunk = free_port(), free_port()
    process, server = launch_sip(tmp_path, {"default": (f"127.0.0.1:{pbx}", f"127.0.0.1:{trunk}")})
    again: ServerProcess | None = None
    try:
        agent = server.peer("agent_answer.xml", pbx)
        destination = server.peer(
            "destination_hangup_late.xml", trunk, extra_args=("-d", str(TALK_PAUSE_MS))
        )
        call_id = dial(server)
        call = server.wait_for(call_id, "connected")
        assert call["state"] == "connected", call
        up_since = time.monotonic()
        wait_sip_phase(server.database, call_id, "connected")  # the re-INVITE joined both legs

        again = kill_and_restart(process, tmp_path)
        up_for = time.monotonic() - up_since

        assert destination.wait(30) == 0, destination.errors()
        assert agent.wait(30) == 0, agent.errors()
        call = server.wait_for(call_id)
        assert (call["state"], call["result"]) == ("ended", "completed"), call
        assert call["cause"] == "destination hung up"
        assert call["talk_seconds"] >= up_for  # type: ignore[operator]
        (bye,) = requests(agent, "BYE")
        assert "CSeq: 3 BYE" in bye  # INVITE 1, re-INVITE 2: the dialog went on where it was
        assert stored_sip_state(server.database, call_id) == ""  # nothing kept once ended
        log = (tmp_path / "server-again.log").read_text()
        assert "took back 1 SIP call(s)" in log
    finally:
        (again or process).stop()


@pytest.mark.parametrize(
    ("agent_scenario", "destination_scenario", "state", "cause"),
    [
        ("agent_noanswer.xml", None, "agent_ringing", "agent's phone was ringing"),
        ("agent_answer.xml", "destination_noanswer.xml", "destination_ringing", "destination"),
    ],
    ids=["agent-ringing", "destination-ringing"],
)
def test_a_call_not_yet_connected_at_the_kill_is_ended_cleanly_at_start(
    tmp_path: Path,
    agent_scenario: str,
    destination_scenario: str | None,
    state: str,
    cause: str,
) -> None:
    pbx, trunk = free_port(), free_port(socket.SOCK_DGRAM)
    process, server = launch_sip(tmp_path, {"default": (f"127.0.0.1:{pbx}", f"127.0.0.1:{trunk}")})
    again: ServerProcess | None = None
    try:
        agent = server.peer(agent_scenario, pbx)
        destination = None
        if destination_scenario is not None:
            destination = server.peer(destination_scenario, trunk)
        call_id = dial(server)
        call = server.wait_for(call_id, state)
        assert call["state"] == state, call

        again = kill_and_restart(process, tmp_path)

        call = server.wait_for(call_id)
        assert (call["state"], call["result"]) == ("ended", "error"), call
        assert f"server restarted while the {cause}" in str(call["cause"])
        assert agent.wait(20) == 0, agent.errors()
        if destination is None:
            assert requests(agent, "CANCEL")  # still ringing: CANCEL, and its 487 ACKed
        else:
            assert requests(agent, "BYE")  # it had answered: BYE
            assert destination.wait(20) == 0, destination.errors()
            assert requests(destination, "CANCEL")
    finally:
        (again or process).stop()
