"""Webhooks over real HTTP: SIPp plays the phones, a loopback receiver verifies every
delivery with the `standardwebhooks` library and records what arrived."""

from __future__ import annotations

import os
import re
import signal
import socket
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from click2call.demo.server import ServerProcess
from click2call.demo.sipp import free_port
from click2call.webhooks.signing import new_secret
from tests.integration.conftest import TENANT_SECRET, Server, upgrade_shared_database
from tests.webhook_receiver import Receiver

CALLBACK_SECRET = new_secret(b"c" * 32)
ANSWERED = [
    "call.queued",
    "call.agent_dialing",
    "call.agent_ringing",
    "call.agent_answered",
    "call.destination_dialing",
    "call.destination_ringing",
    "call.connected",
    "call.ended",
]

CONFIG = """
[server]
host = "127.0.0.1"
port = {http}
database = "{database}"

[sip]
port = {sip}

[webhooks]
retry_schedule = [0.3, 0.3, 0.3, 0.3, 0.5, 0.5, 0.5, 0.5, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1]
jitter = 0
poll_interval = 0.1

[[tenants]]
name = "default"
default_outbound_cid = "036411111"
agent_ring_timeout = 2
destination_ring_timeout = 3
[tenants.sip]
pbx = "127.0.0.1:{pbx}"
trunk = "127.0.0.1:{trunk}"
[tenants.auth]
allow_unauthenticated = true
[tenants.limits]
calls_per_second = 100
burst = 50
max_calls_per_agent = 50
[[tenants.webhooks]]
url = "{hook}"
secret = "{tenant_secret}"
[tenants.callbacks]
secret = "{callback_secret}"
allowed_hosts = ["127.0.0.1"]
events = ["call.connected", "call.ended"]
"""


def _launch(workdir: Path, receiver: Receiver, database: str) -> tuple[ServerProcess, Server]:
    http, sip, pbx, trunk = free_port(socket.SOCK_STREAM), free_port(), free_port(), free_port()
    config = workdir / "click2call.toml"
    config.write_text(
        CONFIG.format(
            http=http,
            sip=sip,
            database=database,
            pbx=pbx,
            trunk=trunk,
            hook=receiver.url(),
            tenant_secret=TENANT_SECRET,
            callback_secret=CALLBACK_SECRET,
        )
    )
    upgrade_shared_database(config, database)
    base_url = f"http://127.0.0.1:{http}"
    process = ServerProcess(config, base_url, workdir / "server.log").start()
    return process, Server(base_url, pbx, trunk, trunk, workdir, database=database)


@pytest.fixture
def hooked(tmp_path: Path, receiver: Receiver, database_url: str) -> Iterator[Server]:
    process, server = _launch(tmp_path, receiver, database_url)
    yield server
    process.stop()


def dial(server: Server, extra: str = "") -> int:
    with server.client() as client:
        reply = client.get(f"/web/dial.php?extension=200&destination=0502760206{extra}")
    match = re.fullmatch(r"response: (true|false)\nunique: ([0-9]*)\n(error: .*\n)?", reply.text)
    assert match, reply.text
    return int(match.group(2))


def stored_types(server: Server, call_id: int) -> list[str]:
    with server.client() as client:
        events = client.get(f"/api/v1/calls/{call_id}").json()["events"]
    return [e["type"] for e in events]


