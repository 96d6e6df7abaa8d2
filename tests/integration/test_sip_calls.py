"""Two-leg calls through the built-in SIP engine, SIPp playing the PBX and the trunk.

Each test asserts what SIPp received on the wire and what the store kept, over UDP and
again over TCP (the same scenarios; SIPp with `-t t1`, the tenant's peers as
`sip:…;transport=tcp`).
"""

from __future__ import annotations

import re
import select
import socket
import struct
import time
from collections.abc import Iterator
from datetime import datetime
from hashlib import md5

import pytest

from click2call.calls import CallState
from click2call.demo.sipp import SippPeer
from tests.integration.conftest import Server, launch


@pytest.fixture(scope="module")
def tcp_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    process, running = launch(tmp_path_factory.mktemp("tcp-server"), transport="tcp")
    yield running
    process.stop()


@pytest.fixture(params=["udp", "tcp"])
def server(request: pytest.FixtureRequest, server: Server) -> Server:
    if request.param == "udp":
        return server
    tcp: Server = request.getfixturevalue("tcp_server")
    return tcp


DIAL = "/web/dial.php?extension=200&destination=0502760206&tech=sip&foreignid=crm-42"


def header(message: str, name: str) -> str:
    match = re.search(rf"^{name}:\s*(.*)$", message, re.MULTILINE | re.IGNORECASE)
    assert match, f"no {name} header in:\n{message}"
    return match.group(1).strip()


def user_of(address: str) -> str:
    match = re.search(r"sips?:([^@;>]+)@", address)
    assert match, address
    return match.group(1)


def requests(peer: SippPeer, method: str) -> list[str]:
    return [m for m in peer.received() if m.startswith(f"{method} ")]


def dial(server: Server, path: str = DIAL) -> int:
    with server.client() as client:
        reply = client.get(path)
    assert reply.status_code == 200, reply.text
    assert reply.headers["content-type"].startswith("text/plain")
    match = re.fullmatch(r"response: true\nunique: ([0-9]+)\n", reply.text)
    assert match, reply.text
    return int(match.group(1))


def finish(*peers: SippPeer) -> None:
    for peer in peers:
        assert peer.wait(20) == 0, f"{peer.scenario.name} failed: {peer.errors()}"


def test_both_answer_then_destination_hangs_up(server: Server) -> None:
    agent = server.peer("agent_answer.xml", server.pbx_port)
    destination = server.peer("destination_hangup.xml", server.trunk_port)
    call_id = dial(server, DIAL + "&outboundcid=036411111")
    call = server.wait_for(call_id)
    finish(agent, destination)

    first, reinvite = requests(agent, "INVITE")
    assert first.startswith("INVITE sip:200@127.0.0.1:")
    assert user_of(header(first, "From")) == "0502760206"  # the agent sees whom they call
    assert "Content-Length: 0" in first  # RFC 3725: the agent is asked for its offer
    dest_invite = requests(destination, "INVITE")[0]
    assert dest_invite.startswith("INVITE sip:0502760206@127.0.0.1:")
    assert user_of(header(dest_invite, "From")) == "036411111"
    assert "m=audio" in dest_invite  # the agent's offer goes to the destination
    assert "c=IN IP4 127.0.0.1" in reinvite  # the bridging re-INVITE carries real media
    assert requests(agent, "BYE"), "the agent must receive BYE when the destination hangs up"

    assert call["state"] == "ended"
    assert call["result"] == "completed"
    assert call["cause"] == "destination hung up"
    assert call["foreignid"] == "crm-42"
    assert call["agent_answered_at"] and call["connected_at"] and call["ended_at"]
    assert call["duration_seconds"] is not None and call["duration_seconds"] >= 0.9
    states = [e["state"] for e in call["events"]]  # type: ignore[union-attr]
    assert states == [state.value for state in CallState]  # every step, in order


def test_agent_hangs_up_first(server: Server) -> None:
    agent = server.peer("agent_hangup.xml", server.pbx_port)
    destination = server.peer("destination_answer.xml", server.trunk_port)
    call = server.wait_for(dial(server))
    finish(agent, destination)
    assert requests(destination, "BYE"), "the destination must receive BYE"
    assert (call["result"], call["cause"]) == ("completed", "agent hung up")


