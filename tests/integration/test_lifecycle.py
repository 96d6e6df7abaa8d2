"""Stopping and restarting the server loses no call."""

from __future__ import annotations

import signal
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from click2call.demo.server import ServerProcess
from click2call.demo.sipp import SippPeer
from tests.integration.conftest import Server, launch


@pytest.fixture
def tmp_server(database_url: str, tmp_path: Path) -> Iterator[tuple[ServerProcess, Server]]:
    process, server = launch(tmp_path, database_url)
    yield process, server
    process.stop()


def _connected_call(
    process: ServerProcess, server: Server
) -> tuple[ServerProcess, Server, list[SippPeer], int]:
    peers = [
        server.peer("agent_answer.xml", server.pbx_port),
        server.peer("destination_answer.xml", server.trunk_port),
    ]
    reply = httpx.get(f"{server.base_url}/web/dial.php?extension=200&destination=0502760206")
    call_id = int(reply.text.split("unique: ")[1])
    assert server.wait_for(call_id, "connected")["state"] == "connected"
    return process, server, peers, call_id


def test_a_stopping_server_hangs_up_its_calls_and_records_why(
    tmp_server: tuple[ServerProcess, Server],
) -> None:
    process, server, peers, call_id = _connected_call(*tmp_server)
    process.stop()  # SIGTERM: a graceful stop
    assert [peer.wait(10) for peer in peers] == [0, 0]  # both legs got BYE
    process.start()
    call = server.wait_for(call_id)
    process.stop()
    assert (call["result"], call["cause"]) == ("completed", "hung up by server shutdown")


def test_calls_left_in_flight_by_a_crash_are_ended_at_the_next_start(
    tmp_server: tuple[ServerProcess, Server],
) -> None:
    process, server, peers, call_id = _connected_call(*tmp_server)
    assert process.process is not None
    process.process.send_signal(signal.SIGKILL)
    process.process.wait()
    for peer in peers:
        peer.stop()
    process.start()
    call = server.wait_for(call_id)
    process.stop()
    assert call["state"] == "ended"
    assert (call["result"], call["cause"]) == (
        "error",
        "server stopped while the call was in progress",
    )
    assert call["connected_at"] is not None  # what was known is kept
