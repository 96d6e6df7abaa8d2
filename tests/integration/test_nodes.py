"""Several nodes on one PostgreSQL: every call belongs to the node that placed it."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx

from tests.integration.conftest import launch
from tests.postgres_cluster import PostgresCluster


def test_a_starting_node_recovers_only_its_own_calls(
    postgres: PostgresCluster, tmp_path: Path
) -> None:
    url = postgres.new_database()
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    a_process, a = launch(tmp_path / "a", url)
    b_process, b = launch(tmp_path / "b", url)
    try:
        peers = [
            a.peer("agent_answer.xml", a.pbx_port),
            a.peer("destination_answer.xml", a.trunk_port),
        ]
        reply = httpx.get(f"{a.base_url}/web/dial.php?extension=200&destination=0502760206")
        call_id = int(reply.text.split("unique: ")[1])
        assert a.wait_for(call_id, "connected")["state"] == "connected"
        b_process.stop()
        b_process.start()  # B recovers what B left in flight: nothing of A's
        call = b.wait_for(call_id, "ended", timeout=1)  # any node reads any call
        assert call["state"] == "connected", call
        a.hangup_when_connected(call_id)
        assert [peer.wait(10) for peer in peers] == [0, 0]
        assert a.wait_for(call_id)["result"] == "completed"
    finally:
        a_process.stop()
        b_process.stop()
        postgres.drop_database(url)


def test_a_hang_up_through_another_node_reaches_the_owner(
    postgres: PostgresCluster, tmp_path: Path
) -> None:
    url = postgres.new_database()
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    a_process, a = launch(tmp_path / "a", url)
    b_process, b = launch(tmp_path / "b", url)
    try:
        peers = [
            a.peer("agent_answer.xml", a.pbx_port),
            a.peer("destination_answer.xml", a.trunk_port),
        ]
        reply = httpx.get(f"{a.base_url}/web/dial.php?extension=200&destination=0502760206")
        call_id = int(reply.text.split("unique: ")[1])
        b.hangup_when_connected(call_id)  # placed by A, hung up through B
        assert [peer.wait(10) for peer in peers] == [0, 0]  # both legs got their BYE
        call = b.wait_for(call_id)
        assert (call["state"], call["result"]) == ("ended", "completed"), call
        assert "asked by node" in (tmp_path / "a" / "server.log").read_text()
    finally:
        a_process.stop()
        b_process.stop()
        postgres.drop_database(url)


def test_a_cap_holds_across_nodes(postgres: PostgresCluster, tmp_path: Path) -> None:
    """Tenant `capped` allows 2 calls up at once: 10 simultaneous requests, alternately to
    each node, get exactly 2 calls placed and 8 refusals (each node alone would allow 2)."""
    url = postgres.new_database()
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    a_process, a = launch(tmp_path / "a", url)
    b_process, b = launch(tmp_path / "b", url)
    start = threading.Barrier(10)

    def dial(n: int) -> int:
        node = (a, b)[n % 2]
        params = {"tenant": "capped", "extension": str(200 + n), "destination": "0502760206"}
        with node.client() as client:
            start.wait()
            return client.get("/web/dial.php", params=params).status_code

    try:
        with ThreadPoolExecutor(10) as pool:
            statuses = sorted(pool.map(dial, range(10)))
        assert statuses == [200] * 2 + [429] * 8
    finally:
        a_process.stop()
        b_process.stop()
        postgres.drop_database(url)