@pytest.mark.parametrize(
    ("agent", "destination", "expected"),
    [
        ("agent_answer.xml", "destination_hangup.xml", ANSWERED),
        (
            "agent_busy.xml",
            None,
            ["call.queued", "call.agent_dialing", "call.ended"],
        ),
        (
            "agent_noanswer.xml",
            None,
            ["call.queued", "call.agent_dialing", "call.agent_ringing", "call.ended"],
        ),
    ],
)
def test_each_outcome_delivers_its_events_in_order(
    hooked: Server, receiver: Receiver, agent: str, destination: str | None, expected: list[str]
) -> None:
    peers = [hooked.peer(agent, hooked.pbx_port)]
    if destination:
        peers.append(hooked.peer(destination, hooked.trunk_port))
    call_id = dial(hooked)
    got = receiver.wait_for(call_id, "call.ended")
    assert [r.type for r in got] == expected == stored_types(hooked, call_id)
    assert [r.sequence for r in got] == list(range(1, len(expected) + 1))
    assert len({r.message_id for r in got}) == len(got)
    ended = got[-1].body["call"]
    assert isinstance(ended, dict)
    assert ended["uniqueid"] and ended["tenant"] == "default"
    assert ended["total_seconds"] is not None
    if expected == ANSWERED:
        assert ended["result"] == "completed"
        assert ended["talk_seconds"] >= 0.9  # destination_hangup.xml talks for 1 s
    assert receiver.refused == []


def refused_call(server: Server) -> int:
    """A call the default policy refuses (international): stored, never dialled."""
    with server.client() as client:
        reply = client.get("/web/dial.php?extension=200&destination=0019175550100")
    assert reply.status_code == 403, reply.text
    match = re.search(r"unique: ([0-9]+)", reply.text)
    assert match, reply.text
    return int(match.group(1))


def test_a_refused_call_delivers_queued_then_rejected(hooked: Server, receiver: Receiver) -> None:
    call_id = refused_call(hooked)
    got = receiver.wait_for(call_id, "call.rejected")
    assert [r.type for r in got] == ["call.queued", "call.rejected"]
    assert got[-1].body["call"]["result"] == "rejected"  # type: ignore[index]


def test_a_failing_receiver_gets_everything_in_order_once_it_recovers(
    hooked: Server, receiver: Receiver
) -> None:
    receiver.status = 500
    hooked.peer("agent_answer.xml", hooked.pbx_port)
    hooked.peer("destination_hangup.xml", hooked.trunk_port)
    call_id = dial(hooked)
    assert hooked.wait_for(call_id)["result"] == "completed"
    failed_ids = {message_id for message_id, status in receiver.attempts if status == 500}
    assert len(failed_ids) == 1  # only the first event is tried while it keeps failing
    receiver.status = 200
    got = receiver.wait_for(call_id, "call.ended")
    assert [r.type for r in got] == ANSWERED
    assert got[0].message_id in failed_ids  # the retry carried the same webhook-id
    with hooked.client() as client:
        deliveries = client.get(f"/api/v1/calls/{call_id}/webhooks").json()["deliveries"]
    first = deliveries[0]
    assert first["state"] == "delivered" and first["attempts"] >= 2
    assert [a["status"] for a in first["attempts_made"]][:2] == [500, 500]


def test_twenty_concurrent_calls_each_arrive_in_order_after_an_outage(
    hooked: Server, receiver: Receiver
) -> None:
    receiver.stop()  # connection refused from now on
    hooked.peer("agent_answer.xml", hooked.pbx_port, calls=20)
    hooked.peer("destination_hangup.xml", hooked.trunk_port, calls=20)
    with ThreadPoolExecutor(20) as pool:
        call_ids = list(pool.map(lambda _: dial(hooked), range(20)))
    for call_id in call_ids:
        assert hooked.wait_for(call_id, timeout=30)["result"] == "completed"
    receiver.start()
    for call_id in call_ids:
        got = receiver.wait_for(call_id, "call.ended", timeout=30)
        assert [r.type for r in got] == ANSWERED, call_id
        assert [r.sequence for r in got] == list(range(1, 9))


