"""RFC 3261 §17 transactions driven by hand-fired timers: no clock, no socket."""

from __future__ import annotations

from click2call.engines.sip.message import Request, Response, parse_datagram
from click2call.engines.sip.transaction import (
    T1,
    T2,
    T4,
    Arm,
    ClientInvite,
    ClientNonInvite,
    Deliver,
    Send,
    ServerInvite,
    ServerNonInvite,
    State,
    Terminated,
    TimedOut,
    cancel_for,
    client_key,
    server_key,
)


def request(method: str = "INVITE", branch: str = "z9hG4bK1") -> Request:
    data = (
        f"{method} sip:200@127.0.0.1:5070 SIP/2.0\r\n"
        f"Via: SIP/2.0/UDP 127.0.0.1:5060;branch={branch};rport\r\n"
        "Route: <sip:proxy.example;lr>\r\n"
        "From: <sip:a@127.0.0.1>;tag=a1\r\nTo: <sip:200@127.0.0.1>\r\n"
        f"Call-ID: c1\r\nCSeq: 7 {method}\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
    ).encode()
    message = parse_datagram(data)
    assert isinstance(message, Request)
    return message


def response(code: int, to_request: Request, tag: str = "b1") -> Response:
    headers = [(k, v) for k, v in to_request.headers if k in ("Via", "From", "Call-ID", "CSeq")]
    headers.append(("To", f"{to_request.required('To')};tag={tag}"))
    return Response(headers=headers, code=code, reason="X")


def sends(outputs: list[object]) -> list[object]:
    return [o.message for o in outputs if isinstance(o, Send)]


def test_invite_is_retransmitted_on_timer_a_doubling_until_b() -> None:
    tx = ClientInvite(request())
    out = tx.start()
    assert sends(out) == [tx.request]
    assert Arm("A", T1) in out and Arm("B", 64 * T1) in out
    assert tx.on_timer("A") == [Send(tx.request), Arm("A", 2 * T1)]
    assert tx.on_timer("A") == [Send(tx.request), Arm("A", 4 * T1)]
    assert tx.on_timer("B") == [TimedOut(), Terminated()]
    assert tx.on_timer("A") == []  # stale timers are ignored


def test_provisional_stops_retransmission_and_final_failure_is_acked() -> None:
    tx = ClientInvite(request())
    tx.start()
    ringing = response(180, tx.request)
    assert tx.on_response(ringing) == [Deliver(ringing)]
    assert tx.on_timer("A") == [] and tx.on_timer("B") == []
    busy = response(486, tx.request)
    out = tx.on_response(busy)
    ack = sends(out)[0]
    assert isinstance(ack, Request) and ack.method == "ACK"
    assert ack.cseq() == (7, "ACK") and ack.to().tag == "b1"
    assert ack.via()[0].branch == "z9hG4bK1" and ack.values("Route") == ["<sip:proxy.example;lr>"]
    assert Deliver(busy) in out and Arm("D", 32.0) in out
    assert tx.on_response(busy) == [Send(ack)]  # retransmission absorbed, ACK resent
    assert tx.on_timer("D") == [Terminated()]


def test_2xx_retransmissions_reach_the_tu_while_accepted() -> None:
    tx = ClientInvite(request())
    tx.start()
    ok = response(200, tx.request)
    assert tx.on_response(ok) == [Deliver(ok), Arm("M", 64 * T1)]
    assert tx.state is State.ACCEPTED
    assert tx.on_response(ok) == [Deliver(ok)]
    assert tx.on_timer("M") == [Terminated()]


def test_reliable_transport_has_no_retransmissions_or_lingering() -> None:
    tx = ClientInvite(request(), reliable=True)
    assert not any(isinstance(o, Arm) and o.timer == "A" for o in tx.start())
    out = tx.on_response(response(486, tx.request))
    assert out[-1] == Terminated()


def test_non_invite_timer_e_caps_at_t2_and_f_times_out() -> None:
    tx = ClientNonInvite(request("BYE"))
    out = tx.start()
    assert Arm("E", T1) in out and Arm("F", 64 * T1) in out
    intervals = []
    for _ in range(6):
        arm = tx.on_timer("E")[1]
        assert isinstance(arm, Arm)
        intervals.append(arm.seconds)
    assert intervals == [1.0, 2.0, 4.0, T2, T2, T2]
    assert tx.on_timer("F") == [TimedOut(), Terminated()]


def test_non_invite_final_response_then_k() -> None:
    tx = ClientNonInvite(request("BYE"))
    tx.start()
    trying = response(100, tx.request)
    assert tx.on_response(trying) == [Deliver(trying)]
    assert tx.on_timer("E") == [Send(tx.request), Arm("E", T2)]
    ok = response(200, tx.request)
    assert tx.on_response(ok) == [Deliver(ok), Arm("K", T4)]
    assert tx.on_response(ok) == []
    assert tx.on_timer("K") == [Terminated()]


def test_server_invite_failure_is_resent_until_ack() -> None:
    invite = request()
    tx = ServerInvite(invite)
    busy = response(491, invite)
    assert tx.respond(busy) == [Send(busy), Arm("G", T1), Arm("H", 64 * T1)]
    assert tx.on_request(invite) == [Send(busy)]  # retransmitted INVITE
    assert tx.on_timer("G") == [Send(busy), Arm("G", 2 * T1)]
    ack = request("ACK")
    assert tx.on_request(ack) == [Arm("I", T4)]
    assert tx.on_timer("G") == []
    assert tx.on_timer("I") == [Terminated()]


def test_server_invite_without_ack_times_out() -> None:
    tx = ServerInvite(request())
    tx.respond(response(488, tx.request))
    assert tx.on_timer("H") == [TimedOut(), Terminated()]


def test_server_invite_2xx_is_resent_until_acknowledged() -> None:
    tx = ServerInvite(request())
    ok = response(200, tx.request)
    tx.respond(ok)
    assert tx.on_timer("G") == [Send(ok), Arm("G", 2 * T1)]
    assert tx.on_request(request("ACK", branch="z9hG4bK-other")) == [Terminated()]


def test_server_non_invite_absorbs_retransmissions() -> None:
    bye = request("BYE")
    tx = ServerNonInvite(bye)
    assert tx.on_request(bye) == []
    ok = response(200, bye)
    assert tx.respond(ok) == [Send(ok), Arm("J", 64 * T1)]
    assert tx.on_request(bye) == [Send(ok)]
    assert tx.respond(ok) == []
    assert tx.on_timer("J") == [Terminated()]


def test_keys_and_cancel() -> None:
    invite = request()
    assert client_key(response(180, invite)) == ("z9hG4bK1", "INVITE")
    assert server_key(request("ACK")) == server_key(invite)
    cancel = cancel_for(invite)
    assert (cancel.method, cancel.uri, cancel.cseq()) == ("CANCEL", invite.uri, (7, "CANCEL"))
    assert cancel.via()[0].branch == "z9hG4bK1" and cancel.to().tag is None
