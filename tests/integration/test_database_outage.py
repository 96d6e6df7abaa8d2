"""PostgreSQL stops under load and comes back: requests during the outage get 503 in each
endpoint's own shape, health says why, nothing crashes, placement resumes by itself, and
every accepted call is stored and ends. PostgreSQL hangs: only the requests that read it
wait; the event loop goes on with the others and with the SIP signalling."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from click2call.demo.server import ServerProcess
from tests.integration.conftest import Server, launch
from tests.integration.test_auth import new_key
from tests.postgres_cluster import PostgresCluster

UNAVAILABLE = "the call database is unavailable; try again shortly"


@pytest.fixture
def cluster() -> Iterator[PostgresCluster]:
    """Its own cluster: stopping it must not disturb the other tests' databases."""
    running = PostgresCluster().start()
    yield running
    running.stop()


class Load(threading.Thread):
    """dial.php requests at a steady pace, each for the next of twenty extensions."""

    def __init__(self, server: Server) -> None:
        super().__init__(daemon=True)
        self.server = server
        self.replies: list[tuple[float, int, str]] = []
        self.stopping = threading.Event()

    def run(self) -> None:
        with self.server.client() as client:
            n = 0
            while not self.stopping.is_set():
                params = {"extension": str(200 + n % 20), "destination": "0502760206"}
                reply = client.get("/web/dial.php", params=params)
                self.replies.append((time.monotonic(), reply.status_code, reply.text))
                n += 1
                time.sleep(0.15)


def test_a_database_outage_under_load_is_503_then_recovers(
    cluster: PostgresCluster, tmp_path: Path
) -> None:
    process, server = launch(tmp_path, cluster.new_database())
    try:
        _drill(process, server, cluster)
    finally:
        process.stop()
    log = (tmp_path / "server.log").read_text()
    assert "Traceback" not in log
    assert "call events wait and are retried" in log  # some did wait, and none was lost


def _drill(process: ServerProcess, server: Server, cluster: PostgresCluster) -> None:
    # Agents that ring and never answer: the calls in flight end (no answer, CANCEL) while
    # the database is down, so their last events must wait for it.
    server.peer("agent_noanswer.xml", server.pbx_port, calls=1000)
    load = Load(server)
    try:
        load.start()
        time.sleep(1.5)
        cluster.pause()
        down_at = time.monotonic()
        time.sleep(1.0)
        with server.client() as client:
            health = client.get("/api/v1/health")
            v1 = client.post(
                "/api/v1/calls", json={"extension": "299", "destination": "0502760206"}
            )
            external = client.get(
                "/voipe/dial_external.php",
                params={"client": "voipe16", "phone": "0502760206", "destination": "0502760206"},
            )
        time.sleep(1.5)
        back_at = time.monotonic()  # it may answer before pg_ctl says so
        cluster.resume()
        up_at = time.monotonic()
        time.sleep(3.0)
    finally:
        load.stopping.set()
        load.join()

    assert health.status_code == 503
    assert health.json()["database"]["ok"] is False
    assert "127.0.0.1" in health.json()["database"]["detail"]  # why, for the operator
    assert v1.status_code == 503
    assert v1.json()["error"] == {"id": "database_unavailable", "message": UNAVAILABLE}
    assert external.status_code == 503
    assert external.json() == {"status": "error", "error": UNAVAILABLE}

    statuses = {status for _, status, _ in load.replies}
    assert statuses <= {200, 429, 503}, load.replies  # no 500, nothing dropped
    during = [r for r in load.replies if down_at + 0.2 < r[0] < back_at]
    assert during
    assert [r for r in during if r[1] != 503] == []
    assert all(text == f"response: false\nunique: \nerror: {UNAVAILABLE}\n" for *_, text in during)
    after = [r for r in load.replies if r[0] > up_at + 1.0]
    assert any(status == 200 for _, status, _ in after), after  # placement resumed by itself

    accepted = [int(text.split("unique: ")[1]) for _, status, text in load.replies if status == 200]
    assert len(accepted) >= 5
    for call_id in accepted:  # every accepted call is stored and ended: no row lost
        call = server.wait_for(call_id, timeout=15)
        assert (call["state"], call["result"]) == ("ended", "agent_no_answer"), call
    assert process.process is not None and process.process.poll() is None  # no crash


class Pending(threading.Thread):
    """One GET, in its own thread; `is_alive()` while its reply has not come."""

    def __init__(self, server: Server, path: str, headers: dict[str, str]) -> None:
        super().__init__(daemon=True)
        self.server, self.path, self.headers = server, path, headers
        self.reply: httpx.Response | None = None

    def run(self) -> None:
        with httpx.Client(base_url=self.server.base_url, timeout=60) as client:
            self.reply = client.get(self.path, headers=self.headers)