def test_agent_busy(server: Server) -> None:
    agent = server.peer("agent_busy.xml", server.pbx_port)
    call = server.wait_for(dial(server))
    finish(agent)
    assert call["result"] == "agent_busy"
    assert call["cause"] == "SIP 486 Busy Here"
    assert call["agent_answered_at"] is None and call["connected_at"] is None


def test_agent_no_answer_is_canceled(server: Server) -> None:
    agent = server.peer("agent_noanswer.xml", server.pbx_port)
    call = server.wait_for(dial(server))
    finish(agent)
    assert requests(agent, "CANCEL"), "the unanswered agent leg must be canceled"
    assert call["result"] == "agent_no_answer"
    assert call["cause"] == "no answer within 2 s"


def test_agent_challenge_is_answered_with_digest(server: Server) -> None:
    agent = server.peer("agent_auth.xml", server.pbx_port)
    destination = server.peer("destination_hangup.xml", server.trunk_port)
    call = server.wait_for(dial(server))
    finish(agent, destination)
    invites = requests(agent, "INVITE")
    authorization = header(invites[1], "Authorization")
    fields = dict(re.findall(r'(\w+)="?([^",]*)"?', authorization.removeprefix("Digest ")))
    assert (fields["username"], fields["realm"]) == ("agent", "click2call.test")
    # The response proves the password without carrying it (RFC 2617, no qop).
    ha1 = md5(b"agent:click2call.test:s3cret").hexdigest()
    ha2 = md5(f"INVITE:{fields['uri']}".encode()).hexdigest()
    assert fields["response"] == md5(f"{ha1}:{fields['nonce']}:{ha2}".encode()).hexdigest()
    assert "s3cret" not in "".join(agent.received())
    assert call["result"] == "completed"


def test_destination_busy_hangs_up_the_agent(server: Server) -> None:
    agent = server.peer("agent_answer.xml", server.pbx_port)
    destination = server.peer("destination_busy.xml", server.trunk_port)
    call = server.wait_for(dial(server))
    finish(agent, destination)
    assert requests(agent, "BYE"), "the agent must be hung up"
    assert (call["result"], call["cause"]) == ("destination_busy", "SIP 486 Busy Here")
    assert call["agent_answered_at"] is not None and call["connected_at"] is None


def test_hangup_through_the_api_ends_both_legs(server: Server) -> None:
    agent = server.peer("agent_answer.xml", server.pbx_port)
    destination = server.peer("destination_answer.xml", server.trunk_port)
    call_id = dial(server)
    server.hangup_when_connected(call_id)
    call = server.wait_for(call_id)
    finish(agent, destination)
    assert requests(agent, "BYE") and requests(destination, "BYE")
    assert (call["result"], call["cause"]) == ("completed", "hung up by the API")


def test_extension_caller_id_falls_back_to_extension_then_tenant(server: Server) -> None:
    agent = server.peer("agent_answer.xml", server.pbx_port)
    destination = server.peer("destination_hangup.xml", server.trunk_port)
    call = server.wait_for(dial(server, "/web/dial.php?extension=201&destination=0502760206"))
    finish(agent, destination)
    assert user_of(header(requests(destination, "INVITE")[0], "From")) == "036499999"
    assert call["destination_caller_id"] == "036499999"
    assert call["agent"] == {"kind": "extension", "tech": "sip", "number": "201"}


@pytest.mark.parametrize("path", ["/voipe/dial_external.php", "/api/v1/calls"])
def test_mobile_agent_goes_through_the_trunk(server: Server, path: str) -> None:
    trunk = server.peer("agent_answer.xml", server.mobile_trunk_port, calls=2)
    query = {"client": "voipe16", "phone": "0502760206", "destination": "0521234567"}
    with server.client() as client:
        if path.startswith("/voipe"):
            reply = client.get(path, params={**query, "foreignid": "m-1"})
            assert reply.status_code == 200
            body = reply.json()
            assert list(body) == ["src", "uniqueid", "status"]
            assert body["src"] == "502760206" and body["status"] == "ok"
            assert re.fullmatch(r"[0-9]{10}\.[0-9]+", body["uniqueid"])
            assert reply.text == (
                f'{{"src":"502760206","uniqueid":"{body["uniqueid"]}","status":"ok"}}'
            )
            key = body["uniqueid"]
        else:
            json = {"tenant": "voipe16", "phone": "0502760206", "destination": "0521234567"}
            reply = client.post(path, json=json)
            assert reply.status_code == 201, reply.text
            key = reply.json()["id"]
    server.hangup_when_connected(key)
    call = server.wait_for(key)
    finish(trunk)
    invites = [m for m in requests(trunk, "INVITE") if "Content-Length: 0" in m]
    assert invites[0].startswith("INVITE sip:0502760206@")  # the agent's mobile first
    assert call["agent"] == {"kind": "external", "tech": None, "number": "0502760206"}
    assert call["destination_caller_id"] == "036422222"


