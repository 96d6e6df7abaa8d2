"""The Asterisk engine against a peer replaying real Asterisk 20 AMI recordings."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest

from tests.ami_replay import ReplayPeer
from tests.integration.conftest import AsteriskServer, launch_asterisk

DIAL = (
    "/web/dial.php?extension=200&destination=0502760206&tech=sip"
    "&outboundcid=036411111&foreignid=123"
)


def dial(asterisk: AsteriskServer, path: str = DIAL) -> httpx.Response:
    with asterisk.server.client() as client:
        return client.get(path)


def test_originate_is_the_recorded_action_and_the_call_completes(asterisk: AsteriskServer) -> None:
    asterisk.peer.play("originate-sip-success.txt")
    reply = dial(asterisk)
    assert reply.status_code == 200, reply.text
    call = asterisk.server.wait_for(int(reply.text.split("unique: ")[1]))
    assert asterisk.peer.mismatches == []
    originate = asterisk.peer.actions[-1]
    assert originate["Channel"] == "SIP/200"
    # Asterisk's CDR id is ours, in a form Asterisk never mints itself.
    assert originate["ChannelId"] == f"c2c-{str(call['uniqueid']).replace('.', '-')}"
    assert originate["Variable"] == "FOREIGNID=123,CLICK2CALL_OUTBOUNDCID=036411111"
    assert (call["result"], call["cause"]) == (
        "completed",
        "destination hung up; Cause 16 Normal Clearing",
    )
    assert [e["state"] for e in call["events"]][-3:] == [
        "destination_ringing",
        "connected",
        "ended",
    ]


@pytest.mark.parametrize(
    ("recording", "path", "result"),
    [
        (
            "originate-pjsip-success.txt",
            DIAL.replace("200", "201").replace("=sip", "=pjsip"),
            "completed",
        ),
        ("originate-agent-busy.txt", DIAL, "agent_busy"),
        ("originate-agent-noanswer.txt", DIAL, "agent_no_answer"),
        ("originate-agent-unreachable.txt", DIAL, "agent_failed"),
        ("originate-destination-busy.txt", DIAL, "destination_busy"),
        ("originate-destination-noanswer.txt", DIAL, "destination_no_answer"),
        ("originate-unknown-endpoint-sip.txt", DIAL.replace("200", "999"), "agent_failed"),
        (
            "originate-unknown-endpoint-pjsip.txt",
            DIAL.replace("200", "999").replace("=sip", "=pjsip"),
            "agent_failed",
        ),
    ],
)
def test_recorded_outcomes(
    asterisk: AsteriskServer, recording: str, path: str, result: str
) -> None:
    asterisk.peer.play(recording)
    reply = dial(asterisk, path)
    assert reply.status_code == 200, reply.text
    call = asterisk.server.wait_for(int(reply.text.split("unique: ")[1]))
    assert asterisk.peer.mismatches == []
    assert call["result"] == result


def test_mobile_link_uses_the_local_channel_template(asterisk: AsteriskServer) -> None:
    asterisk.peer.play("originate-mobile-local-success.txt")
    with asterisk.server.client() as client:
        reply = client.get(
            "/voipe/dial_external.php",
            params={
                "client": "voipe16",
                "phone": "0502760206",
                "destination": "0541234567",
                "outboundcid": "036411111",
                "foreignid": "123",
            },
        )
    body = reply.json()
    assert body["status"] == "ok" and body["src"] == "502760206"
    call = asterisk.server.wait_for(body["uniqueid"])
    assert asterisk.peer.mismatches == []
    originate = asterisk.peer.actions[-1]
    assert originate["Channel"] == "Local/0502760206@from-internal"
    assert originate["OtherChannelId"] == f"{originate['ChannelId']};2"
    assert call["result"] == "completed"


def test_injection_never_reaches_the_pbx(asterisk: AsteriskServer) -> None:
    before = len(asterisk.peer.actions)
    for bad in ("200%0d%0aAction:%20Ping", "200%0aX", "200%00"):
        reply = dial(asterisk, DIAL.replace("extension=200", f"extension={bad}"))
        assert reply.status_code == 400
    reply = dial(asterisk, DIAL.replace("foreignid=123", "foreignid=1%0d%0a%0d%0aAction:%20Ping"))
    assert reply.status_code == 400
    assert len(asterisk.peer.actions) == before


@pytest.mark.parametrize(
    ("refused", "listing"),
    [
        ((), ["CoreShowChannels"]),
        # An account without the reporting/system class: Status answers instead.
        (("coreshowchannels",), ["CoreShowChannels", "Status"]),
    ],
    ids=["CoreShowChannels", "Status-after-CoreShowChannels-refused"],
)
def test_a_call_outlives_a_lost_link_and_ends_with_its_real_result(
    asterisk: AsteriskServer, refused: tuple[str, ...], listing: list[str]
) -> None:
    # Connection 1 drops once the call is bridged; connection 2 lists the channels.
    logins = asterisk.peer.logins
    asterisk.peer.refused.update(refused)
    try:
        asterisk.peer.play("reconnect-during-call.txt")
        call = asterisk.server.wait_for(int(dial(asterisk).text.split("unique: ")[1]))
    finally:
        asterisk.peer.refused.clear()
    assert asterisk.peer.mismatches == []
    assert asterisk.peer.logins == logins + 1
    sent = [a["Action"] for a in asterisk.peer.actions]
    assert sent[-1 - len(listing) :] == ["Login", *listing]
    assert (call["result"], call["cause"]) == (
        "completed",
        "destination hung up; Cause 16 Normal Clearing",
    )
    assert float(call["duration_seconds"]) > 0  # type: ignore[arg-type]
    assert [e["state"] for e in call["events"]][-2:] == ["connected", "ended"]


def test_a_server_killed_during_a_call_follows_it_to_its_real_end_once_restarted(
    tmp_path: Path,
) -> None:
    peer = ReplayPeer().start()
    running = launch_asterisk(tmp_path, peer, wait_logins=1, tenants=1)
    try:
        # Connection 1 is lost once the call is bridged: there, the server is killed.
        peer.play("reconnect-during-call.txt", client_leaves=True)
        call_id = int(dial(running).text.split("unique: ")[1])
        assert running.server.wait_for(call_id, "connected")["state"] == "connected"
        deadline = time.monotonic() + 5
        while not peer.waiting_for_next_connection and time.monotonic() < deadline:
            time.sleep(0.01)
        process = running.process.process
        assert process is not None
        process.kill()  # SIGKILL: no goodbye, the row stays "connected"
        process.wait()
        killed = datetime.now(UTC)
        time.sleep(0.2)
        running.process.start()
        call = running.server.wait_for(call_id)
    finally:
        running.process.stop()
        peer.stop()
    assert peer.mismatches == []
    assert peer.logins == 2
    # Re-found in the channel list of the new connection, then the destination hung up.
    assert [a["Action"] for a in peer.actions][-2:] == ["Login", "CoreShowChannels"]
    assert (call["result"], call["cause"]) == (
        "completed",
        "destination hung up; Cause 16 Normal Clearing",
    )
    # Talk time from the connection before the kill to the end after the restart.
    connected = datetime.fromisoformat(str(call["connected_at"]))
    ended = datetime.fromisoformat(str(call["ended_at"]))
    assert connected < killed < killed + timedelta(seconds=0.2) < ended
    assert call["duration_seconds"] == (ended - connected).total_seconds()
    assert [e["state"] for e in call["events"]][-2:] == ["connected", "ended"]


def test_a_call_that_cannot_be_reconciled_ends_as_error_and_the_link_comes_back(
    asterisk: AsteriskServer,
) -> None:
    logins = asterisk.peer.logins
    asterisk.peer.play("originate-sip-success.txt", drop_after="Event: OriginateResponse")
    reply = dial(asterisk)
    call = asterisk.server.wait_for(int(reply.text.split("unique: ")[1]))
    # The login recording holds no channel list: the peer refuses both list actions.
    listing = ("'CoreShowChannels'", "'Status'")
    assert [m for m in asterisk.peer.mismatches if not any(a in m for a in listing)] == []
    asterisk.peer.mismatches.clear()
    assert call["result"] == "error"
    assert call["cause"].startswith("AMI link to the PBX lost")  # type: ignore[union-attr]
    assert "(Status: not in the recordings)" in str(call["cause"])
    assert call["agent_answered_at"] is not None  # what was known is kept
    assert asterisk.peer.logins == logins + 1  # one persistent connection, back again
    deadline = time.monotonic() + 10
    with asterisk.server.client() as client:
        while client.get("/api/v1/health").status_code != 200 and time.monotonic() < deadline:
            time.sleep(0.05)
    asterisk.peer.play("originate-sip-success.txt")
    call = asterisk.server.wait_for(int(dial(asterisk).text.split("unique: ")[1]))
    assert call["result"] == "completed"


def test_hangup_through_the_api_hangs_up_the_agent_channel(asterisk: AsteriskServer) -> None:
    asterisk.peer.play("originate-sip-then-hangup-action.txt")
    call_id = int(dial(asterisk).text.split("unique: ")[1])
    asterisk.server.hangup_when_connected(call_id)
    call = asterisk.server.wait_for(call_id)
    assert asterisk.peer.mismatches == []
    hangup = asterisk.peer.actions[-1]
    assert (hangup["Action"], hangup["Channel"]) == ("Hangup", "SIP/200-0000000a")
    assert (call["result"], call["cause"]) == (
        "completed",
        "hung up by the API; Cause 16 Normal Clearing",
    )


def test_one_login_serves_many_calls(asterisk: AsteriskServer) -> None:
    logins = asterisk.peer.logins
    for _ in range(3):
        asterisk.peer.play("originate-agent-busy.txt")
        assert (
            asterisk.server.wait_for(int(dial(asterisk).text.split("unique: ")[1]))["result"]
            == "agent_busy"
        )
    assert asterisk.peer.logins == logins


def test_a_refused_login_fails_calls_fast_with_the_reason(tmp_path: Path) -> None:
    peer = ReplayPeer(login="login-bad-secret.txt").start()
    config_secret = "wrong"
    running = launch_asterisk(tmp_path, peer, secret=config_secret, wait_logins=0)
    try:
        with running.server.client() as client:
            deadline = time.monotonic() + 5
            health = client.get("/api/v1/health")
            while "Authentication failed" not in health.text and time.monotonic() < deadline:
                time.sleep(0.05)
                health = client.get("/api/v1/health")
            assert health.status_code == 503
            assert "login refused: Authentication failed" in health.text
            assert config_secret not in health.text
            started = time.monotonic()
            reply = client.get(DIAL)
            assert time.monotonic() - started < 1  # fails fast, no waiting on the PBX
        assert reply.status_code == 503
        lines = reply.text.splitlines()
        assert lines[0] == "response: false"
        assert lines[2].startswith("error: PBX not reachable over AMI")
        call_id = lines[1].split("unique: ")[1]
        assert running.server.wait_for(call_id)["result"] == "error"  # the attempt is kept
    finally:
        running.process.stop()
        peer.stop()
    assert peer.mismatches == []


def test_an_overdue_call_is_hung_up_then_ended(asterisk: AsteriskServer) -> None:
    # The PBX goes quiet after the bridge: no Hangup event will ever come.
    asterisk.peer.play("originate-sip-success.txt", stop_after="Event: BridgeEnter")
    reply = dial(asterisk, DIAL + "&tenant=quick")
    call_id = int(reply.text.split("unique: ")[1])
    assert asterisk.server.wait_for(call_id, "connected")["state"] == "connected"
    call = asterisk.server.wait_for(call_id, timeout=20)
    hangup = asterisk.peer.actions[-1]
    assert (hangup["Action"], hangup["Channel"]) == ("Hangup", "SIP/200-00000006")
    assert len(asterisk.peer.mismatches) == 1  # the recordings hold no Hangup action
    asterisk.peer.mismatches.clear()
    assert call["result"] == "error"
    assert "no end for this call" in str(call["cause"])
