"""Stopping and restarting the server loses no call."""

from __future__ import annotations

import signal
from pathlib import Path

from tests.integration.conftest import launch


def _dial(base_url: str) -> int:
    import httpx

    reply = httpx.get(f"{base_url}/web/dial.php?extension=200&destination=0502760206")
    return int(reply.text.split("unique: ")[1])


def test_a_stopping_server_hangs_up_its_calls_and_records_why(tmp_path: Path) -> None:
    process, server = launch(tmp_path)
    agent = server.peer("agent_answer.xml", server.pbx_port)
    destination = server.peer("destination_answer.xml", server.trunk_port)
    call_id = _dial(server.base_url)
    assert server.wait_for(call_id, "connected")["state"] == "connected"
    process.stop()  # SIGTERM: a graceful stop
    assert agent.wait(10) == 0 and destination.wait(10) == 0  # both legs got BYE
    process.start()
    call = server.wait_for(call_id)
    process.stop()
    assert (call["result"], call["cause"]) == ("completed", "hung up by server shutdown")


def test_calls_left_in_flight_by_a_crash_are_ended_at_the_next_start(tmp_path: Path) -> None:
    process, server = launch(tmp_path)
    agent = server.peer("agent_answer.xml", server.pbx_port)
    destination = server.peer("destination_answer.xml", server.trunk_port)
    call_id = _dial(server.base_url)
    assert server.wait_for(call_id, "connected")["state"] == "connected"
    assert process.process is not None
    process.process.send_signal(signal.SIGKILL)
    process.process.wait()
    agent.stop()
    destination.stop()
    process.start()
    call = server.wait_for(call_id)
    process.stop()
    assert call["state"] == "ended"
    assert (call["result"], call["cause"]) == (
        "error",
        "server stopped while the call was in progress",
    )
    assert call["connected_at"] is not None  # what was known is kept