def test_trunk_proxy_challenge_is_answered(server: Server) -> None:
    agent = server.peer("agent_hangup.xml", server.pbx_port)
    trunk = server.peer("trunk_auth407.xml", server.trunk_port)
    call = server.wait_for(dial(server))
    finish(agent, trunk)
    authorization = header(requests(trunk, "INVITE")[1], "Proxy-Authorization")
    assert authorization.startswith("Digest ") and 'username="agent"' in authorization
    assert (call["result"], call["cause"]) == ("completed", "agent hung up")


def test_agent_refusing_the_bridge_ends_both_legs(server: Server) -> None:
    agent = server.peer("agent_refuse_reinvite.xml", server.pbx_port)
    destination = server.peer("destination_answer.xml", server.trunk_port)
    call = server.wait_for(dial(server))
    finish(agent, destination)
    assert requests(agent, "BYE") and requests(destination, "BYE")
    assert call["result"] == "error"
    assert call["cause"] == "agent refused the bridged media: SIP 488 Not Acceptable Here"


def test_destination_no_answer_cancels_it_and_hangs_up_the_agent(server: Server) -> None:
    agent = server.peer("agent_answer.xml", server.pbx_port)
    destination = server.peer("destination_noanswer.xml", server.trunk_port)
    call = server.wait_for(dial(server))
    finish(agent, destination)
    assert requests(destination, "CANCEL"), "the unanswered destination must be canceled"
    assert requests(agent, "BYE"), "the agent must be hung up"
    assert (call["result"], call["cause"]) == ("destination_no_answer", "no answer within 3 s")


def test_the_agent_hears_ringback_until_the_destination_answers(server: Server) -> None:
    phone_media = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    phone_media.bind(("127.0.0.1", 0))
    port = phone_media.getsockname()[1]
    agent = server.peer(
        "agent_ringback.xml", server.pbx_port, extra_args=("-key", "rtp_port", str(port))
    )
    destination = server.peer("destination_ring_then_answer.xml", server.trunk_port)
    call_id = dial(server)
    packets: list[tuple[float, bytes]] = []
    deadline = time.monotonic() + 4
    while time.monotonic() < deadline:
        ready, _, _ = select.select([phone_media], [], [], 0.1)
        if ready:
            packets.append((time.time(), phone_media.recv(2048)))
    phone_media.close()
    call = server.wait_for(call_id)
    finish(agent, destination)

    ack = requests(agent, "ACK")[0]
    assert re.search(r"^m=audio [0-9]+ RTP/AVP 0$", ack, re.MULTILINE)  # PCMU, the first offered
    assert "a=sendonly" in ack
    assert 30 <= len(packets) <= 70  # about 1 s of 20 ms packets while the destination rang
    versions, types = {p[0] >> 6 for _, p in packets}, {p[1] & 0x7F for _, p in packets}
    assert (versions, types) == ({2}, {0})
    sequence = [struct.unpack("!H", p[2:4])[0] for _, p in packets]
    stamps = [struct.unpack("!I", p[4:8])[0] for _, p in packets]
    assert sequence == list(range(len(packets)))
    assert stamps == [160 * n for n in range(len(packets))]
    assert packets[0][1][1] & 0x80  # marker on the first packet
    assert all(len(p) == 12 + 160 for _, p in packets)
    assert len(set(packets[5][1][12:])) > 10  # a tone, not µ-law silence (all 0xFF)
    connected = datetime.fromisoformat(str(call["connected_at"])).timestamp()
    assert packets[-1][0] < connected + 0.2  # the tone stops when the destination answers
    assert call["result"] == "completed"
