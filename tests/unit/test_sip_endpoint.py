"""The SIP endpoint (endpoint.py) on a real loop, its socket's sends captured and
responses handed in as if from the network: what it keeps of a call once answered."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import socket
from pathlib import Path

import pytest

from click2call.engines.sip import snapshot as snap
from click2call.engines.sip import third_party as tp
from click2call.engines.sip import transaction
from click2call.engines.sip.dialog import reply
from click2call.engines.sip.endpoint import SipEndpoint, _out_of_dialog
from click2call.engines.sip.leg import SendRequest, UacLeg
from click2call.engines.sip.message import Request, Response, parse_datagram
from click2call.engines.sip.sdp import Origin
from click2call.engines.sip.targets import LegTarget
from click2call.engines.sip.transport import Flow
from click2call.errors import EngineUnavailable
from click2call.settings import HostPort, SipStackSettings
from tests.integration.conftest import make_certificate

SDP = "v=0\r\no=a 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
PEER = ("127.0.0.1", 5070)


class Owner:
    def __init__(self) -> None:
        self.events: list[tp.LegEvent] = []

    def leg_event(self, event: tp.LegEvent) -> None:
        self.events.append(event)

    def leg_changed(self) -> None:
        pass


class Wire:
    """What the endpoint sends, parsed; and responses handed back in from the peer."""

    def __init__(self, endpoint: SipEndpoint) -> None:
        self.endpoint = endpoint
        self.sent: list[Request] = []
        endpoint.transports.send = self.send  # type: ignore[method-assign]

    def send(self, data: bytes, _flow: Flow, _name: str | None = None) -> None:
        message = parse_datagram(data)
        assert isinstance(message, Request)
        self.sent.append(message)

    def methods(self) -> list[str]:
        return [request.method for request in self.sent]

    def answer(self, request: Request, code: int) -> bytes:
        response = reply(request, code, to_tag="peer1")
        if request.method == "INVITE" and code == 200:
            response.add("Contact", "<sip:200@127.0.0.1:5070>")
            response.set("Content-Type", "application/sdp")
            response.body = SDP.encode()
        return bytes(response)

    def deliver(self, data: bytes) -> None:
        self.endpoint.transports._datagrams._handle(data, PEER)


async def endpoint_and_wire() -> tuple[SipEndpoint, Wire]:
    for _attempt in range(5):  # port 0 gives a free UDP port, which TCP may have taken
        endpoint = SipEndpoint(SipStackSettings(host="127.0.0.1", port=0, options_interval=0))
        with contextlib.suppress(EngineUnavailable):
            await endpoint.start()
            return endpoint, Wire(endpoint)
    raise AssertionError("no free port for UDP and TCP alike")


def destination_leg(endpoint: SipEndpoint) -> UacLeg:
    counter = itertools.count(0x1000)
    target = LegTarget(HostPort(host=PEER[0], port=PEER[1]), "0502760206", "036411111", None, None)
    return UacLeg(tp.Leg.DESTINATION, target, endpoint.local(), lambda: f"{next(counter):x}", "1.1")


async def _not_acked_after_timer_m(wire: Wire, ok: bytes) -> None:
    """Timer M over, the ACK is let go: the 2xx coming again gets nothing."""
    await asyncio.sleep(64 * transaction.T1 + 0.2)
    sent = len(wire.sent)
    wire.deliver(ok)
    assert len(wire.sent) == sent


def test_an_answered_invite_keeps_no_transaction_and_its_2xx_is_acked_until_timer_m(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Thousands of calls connect within 32 s: their INVITE transactions (RFC 6026's
    # Accepted state) are not kept for that time, yet a 2xx sent again is ACKed again,
    # by the leg, as long as the transaction would have passed it up.
    monkeypatch.setattr(transaction, "T1", 0.005)  # timer M: 64*T1 = 0.32 s

    async def scenario() -> None:
        endpoint, wire = await endpoint_and_wire()
        leg, owner = destination_leg(endpoint), Owner()
        endpoint.place(leg, owner, SDP)
        invite = wire.sent[0]
        ok = wire.answer(invite, 200)
        wire.deliver(wire.answer(invite, 180))
        wire.deliver(ok)
        assert wire.methods()[-1] == "ACK"
        assert endpoint._clients == {}  # the INVITE's transaction is forgotten at once
        assert tp.Answered(tp.Leg.DESTINATION, SDP) in owner.events
        wire.deliver(ok)
        assert wire.methods()[-1] == "ACK" and bytes(wire.sent[-1]) == bytes(wire.sent[-2])
        await _not_acked_after_timer_m(wire, ok)
        endpoint.stop()

    asyncio.run(scenario())


def test_a_2xx_coming_again_after_the_leg_ended_is_still_acked_until_timer_m(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(transaction, "T1", 0.005)

    async def scenario() -> None:
        endpoint, wire = await endpoint_and_wire()
        leg, owner = destination_leg(endpoint), Owner()
        endpoint.place(leg, owner, SDP)
        invite = wire.sent[0]
        ok = wire.answer(invite, 200)
        wire.deliver(ok)
        endpoint.run(leg, leg.hangup())
        bye = wire.sent[-1]
        assert bye.method == "BYE"
        wire.deliver(wire.answer(bye, 200))
        assert tp.HungUp not in map(type, owner.events) and endpoint._legs == {}
        wire.deliver(ok)  # the ended leg still ACKs it
        assert wire.methods()[-1] == "ACK"
        await _not_acked_after_timer_m(wire, ok)
        assert endpoint._acking == {}  # nothing kept of the call
        endpoint.stop()

    asyncio.run(scenario())


def test_a_leg_restored_after_a_restart_acks_its_2xx_again_until_timer_m(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(transaction, "T1", 0.005)

    async def scenario() -> None:
        endpoint, wire = await endpoint_and_wire()
        placed = destination_leg(endpoint)
        (send,) = placed.start(SDP)
        assert isinstance(send, SendRequest)
        ok = wire.answer(send.request, 200)
        response = parse_datagram(ok)
        assert isinstance(response, Response)
        placed.on_response(response)
        controller = tp.ThirdPartyCall(30, 30, 3600, Origin(1, "h"), Origin(2, "h"))
        (state,) = snap.from_json(snap.to_json(controller, [placed])).legs
        leg = snap.restore_leg(state, endpoint.local(), endpoint.tokens)
        endpoint.adopt(leg, Owner())
        wire.deliver(ok)
        assert wire.methods() == ["ACK"]
        await asyncio.sleep(64 * transaction.T1 + 0.2)  # no 2xx is resent for longer
        wire.deliver(ok)
        endpoint.run(leg, leg.hangup())
        assert wire.methods() == ["ACK", "BYE"]
        wire.deliver(wire.answer(wire.sent[-1], 200))
        assert endpoint._legs == {} and endpoint._acking == {}
        endpoint.stop()

    asyncio.run(scenario())


@pytest.mark.parametrize(("method", "code"), [("OPTIONS", 200), ("INVITE", 405), ("CANCEL", 481)])
def test_a_final_response_outside_a_dialog_carries_our_to_tag(method: str, code: int) -> None:
    """RFC 3261 §8.2.6.2: the keep-alive OPTIONS a PBX sends, and what we refuse."""
    data = (
        f"{method} sip:click2call@10.0.0.10 SIP/2.0\r\n"
        "Via: SIP/2.0/UDP 10.0.0.5;branch=z9hG4bKq\r\nFrom: <sip:pbx@10.0.0.5>;tag=p\r\n"
        f"To: <sip:click2call@10.0.0.10>\r\nCall-ID: q1\r\nCSeq: 1 {method}\r\n"
        "Content-Length: 0\r\n\r\n"
    ).encode()
    request = parse_datagram(data)
    assert isinstance(request, Request)
    response = _out_of_dialog(request, "f00d")
    assert response.code == code
    assert response.to().tag == "f00d"


async def _assert_given_up(endpoint: SipEndpoint) -> None:
    """64*T1 after the CANCEL (three times over), neither the INVITE nor its leg is held."""
    await asyncio.sleep(64 * transaction.T1 * 3)
    try:
        assert not [key for key in endpoint._clients if key[1] == "INVITE"]
        assert endpoint._legs == {}
    finally:
        endpoint.stop()


async def test_a_cancelled_invite_whose_487_never_comes_is_given_up(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """§9.1: 64*T1 after our CANCEL the INVITE is given up. A peer that answered the CANCEL
    and lost its 487 (or a connection gone after the 180) left the INVITE's transaction,
    the leg and its call held for ever."""
    monkeypatch.setattr(transaction, "T1", 0.005)  # 64*T1 = 0.32 s
    endpoint, wire = await endpoint_and_wire()
    leg, owner = destination_leg(endpoint), Owner()
    endpoint.place(leg, owner, "v=0\r\n")
    invite = wire.sent[0]
    wire.deliver(wire.answer(invite, 180))
    endpoint.run(leg, leg.hangup())
    cancel = wire.sent[-1]
    assert cancel.method == "CANCEL"
    wire.deliver(wire.answer(cancel, 200))
    wire.deliver(wire.answer(invite, 183))  # one more ringing does not stop the clock
    await _assert_given_up(endpoint)


async def test_a_ringing_leg_restored_and_cancelled_without_a_487_is_given_up(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(transaction, "T1", 0.005)
    endpoint, wire = await endpoint_and_wire()
    placed = destination_leg(endpoint)
    (send,) = placed.start("v=0\r\n")
    assert isinstance(send, SendRequest)
    controller = tp.ThirdPartyCall(30, 30, 3600, Origin(1, "h"), Origin(2, "h"))
    (state,) = snap.from_json(snap.to_json(controller, [placed])).legs
    leg = snap.restore_leg(state, endpoint.local(), endpoint.tokens)
    endpoint.adopt(leg, Owner())
    endpoint.run(leg, leg.hangup())
    assert wire.methods() == ["CANCEL"]
    wire.deliver(wire.answer(wire.sent[-1], 200))  # no 487 follows
    await _assert_given_up(endpoint)


async def test_a_taken_tls_port_is_named_as_such(tmp_path: Path) -> None:
    """The refusal named the UDP port, which was free, when the TLS one was taken."""
    cert, key = make_certificate(tmp_path)
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        tls_port = taken.getsockname()[1]
        settings = SipStackSettings(
            port=0, tls_port=tls_port, tls_cert_file=str(cert), tls_key_file=str(key)
        )
        endpoint = SipEndpoint(settings)
        with pytest.raises(
            EngineUnavailable,
            match=rf"SIP port 127\.0\.0\.1:{tls_port} \(TLS\) is already in use.*\[sip\] tls_port",
        ):
            await endpoint.start()
        endpoint.stop()
