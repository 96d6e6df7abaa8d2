"""Several nodes on one PostgreSQL: every call belongs to the node that placed it."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from click2call.demo.server import ServerProcess
from click2call.demo.sipp import SippPeer
from tests.integration.conftest import Server, launch, wait_sip_phase
from tests.integration.test_auth import cli
from tests.postgres_cluster import PostgresCluster


@dataclass
class Nodes:
    a: Server
    b: Server
    a_process: ServerProcess
    b_process: ServerProcess


@pytest.fixture
def nodes(postgres: PostgresCluster, tmp_path: Path) -> Iterator[Nodes]:
    """Two servers, each with its own ports and peers, on one new database."""
    url = postgres.new_database()
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    a_process, a = launch(tmp_path / "a", url)
    b_process, b = launch(tmp_path / "b", url)
    yield Nodes(a, b, a_process, b_process)
    a_process.stop()
    b_process.stop()
    postgres.drop_database(url)


def connected_call_on(server: Server) -> tuple[int, list[SippPeer]]:
    peers = [
        server.peer("agent_answer.xml", server.pbx_port),
        server.peer("destination_answer.xml", server.trunk_port),
    ]
    reply = httpx.get(f"{server.base_url}/web/dial.php?extension=200&destination=0502760206")
    call_id = int(reply.text.split("unique: ")[1])
    assert server.wait_for(call_id, "connected")["state"] == "connected"
    return call_id, peers


def test_a_starting_node_recovers_only_its_own_calls(nodes: Nodes) -> None:
    call_id, peers = connected_call_on(nodes.a)
    nodes.b_process.stop()
    nodes.b_process.start()  # B recovers what B left in flight: nothing of A's
    call = nodes.b.wait_for(call_id, "ended", timeout=1)  # any node reads any call
    assert call["state"] == "connected", call
    nodes.a.hangup_when_connected(call_id)
    assert [peer.wait(10) for peer in peers] == [0, 0]
    assert nodes.a.wait_for(call_id)["result"] == "completed"


def test_a_hang_up_through_another_node_reaches_the_owner(nodes: Nodes) -> None:
    call_id, peers = connected_call_on(nodes.a)
    nodes.b.hangup_when_connected(call_id)  # placed by A, hung up through B
    assert [peer.wait(10) for peer in peers] == [0, 0]  # both legs got their BYE
    call = nodes.b.wait_for(call_id)
    assert (call["state"], call["result"]) == ("ended", "completed"), call
    assert "asked by node" in (nodes.a.workdir / "server.log").read_text()


def ringing_call_on(server: Server) -> tuple[int, SippPeer]:
    """A call of tenant `cluster` whose agent phone rings (for 30 s), its SIP state stored."""
    agent = server.peer("agent_noanswer.xml", server.pbx_port)
    params = {"tenant": "cluster", "extension": "200", "destination": "0502760206"}
    with server.client() as client:
        reply = client.get("/web/dial.php", params=params)
    call_id = int(reply.text.split("unique: ")[1])
    assert server.wait_for(call_id, "agent_ringing")["state"] == "agent_ringing"
    wait_sip_phase(server.database, call_id, "agent_calling")
    return call_id, agent


def test_a_hang_up_through_another_node_cancels_a_ringing_call(nodes: Nodes) -> None:
    call_id, agent = ringing_call_on(nodes.a)
    with nodes.b.client() as client:  # placed by A, hung up through B
        assert client.post(f"/api/v1/calls/{call_id}/hangup").status_code == 202
    assert agent.wait(10) == 0, agent.errors()  # CANCEL, 200, 487, ACK
    assert [m.split()[0] for m in agent.received()] == ["INVITE", "CANCEL", "ACK"]
    call = nodes.b.wait_for(call_id)
    assert (call["state"], call["result"]) == ("ended", "canceled"), call


def test_a_cap_holds_across_nodes(nodes: Nodes) -> None:
    """Tenant `cluster` allows 5 calls up at once: 10 simultaneous requests, alternately to
    each node, get exactly 5 calls placed and 5 refusals (each node alone would allow 5)."""
    for node in (nodes.a, nodes.b):  # agents that ring without answering: calls stay up
        node.peer("agent_noanswer.xml", node.pbx_port, calls=10)
    start = threading.Barrier(10)

    def dial(n: int) -> tuple[int, str]:
        node = (nodes.a, nodes.b)[n % 2]
        params = {"tenant": "cluster", "extension": str(200 + n), "destination": "0502760206"}
        with node.client() as client:
            start.wait()
            reply = client.get("/web/dial.php", params=params)
            return reply.status_code, reply.text

    with ThreadPoolExecutor(10) as pool:
        replies = sorted(pool.map(dial, range(10)))
    assert [status for status, _ in replies] == [200] * 5 + [429] * 5
    for _, text in replies[5:]:
        assert "5 calls are already up (limit max_concurrent_calls)" in text


def test_a_keys_request_limit_holds_across_nodes(nodes: Nodes) -> None:
    """Tenant `limited` allows a key 3 requests a minute, on whichever node they land."""
    key = cli(nodes.a, "create", "--tenant", "limited").splitlines()[1]
    codes = []
    for n in range(6):
        with (nodes.a, nodes.b)[n % 2].client() as client:
            codes.append(client.get("/api/v1/calls", headers={"X-API-Key": key}).status_code)
    assert codes == [200, 200, 200, 429, 429, 429]
