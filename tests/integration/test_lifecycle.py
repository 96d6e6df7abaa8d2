"""Stopping and restarting the server loses no call."""

from __future__ import annotations

import signal
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from sqlalchemy import text

from click2call.demo.server import ServerProcess
from click2call.demo.sipp import SippPeer
from click2call.store.database import connect
from tests.integration.conftest import Server, launch, stored_sip_state, wait_sip_phase


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


def test_a_connected_call_left_by_a_crash_is_taken_back_at_the_next_start(
    tmp_server: tuple[ServerProcess, Server],
) -> None:
    process, server, peers, call_id = _connected_call(*tmp_server)
    wait_sip_phase(server.database, call_id, "connected")
    assert process.process is not None
    process.process.send_signal(signal.SIGKILL)
    process.process.wait()
    process.start()
    assert server.wait_for(call_id, "ended", timeout=1)["state"] == "connected"
    with server.client() as client:
        assert client.post(f"/api/v1/calls/{call_id}/hangup").status_code == 202
    assert [peer.wait(10) for peer in peers] == [0, 0]  # both legs got BYE
    call = server.wait_for(call_id)
    process.stop()
    assert (call["result"], call["cause"]) == ("completed", "hung up by the API")
    assert call["connected_at"] is not None  # the talk time counts from before the kill
    assert stored_sip_state(server.database, call_id) == ""


def test_calls_left_in_flight_without_their_sip_state_are_ended_at_the_next_start(
    tmp_server: tuple[ServerProcess, Server],
) -> None:
    process, server, peers, call_id = _connected_call(*tmp_server)
    assert process.process is not None
    process.process.send_signal(signal.SIGKILL)
    process.process.wait()
    for peer in peers:
        peer.stop()
    engine = connect(server.database)
    with engine.begin() as conn:  # as a call stored by a version that kept none
        conn.execute(text("DELETE FROM sip_dialogs"))
    engine.dispose()
    process.start()
    call = server.wait_for(call_id)
    process.stop()
    assert call["state"] == "ended"
    assert (call["result"], call["cause"]) == (
        "error",
        "server stopped while the call was in progress",
    )
    assert call["connected_at"] is not None  # what was known is kept