def test_a_call_callback_url_gets_its_own_filtered_events(
    hooked: Server, receiver: Receiver
) -> None:
    mine = Receiver(CALLBACK_SECRET).start()
    try:
        hooked.peer("agent_answer.xml", hooked.pbx_port)
        hooked.peer("destination_hangup.xml", hooked.trunk_port)
        call_id = dial(hooked, f"&callback_url={mine.url('/lead/7')}")
        got = mine.wait_for(call_id, "call.ended")
        assert [(r.type, r.path) for r in got] == [
            ("call.connected", "/lead/7"),
            ("call.ended", "/lead/7"),
        ]
        assert [r.sequence for r in got] == [7, 8]  # the call's own numbering
        assert receiver.wait_for(call_id, "call.ended")  # the tenant webhook still gets all
        assert mine.refused == []
    finally:
        mine.stop()


@pytest.mark.parametrize(
    ("value", "why"),
    [
        ("http://127.0.0.1:9/a%0D%0AX-Evil:%201", "control character"),
        ("file:///etc/passwd", "http or https"),
        ("http://user:pw@127.0.0.1:9/", "credentials"),
        ("http://127.0.0.1:9/" + "a" * 10_000, "2048"),
        ("https://crm.example.com/hook", "allowed_hosts"),
    ],
)
def test_bad_callback_urls_are_refused_naming_the_field(
    hooked: Server, receiver: Receiver, value: str, why: str
) -> None:
    with hooked.client() as client:
        before = client.get("/api/v1/calls").json()["calls"]
        raw = value.replace("%0D%0A", "\r\n").replace("%20", " ")
        query = {"extension": "200", "destination": "0502760206", "callback_url": raw}
        text = client.get("/web/dial.php", params=query)
        v1 = client.post(
            "/api/v1/calls",
            json={"extension": "200", "destination": "0502760206", "callback_url": raw},
        )
        after = client.get("/api/v1/calls").json()["calls"]
    assert text.status_code == 400 and "invalid callback_url" in text.text and why in text.text
    assert v1.status_code == 400
    assert v1.json()["error"]["field"] == "callback_url"
    assert before == after  # nothing stored
    assert receiver.attempts == []  # nothing sent


def test_gone_disables_the_subscription(hooked: Server, receiver: Receiver) -> None:
    receiver.status = 410
    first = refused_call(hooked)
    deadline = time.monotonic() + 10
    while not receiver.attempts and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(0.5)  # time enough for a (wrong) second attempt
    second = refused_call(hooked)
    time.sleep(0.5)
    assert len(receiver.attempts) == 1  # the 410, and nothing after it
    with hooked.client() as client:
        gone = client.get(f"/api/v1/calls/{first}/webhooks").json()["deliveries"]
        after = client.get(f"/api/v1/calls/{second}/webhooks").json()["deliveries"]
    assert [(d["type"], d["state"]) for d in gone] == [
        ("call.queued", "failed"),
        ("call.rejected", "failed"),
    ]
    assert after == []  # a disabled subscription is not queued for


def test_undelivered_events_survive_sigkill(
    tmp_path: Path, receiver: Receiver, database_url: str
) -> None:
    receiver.stop()
    process, server = _launch(tmp_path, receiver, database_url)
    try:
        server.peer("agent_answer.xml", server.pbx_port)
        server.peer("destination_hangup.xml", server.trunk_port)
        call_id = dial(server)
        assert server.wait_for(call_id)["result"] == "completed"
        os.kill(process.pid, signal.SIGKILL)
        process.process.wait()  # type: ignore[union-attr]
        receiver.start()
        process = ServerProcess(process.config, process.base_url, tmp_path / "again.log").start()
        got = receiver.wait_for(call_id, "call.ended", timeout=45)  # a restart under load
        once = list({r.message_id: r for r in got}.values())
        assert [r.type for r in once] == ANSWERED
        ids_by_sequence: dict[int, set[str]] = {}
        for r in got:
            ids_by_sequence.setdefault(r.sequence, set()).add(r.message_id)
        # A repeat (at least once) would carry the same webhook-id: never a new one.
        assert all(len(ids) == 1 for ids in ids_by_sequence.values())
    finally:
        process.stop()