def test_a_hung_database_holds_up_only_the_requests_that_read_it(
    cluster: PostgresCluster, tmp_path: Path
) -> None:
    """PostgreSQL frozen as a call starts (connections accepted, nothing answered): a read
    with an API key waits for it, while the server answers a request that needs no
    database and the call's SIP signalling goes on; afterwards the call is stored ended."""
    # The read is to outlast the SIP flow: longer than the call's signalling takes.
    extra = "database_timeout = 60"
    process, server = launch(tmp_path, cluster.new_database(), server_extra=extra)
    try:
        headers = {"X-API-Key": new_key(server, "default")[1]}
        agent = server.peer("agent_answer.xml", server.pbx_port)
        destination = server.peer("destination_hangup.xml", server.trunk_port)
        with server.client() as client:
            order = {"extension": "200", "destination": "0502760206"}
            placed = client.post("/api/v1/calls", json=order, headers=headers)
        assert placed.status_code == 201, placed.text
        call_id = placed.json()["id"]
        with cluster.frozen():
            read = Pending(server, f"/api/v1/calls/{call_id}", headers)
            read.start()
            time.sleep(0.5)  # the read reaches the database and waits there
            with server.client() as client:
                docs = client.get("/openapi.json")
            docs_while_reading = read.is_alive()
            # The destination answers, is acknowledged, hangs up and gets the 200 to its BYE.
            destination_done = destination.wait(timeout=20)
            sip_while_reading = read.is_alive()
        read.join(timeout=60)
        assert agent.wait(timeout=10) == 0, agent.errors()
        ended = server.wait_for(call_id, timeout=20)
    finally:
        process.stop()

    assert docs.status_code == 200
    assert docs_while_reading, "a request needing no database waited for a database read"
    assert destination_done == 0, destination.errors()
    assert sip_while_reading, "the SIP signalling waited for a database read"
    assert read.reply is not None
    if read.reply.status_code == 503:  # it gave up connecting before the database woke up
        assert read.reply.json()["error"] == {"id": "database_unavailable", "message": UNAVAILABLE}
    else:
        assert read.reply.status_code == 200, read.reply.text
    assert (ended["state"], ended["result"]) == ("ended", "completed"), ended
    assert "Traceback" not in (tmp_path / "server.log").read_text()


def test_a_hung_database_is_a_503_after_database_timeout_and_health_says_why(
    cluster: PostgresCluster, tmp_path: Path
) -> None:
    """PostgreSQL frozen: no driver timeout fires (the kernel still acknowledges), yet a
    keyed read, a new call and health answer 503 once `database_timeout` has passed,
    and placement resumes by itself when the database wakes up."""
    extra = "database_timeout = 1.5"
    process, server = launch(tmp_path, cluster.new_database(), server_extra=extra)
    link = {"extension": "200", "destination": "0502760206"}
    try:
        server.peer("agent_busy.xml", server.pbx_port, calls=2)
        headers = {"X-API-Key": new_key(server, "default")[1]}
        with server.client() as client:
            assert client.get("/api/v1/calls", headers=headers).status_code == 200
            with cluster.frozen():
                replies, took = {}, {}
                for name, ask in (
                    ("read", lambda: client.get("/api/v1/calls", headers=headers)),
                    ("dial", lambda: client.get("/web/dial.php", params=link)),
                    ("health", lambda: client.get("/api/v1/health")),
                ):
                    started = time.monotonic()
                    replies[name] = ask()
                    took[name] = time.monotonic() - started
            deadline = time.monotonic() + 15
            while (after := client.get("/web/dial.php", params=link)).status_code != 200:
                assert time.monotonic() < deadline, after.text
                time.sleep(0.2)
        call_id = int(after.text.split("unique: ")[1])
        assert server.wait_for(call_id)["result"] == "agent_busy"
    finally:
        process.stop()

    read, dial, health = replies["read"], replies["dial"], replies["health"]
    assert read.status_code == 503, read.text
    assert read.json()["error"] == {"id": "database_unavailable", "message": UNAVAILABLE}
    assert dial.status_code == 503, dial.text
    assert dial.text == f"response: false\nunique: \nerror: {UNAVAILABLE}\n"
    assert health.status_code == 503
    assert health.json()["database"] == {
        "ok": False,
        "detail": "the database did not answer within 1.5 s",
    }
    assert all(1.5 <= seconds < 4.5 for seconds in took.values()), took
    assert "Traceback" not in (tmp_path / "server.log").read_text()


def test_an_idle_server_outlives_a_database_restart(
    cluster: PostgresCluster, tmp_path: Path
) -> None:
    """Its pooled connections died with the restart: the first request after it is served
    all the same (a connection idle for a while is checked before use)."""
    process, server = launch(tmp_path, cluster.new_database())
    try:
        server.peer("agent_busy.xml", server.pbx_port, calls=2)
        with server.client() as client:
            params = {"extension": "200", "destination": "0502760206"}
            assert client.get("/web/dial.php", params=params).status_code == 200
            cluster.pause()
            cluster.resume()
            time.sleep(1.2)  # idle for longer than IDLE_BEFORE_CHECK
            reply = client.get("/web/dial.php", params=params)
            assert reply.status_code == 200, reply.text
            call_id = int(reply.text.split("unique: ")[1])
        assert server.wait_for(call_id)["result"] == "agent_busy"
    finally:
        process.stop()
    assert "Traceback" not in (tmp_path / "server.log").read_text()
