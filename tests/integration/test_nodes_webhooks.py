"""Two nodes on one PostgreSQL, 200 calls sent alternately to each: every call is stored
once, and every webhook is delivered once per event id, in order per call, whichever node
claims it.

One SIPp agent phone and one SIPp destination answer both nodes' legs (SIPp answers each
call where its INVITE came from); one loopback receiver verifies every delivery.
"""

from __future__ import annotations

import collections
import socket
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from sqlalchemy import text

from click2call.demo.server import ServerProcess
from click2call.demo.sipp import SippPeer, free_port
from click2call.store.database import connect
from tests.integration.conftest import TENANT_SECRET, scenario, upgrade_shared_database
from tests.integration.test_webhooks import ANSWERED, CALLBACK_SECRET, CONFIG
from tests.postgres_cluster import PostgresCluster
from tests.webhook_receiver import Receiver

CALLS = 200
IN_FLIGHT = 16  # requests at once, from as many CRM threads
# test_webhooks' node, but: all 200 calls may be up at once, and SIPp expects only calls
NODE_CONFIG = CONFIG.replace(
    "max_calls_per_agent = 50", "max_calls_per_agent = 50\nmax_concurrent_calls = 1000"
).replace("[sip]\n", "[sip]\noptions_interval = 0\n")


@dataclass
class Cluster:
    urls: list[str]  # each node's HTTP base
    database: str
    workdir: Path


@pytest.fixture
def phones(tmp_path: Path) -> Iterator[tuple[SippPeer, SippPeer]]:
    """The agent phone (answers) and the destination (answers, hangs up after 1 s)."""
    agent = SippPeer(scenario("agent_answer.xml"), free_port(), tmp_path, calls=CALLS).start()
    destination = SippPeer(
        scenario("destination_hangup.xml"), free_port(), tmp_path, calls=CALLS
    ).start()
    yield agent, destination
    agent.stop()
    destination.stop()


@pytest.fixture
def cluster(
    postgres: PostgresCluster,
    tmp_path: Path,
    receiver: Receiver,
    phones: tuple[SippPeer, SippPeer],
) -> Iterator[Cluster]:
    """Nodes a and b: the same tenant, webhook and phones, each its own HTTP and SIP port."""
    database = postgres.new_database()
    agent, destination = phones
    processes = []
    for name in ("a", "b"):
        workdir = tmp_path / name
        workdir.mkdir()
        config = workdir / "click2call.toml"
        http = free_port(socket.SOCK_STREAM)
        config.write_text(
            NODE_CONFIG.format(
                http=http,
                sip=free_port(),
                database=database,
                pbx=agent.port,
                trunk=destination.port,
                hook=receiver.url(),
                tenant_secret=TENANT_SECRET,
                callback_secret=CALLBACK_SECRET,
            )
        )
        upgrade_shared_database(config, database)
        base_url = f"http://127.0.0.1:{http}"
        processes.append(ServerProcess(config, base_url, workdir / "server.log").start())
    yield Cluster([p.base_url for p in processes], database, tmp_path)
    for process in processes:
        process.stop()
    postgres.drop_database(database)


def dial(url: str, n: int) -> int:
    params = {"extension": str(200 + n % 20), "destination": "0502760206"}
    with httpx.Client(base_url=url, timeout=10) as client:
        reply = client.get("/web/dial.php", params=params)
    assert reply.status_code == 200, reply.text
    return int(reply.text.split("unique: ")[1])


def stored_calls(database: str) -> list[tuple[int, str, str, str, str]]:
    engine = connect(database)
    query = text("SELECT id, uniqueid, node, state, result FROM calls ORDER BY id")
    try:
        with engine.connect() as conn:
            return [tuple(row) for row in conn.execute(query)]  # type: ignore[misc]
    finally:
        engine.dispose()


def wait_all_ended(database: str, timeout: float = 60) -> list[tuple[int, str, str, str, str]]:
    """The stored calls once none is live: their last events may be stored after SIPp is done."""
    deadline = time.monotonic() + timeout
    while True:
        rows = stored_calls(database)
        if all(row[3] == "ended" for row in rows) or time.monotonic() > deadline:
            return rows
        time.sleep(0.2)


def wait_delivered(receiver: Receiver, expected: int, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while len(receiver.received) < expected and time.monotonic() < deadline:
        time.sleep(0.2)
    time.sleep(1.0)  # a duplicate would arrive late: give it the chance


def test_200_calls_alternately_on_two_nodes(
    cluster: Cluster, receiver: Receiver, phones: tuple[SippPeer, SippPeer]
) -> None:
    with ThreadPoolExecutor(IN_FLIGHT) as pool:
        ids = list(pool.map(lambda n: dial(cluster.urls[n % 2], n), range(CALLS)))
    agent, destination = phones
    assert destination.wait(120) == 0, destination.errors()  # every call connected, then ended
    assert agent.wait(30) == 0, agent.errors()

    rows = wait_all_ended(cluster.database)
    assert sorted(ids) == [row[0] for row in rows]  # each call stored once, nothing else
    assert len({row[1] for row in rows}) == CALLS
    assert sorted(collections.Counter(row[2] for row in rows).values()) == [CALLS // 2] * 2
    assert {(row[3], row[4]) for row in rows} == {("ended", "completed")}

    wait_delivered(receiver, CALLS * len(ANSWERED))
    message_ids = [r.message_id for r in receiver.received]
    assert len(message_ids) == len(set(message_ids)), "an event was delivered twice"
    for call_id in ids:  # in order per call, every event of it
        got = receiver.of_call(call_id)
        assert [r.type for r in got] == ANSWERED, (call_id, [r.type for r in got])
        assert [r.sequence for r in got] == list(range(1, len(ANSWERED) + 1))
    assert receiver.refused == []
    for node in ("a", "b"):
        assert "Traceback" not in (cluster.workdir / node / "server.log").read_text()
