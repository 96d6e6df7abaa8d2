"""Every link on every engine: the same requests, the same assertions on what users see.

The built-in SIP engine talks to SIPp phones and trunks; the Asterisk engine to a peer
replaying real Asterisk 20 recordings. Engine-specific wire checks live in
test_sip_calls.py and test_asterisk.py.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

import pytest

from tests.integration.conftest import AsteriskServer, Server

QUERY = "extension=200&destination=0502760206&tech=sip&outboundcid=036411111&foreignid=123"
MOBILE = {
    "client": "voipe16",
    "phone": "0502760206",
    "destination": "0541234567",
    "outboundcid": "036411111",
    "foreignid": "123",
}
RESULTS = {
    "success": "completed",
    "agent_busy": "agent_busy",
    "agent_no_answer": "agent_no_answer",
    "destination_busy": "destination_busy",
    "mobile": "completed",
}


@dataclass
class Backend:
    name: str
    server: Server
    prepare: Callable[[str], Callable[[int | str], None]]  # flow → finish(call key)


def _sip(server: Server) -> Backend:
    scenarios = {
        "success": [("agent_answer.xml", "pbx"), ("destination_hangup.xml", "trunk")],
        "agent_busy": [("agent_busy.xml", "pbx")],
        "agent_no_answer": [("agent_noanswer.xml", "pbx")],
        "destination_busy": [("agent_answer.xml", "pbx"), ("destination_busy.xml", "trunk")],
        "mobile": [("agent_answer.xml", "mobile")],
    }
    ports = {"pbx": server.pbx_port, "trunk": server.trunk_port, "mobile": server.mobile_trunk_port}

    def prepare(flow: str) -> Callable[[int | str], None]:
        calls = 2 if flow == "mobile" else 1
        peers = [server.peer(name, ports[where], calls) for name, where in scenarios[flow]]

        def finish(key: int | str) -> None:
            if flow == "mobile":  # both legs on one answering trunk: end it through the API
                server.hangup_when_connected(key)
            for peer in peers:
                assert peer.wait(20) == 0, peer.errors()

        return finish

    return Backend("sip", server, prepare)


def _asterisk(running: AsteriskServer) -> Backend:
    recordings = {
        "success": "originate-sip-success.txt",
        "agent_busy": "originate-agent-busy.txt",
        "agent_no_answer": "originate-agent-noanswer.txt",
        "destination_busy": "originate-destination-busy.txt",
        "mobile": "originate-mobile-local-success.txt",
    }

    def prepare(flow: str) -> Callable[[int | str], None]:
        running.peer.play(recordings[flow])

        def finish(_key: int | str) -> None:
            assert running.peer.mismatches == []

        return finish

    return Backend("asterisk", running.server, prepare)


@pytest.fixture(params=["sip", "asterisk"])
def backend(request: pytest.FixtureRequest) -> Backend:
    if request.param == "sip":
        # The engines' flows on one database; the database suites run on both.
        return _sip(request.getfixturevalue("shared_servers").on("sqlite"))
    return _asterisk(request.getfixturevalue("asterisk"))


def _check_call(call: dict[str, object], result: str) -> None:
    assert call["state"] == "ended"
    assert call["result"] == result
    assert call["foreignid"] == "123"
    assert call["destination_caller_id"] == "036411111"
    states = [e["state"] for e in call["events"]]  # type: ignore[attr-defined]
    assert states[:2] == ["queued", "agent_dialing"]
    assert states[-1] == "ended"
    assert (call["connected_at"] is not None) == ("connected" in states)
    assert (result == "completed") == ("connected" in states)


@pytest.mark.parametrize("flow", ["success", "agent_busy", "agent_no_answer", "destination_busy"])
def test_dial_php(backend: Backend, flow: str) -> None:
    finish = backend.prepare(flow)
    with backend.server.client() as client:
        reply = client.get(f"/web/dial.php?{QUERY}")
    assert reply.status_code == 200
    match = re.fullmatch(r"response: true\nunique: ([0-9]+)\n", reply.text)
    assert match, reply.text
    call_id = int(match.group(1))
    finish(call_id)
    call = backend.server.wait_for(call_id)
    _check_call(call, RESULTS[flow])
    assert call["agent"] == {"kind": "extension", "tech": "sip", "number": "200"}
    assert call["agent_caller_id"] == "0502760206"


def test_dial_external_php(backend: Backend) -> None:
    finish = backend.prepare("mobile")
    with backend.server.client() as client:
        reply = client.get("/voipe/dial_external.php", params=MOBILE)
    body = reply.json()
    assert reply.text == (f'{{"src":"502760206","uniqueid":"{body["uniqueid"]}","status":"ok"}}')
    finish(body["uniqueid"])
    call = backend.server.wait_for(body["uniqueid"])
    _check_call(call, "completed")
    assert call["agent"] == {"kind": "external", "tech": None, "number": "0502760206"}


def test_v1_api(backend: Backend) -> None:
    finish = backend.prepare("success")
    order = dict(item.split("=") for item in QUERY.split("&"))
    with backend.server.client() as client:
        reply = client.post("/api/v1/calls", json=order)
        assert reply.status_code == 201, reply.text
        created = reply.json()
        finish(created["id"])
        call = backend.server.wait_for(created["uniqueid"])
        _check_call(call, "completed")
        found = client.get("/api/v1/calls", params={"foreignid": "123", "limit": 1}).json()
    assert found["calls"][0]["id"] == created["id"]
