"""A node killed outright (SIGKILL) with calls connected, on a PostgreSQL shared by two
nodes: past the lease, the other node ends them (SIPp receives BYE on both legs) and
stores why; started again within the lease instead, the node keeps its calls.

SIPp plays each call's agent phone (PBX) and destination (trunk) of node A; what they
receive on the wire, and what the store kept, are the outcome.
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text

from click2call.demo.server import ServerProcess
from click2call.demo.sipp import SippPeer
from tests.integration.conftest import Server, launch, wait_sip_phase
from tests.integration.test_nodes import Nodes
from tests.postgres_cluster import PostgresCluster

LEASE = 6.0  # seconds; heartbeats every half second
TIMING = f"heartbeat_interval = 0.5\nnode_lease = {LEASE}"
CALLS = 2
TALK_PAUSE_MS = 4000  # after A restarts, the destination stays on this long, then hangs up


@pytest.fixture
def cluster(postgres: PostgresCluster, tmp_path: Path) -> Iterator[Nodes]:
    """Two nodes on one new database, heartbeating every half second."""
    url = postgres.new_database()
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    a_process, a = launch(tmp_path / "a", url, server_extra=TIMING)
    b_process, b = launch(tmp_path / "b", url, server_extra=TIMING)
    nodes = Nodes(a, b, a_process, b_process)
    yield nodes
    nodes.a_process.stop()
    nodes.b_process.stop()
    postgres.drop_database(url)


def dial(server: Server) -> int:
    with server.client() as client:
        reply = client.get("/web/dial.php?extension=200&destination=0502760206")
    assert reply.status_code == 200, reply.text
    return int(reply.text.split("unique: ")[1])


def connected_calls(
    server: Server, destination: str, *extra: str
) -> tuple[list[int], SippPeer, SippPeer]:
    """CALLS calls up on `server`, their SIP state stored as connected."""
    agent = server.peer("agent_answer.xml", server.pbx_port, calls=CALLS)
    trunk = server.peer(destination, server.trunk_port, calls=CALLS, extra_args=extra)
    call_ids = [dial(server) for _ in range(CALLS)]
    for call_id in call_ids:
        assert server.wait_for(call_id, "connected")["state"] == "connected"
    for call_id in call_ids:
        wait_connected_state_stored(server.database, call_id)
    return call_ids, agent, trunk


def wait_connected_state_stored(database: str, call_id: int, timeout: float = 5) -> None:
    engine = create_engine(database)
    query = text("SELECT state FROM sip_dialogs WHERE call_id = :id")
    deadline = time.monotonic() + timeout
    try:
        while True:
            with engine.connect() as conn:
                state = conn.execute(query, {"id": call_id}).scalar()
            if state is not None and '"phase":"connected"' in state:
                return
            assert time.monotonic() < deadline, state
            time.sleep(0.05)
    finally:
        engine.dispose()


def sigkill(process: ServerProcess) -> None:
    assert process.process is not None
    os.kill(process.pid, signal.SIGKILL)
    process.process.wait(10)


def dialogs_hung_up(peer: SippPeer) -> set[str]:
    """The Call-IDs of the BYEs `peer` received. SIPp answers a call's requests at the
    address its INVITE came from (the dead node), so node B's BYE is retransmitted."""
    return {
        line
        for message in peer.received()
        if message.startswith("BYE ")
        for line in message.splitlines()
        if line.startswith("Call-ID:")
    }


def test_a_lost_nodes_connected_calls_are_ended_by_a_survivor_with_the_cause(
    cluster: Nodes,
) -> None:
    call_ids, agent, destination = connected_calls(cluster.a, "destination_answer.xml")
    sigkill(cluster.a_process)
    killed = time.monotonic()

    for call_id in call_ids:
        call = cluster.b.wait_for(call_id, timeout=3 * LEASE)
        assert (call["state"], call["result"]) == ("ended", "error"), call
        assert str(call["cause"]).startswith("node "), call
        assert "stopped heartbeating; ended by node" in str(call["cause"]), call
    ended_after = time.monotonic() - killed
    # Within the lease: B claims A once A's last heartbeat is a lease old, at its next beat
    # (every 0.5 s); the rest is slack for a loaded machine.
    assert ended_after < LEASE + 3, ended_after
    assert agent.wait(10) == 0, agent.errors()  # each leg got its BYE and answered it
    assert destination.wait(10) == 0, destination.errors()
    assert len(dialogs_hung_up(agent)) == CALLS
    assert len(dialogs_hung_up(destination)) == CALLS
    log = (cluster.b.workdir / "server.log").read_text()
    assert f"taking over its {CALLS} live call(s)" in log
    print(f"calls ended {ended_after:.1f} s after the kill (lease {LEASE} s)")


@pytest.mark.parametrize(
    ("agent_scenario", "destination_scenario", "ringing", "sent"),
    [
        ("phone_noanswer_owner_lost.xml", None, "agent_ringing", {"agent": "CANCEL"}),
        (
            "agent_answer.xml",
            "phone_noanswer_owner_lost.xml",
            "destination_ringing",
            {"agent": "BYE", "destination": "CANCEL"},
        ),
    ],
    ids=["agent-ringing", "destination-ringing"],
)
def test_a_lost_nodes_ringing_call_is_canceled_by_a_survivor(
    cluster: Nodes,
    agent_scenario: str,
    destination_scenario: str | None,
    ringing: str,
    sent: dict[str, str],
) -> None:
    """The survivor's CANCEL carries the dead node's Via (it must match the INVITE), so the
    487 goes to the dead node and is never ACKed: the phone stops ringing all the same."""
    a = cluster.a
    peers = {"agent": a.peer(agent_scenario, a.pbx_port)}
    if destination_scenario is not None:
        peers["destination"] = a.peer(destination_scenario, a.trunk_port)
    params = {"tenant": "cluster", "extension": "200", "destination": "0502760206"}
    with a.client() as client:
        call_id = int(client.get("/web/dial.php", params=params).text.split("unique: ")[1])
    assert a.wait_for(call_id, ringing)["state"] == ringing
    phase = "agent_calling" if ringing == "agent_ringing" else "destination_calling"
    wait_sip_phase(a.database, call_id, phase)
    sigkill(cluster.a_process)

    call = cluster.b.wait_for(call_id, timeout=3 * LEASE)
    assert (call["state"], call["result"]) == ("ended", "error"), call
    assert "stopped heartbeating; ended by node" in str(call["cause"]), call
    for role, method in sent.items():
        assert peers[role].wait(10) == 0, peers[role].errors()
        methods = [m.split()[0] for m in peers[role].received()]
        assert method in methods, (role, methods)


def test_a_node_restarted_within_the_lease_keeps_its_calls(cluster: Nodes) -> None:
    call_ids, agent, destination = connected_calls(
        cluster.a, "destination_hangup_late.xml", "-d", str(TALK_PAUSE_MS)
    )
    sigkill(cluster.a_process)
    again = ServerProcess(
        cluster.a_process.config,
        cluster.a_process.base_url,
        cluster.a.workdir / "server-again.log",
    )
    cluster.a_process = again.start()

    assert destination.wait(30) == 0, destination.errors()  # it hung up; A carried the BYE
    assert agent.wait(30) == 0, agent.errors()
    for call_id in call_ids:
        call = cluster.b.wait_for(call_id)
        assert (call["state"], call["result"]) == ("ended", "completed"), call
        assert call["cause"] == "destination hung up"
    assert "taking over" not in (cluster.b.workdir / "server.log").read_text()
