"""The Asterisk engine on its own (no HTTP, no store) against the replaying AMI peer."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import pytest

from click2call.calls import CallEvent, CallState, Result
from click2call.engines.asterisk import actions
from click2call.engines.asterisk.engine import AsteriskEngine
from click2call.settings import TenantAsterisk, TenantSettings
from tests.ami_recordings import received, recorded_order
from tests.ami_replay import ReplayPeer


class Sink:
    def __init__(self) -> None:
        self.events: list[CallEvent] = []
        self.changed = asyncio.Event()

    def __call__(self, event: CallEvent) -> None:
        self.events.append(event)
        self.changed.set()

    async def reach(self, state: CallState) -> CallEvent:
        async with asyncio.timeout(10):
            while not any(e.state in (state, CallState.ENDED) for e in self.events):
                self.changed.clear()
                await self.changed.wait()
        return next(e for e in self.events if e.state in (state, CallState.ENDED))


@pytest.fixture
async def running(
    request: pytest.FixtureRequest,
) -> AsyncIterator[tuple[AsteriskEngine, ReplayPeer]]:
    peer = ReplayPeer(time_scale=getattr(request, "param", 0.02)).start()
    settings = TenantAsterisk(port=peer.port, secret="test", reconnect_max_delay=1)  # type: ignore[arg-type]
    tenant = TenantSettings(name="t", engine="asterisk", asterisk=settings)
    engine = AsteriskEngine(tenant, lambda: datetime.now(UTC))
    await engine.start()
    async with asyncio.timeout(5):
        await engine.client.wait_connected()
    yield engine, peer
    await engine.close()
    peer.stop()


async def test_a_second_hangup_of_a_gone_channel_is_harmless(
    running: tuple[AsteriskEngine, ReplayPeer],
) -> None:
    engine, peer = running
    peer.play("originate-sip-then-hangup-action.txt")
    sink = Sink()
    await engine.originate(recorded_order("1795500000.1"), sink)
    assert (await sink.reach(CallState.CONNECTED)).state is CallState.CONNECTED
    # Both go out before the Hangup event: the second finds no channel any more.
    await asyncio.gather(engine.hangup("1795500000.1"), engine.hangup("1795500000.1"))
    end = await sink.reach(CallState.ENDED)
    assert (end.result, end.cause) == (
        Result.COMPLETED,
        "hung up by the API; Cause 16 Normal Clearing",
    )
    assert [a["Channel"] for a in peer.actions if a["Action"] == "Hangup"] == [
        "SIP/200-0000000a",
        "SIP/200-0000000a",
    ]
    assert peer.mismatches == []
    assert engine.health().active_calls == 0


# At full speed the Status list and the Hangup after it can share one read.
@pytest.mark.parametrize("running", [0.02, 0], indirect=True, ids=["paced", "at-once"])
async def test_the_engine_reports_each_state_once_and_in_order_across_a_reconnect(
    running: tuple[AsteriskEngine, ReplayPeer],
) -> None:
    engine, peer = running
    peer.play("reconnect-during-call.txt")
    sink = Sink()
    await engine.originate(recorded_order("1795500000.2"), sink)
    end = await sink.reach(CallState.ENDED)
    assert [e.state for e in sink.events] == [
        CallState.AGENT_DIALING,
        CallState.AGENT_RINGING,
        CallState.AGENT_ANSWERED,
        CallState.DESTINATION_DIALING,
        CallState.DESTINATION_RINGING,
        CallState.CONNECTED,
        CallState.ENDED,
    ]
    assert (end.result, end.cause) == (
        Result.COMPLETED,
        "destination hung up; Cause 16 Normal Clearing",
    )
    assert engine.client.connections == 2
    assert peer.mismatches == []


async def test_the_peer_sends_a_call_events_session_what_asterisk_would() -> None:
    """Login with `Events: call`: the recorded call's events of that class, byte for byte,
    and none of the dialplan, system or security classes."""
    peer = ReplayPeer(time_scale=0).start()
    peer.play("originate-sip-success.txt")
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", peer.port)
        writer.write(bytes(actions.login("click2call", "test", "login-1")))
        originate = actions.originate(recorded_order("1795478400.1001"), TenantAsterisk(), "c2c-1")
        writer.write(bytes(originate))
        data = b""
        async with asyncio.timeout(5):
            while b"Event: Hangup\r\n" not in data.rpartition(b"Uniqueid: c2c-1795478400-1001")[0]:
                data += await reader.read(65536)
            writer.write(b"Action: Logoff\r\nActionID: bye-1\r\n\r\n")
            while b"Response: Goodbye" not in data:
                data += await reader.read(65536)
        writer.close()
    finally:
        peer.stop()
    assert peer.mismatches == []
    recorded = received("originate-sip-success.txt")
    expected = [
        block
        for block in recorded.split(b"\r\n\r\n")
        if b"Privilege: " not in block or b"Privilege: call," in block
    ]
    got = data.replace(b"c2c-1795478400-1001", b"1795478400.1001").split(b"\r\n\r\n")
    assert got == expected
    assert b"Privilege: dialplan" in recorded and b"Privilege: dialplan" not in data
