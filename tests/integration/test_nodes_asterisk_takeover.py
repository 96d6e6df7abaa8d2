"""Issue 9's takeover drill on the Asterisk engine: two nodes on one PostgreSQL and one PBX
(the replay peer, one AMI session per node). Node A is killed (SIGKILL) with a connected
call: past the lease node B hangs it up over B's own AMI link and stores why; started
again within the lease instead, A finds its call in the PBX's channel list and follows it
to its real end.

What the replay peer cannot serve: the reply to node B's Hangup. No recording holds a
Hangup sent on a second AMI session for a channel another session originated, nor one
naming the channel by its id (the recorded Hangup names it `SIP/200-0000000a`), so the
peer refuses it as unscripted ("not in the recordings") and no Asterisk reply is made up.
The drill checks what B sent, byte for byte, and what the store kept.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from click2call.engines.asterisk import actions
from click2call.takeover import takeover_cause
from tests.ami_replay import ReplayPeer
from tests.integration.conftest import AsteriskServer, launch_asterisk
from tests.integration.test_nodes_takeover import LEASE, TIMING, sigkill
from tests.postgres_cluster import PostgresCluster

DIAL = (
    "/web/dial.php?extension=200&destination=0502760206&tech=sip"
    "&outboundcid=036411111&foreignid=123"
)


@dataclass
class AsteriskNodes:
    a: AsteriskServer
    b: AsteriskServer
    peer: ReplayPeer


@pytest.fixture
def asterisk_nodes(postgres: PostgresCluster, tmp_path: Path) -> Iterator[AsteriskNodes]:
    """Nodes "node-a" and "node-b" on one new database, both logged in to one PBX."""
    url = postgres.new_database()
    peer = ReplayPeer().start()
    running = []
    try:
        for name, logins in (("a", 1), ("b", 2)):
            (tmp_path / name).mkdir()
            extra = f'node_id = "node-{name}"\n{TIMING}'
            running.append(
                launch_asterisk(
                    tmp_path / name,
                    peer,
                    wait_logins=logins,
                    tenants=1,
                    database=url,
                    server_extra=extra,
                )
            )
        assert peer.logins == 2
        yield AsteriskNodes(running[0], running[1], peer)
    finally:
        for node in running:
            node.process.stop()
        peer.stop()
        postgres.drop_database(url)


def dial(node: AsteriskServer) -> int:
    with node.server.client() as client:
        reply = client.get(DIAL)
    assert reply.status_code == 200, reply.text
    return int(reply.text.split("unique: ")[1])


def test_a_lost_nodes_call_is_hung_up_over_the_survivors_ami_link(
    asterisk_nodes: AsteriskNodes,
) -> None:
    a, b, peer = asterisk_nodes.a, asterisk_nodes.b, asterisk_nodes.peer
    # Bridged, then the recording waits for a Hangup that A will never send.
    peer.play("originate-sip-then-hangup-action.txt")
    call_id = dial(a)
    assert a.server.wait_for(call_id, "connected")["state"] == "connected"
    a_session, b_session = 0, 1  # A logged in before B was started
    assert b"Action: Originate" in peer.received[a_session]
    sigkill(a.process)
    killed = time.monotonic()

    call = b.server.wait_for(call_id, timeout=3 * LEASE)
    ended_after = time.monotonic() - killed
    assert (call["state"], call["result"]) == ("ended", "error"), call
    assert call["cause"] == takeover_cause("node-a", "node-b")
    assert ended_after < LEASE + 3, ended_after
    # B's Hangup names the agent channel by the id A preset on it, and carries an ActionID
    # of B's own session (its Login's token): byte for byte what B wrote.
    channel_id = actions.channel_id(str(call["uniqueid"])).encode()
    b_bytes = bytes(peer.received[b_session])
    login_id = b_bytes.split(b"ActionID: ", 1)[1].split(b"\r\n", 1)[0]  # c2c-<token>-1
    token = login_id.removesuffix(b"-1")
    expected = b"Action: Hangup\r\nActionID: %s-2\r\nChannel: %s\r\n\r\n" % (token, channel_id)
    assert b_bytes.endswith(expected), b_bytes
    assert b"Hangup" not in peer.received[a_session]
    # The one action no recording answers (module docstring).
    assert len(peer.mismatches) == 1 and "'Hangup'" in peer.mismatches[0], peer.mismatches
    log = (b.server.workdir / "server.log").read_text()
    assert "taking over its 1 live call(s)" in log
    print(f"call ended {ended_after:.1f} s after the kill (lease {LEASE} s)")


def test_a_node_restarted_within_the_lease_follows_its_call_to_the_end(
    asterisk_nodes: AsteriskNodes,
) -> None:
    a, b, peer = asterisk_nodes.a, asterisk_nodes.b, asterisk_nodes.peer
    # A's session is lost once the call is bridged (A is killed there); the recording's
    # second session is A's again, after the restart: it lists the channels and sees the
    # destination hang up.
    peer.play("reconnect-during-call.txt", client_leaves=True)
    call_id = dial(a)
    assert a.server.wait_for(call_id, "connected")["state"] == "connected"
    deadline = time.monotonic() + 5
    while not peer.waiting_for_next_connection and time.monotonic() < deadline:
        time.sleep(0.01)
    sigkill(a.process)
    a.process.start()

    call = b.server.wait_for(call_id, timeout=3 * LEASE)
    assert peer.mismatches == []
    assert (call["state"], call["result"]) == ("ended", "completed"), call
    assert call["cause"] == "destination hung up; Cause 16 Normal Clearing"
    assert peer.logins == 3  # A, B, and A again
    assert "taking over" not in (b.server.workdir / "server.log").read_text()
