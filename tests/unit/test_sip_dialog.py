"""Dialogs and legs (dialog.py, leg.py) fed constructed responses and requests."""

from __future__ import annotations

import itertools

import pytest

from click2call.engines.sip import third_party as tp
from click2call.engines.sip.dialog import Dialog, reply
from click2call.engines.sip.leg import (
    LegEnded,
    Local,
    Output,
    Phase,
    Report,
    RetryLater,
    SendAck,
    SendRequest,
    UacLeg,
)
from click2call.engines.sip.message import Request, Response, parse_datagram
from click2call.engines.sip.targets import LegTarget
from click2call.settings import HostPort

SDP_A = "v=0\r\no=a 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
SDP_D = SDP_A.replace("o=a", "o=d")
CHALLENGE = 'Digest realm="pbx", nonce="n1", algorithm=MD5'


def leg(role: tp.Leg = tp.Leg.AGENT, username: str | None = "agent") -> UacLeg:
    counter = itertools.count(0x1000)
    target = LegTarget(HostPort(host="127.0.0.1", port=5070), "200", "0502760206", username, "pw")
    return UacLeg(
        role, target, Local("127.0.0.1", 5060), lambda: f"{next(counter):x}", "1700000000.1"
    )


def only(outputs: list[object], kind: type) -> list[object]:
    return [o for o in outputs if isinstance(o, kind)]


def sent(outputs: list[object]) -> Request:
    requests = [o.request for o in outputs if isinstance(o, SendRequest | SendAck)]
    assert len(requests) == 1, outputs
    return requests[0]


def answer(request: Request, code: int, body: str = "", **headers: str) -> Response:
    response = reply(request, code, to_tag="peer1")
    if 200 <= code < 300 and request.method == "INVITE":
        response.add("Contact", "<sip:200@10.0.0.9:5072;transport=UDP>")
    for name, value in headers.items():
        response.add(name.replace("_", "-"), value)
    if body:
        response.set("Content-Type", "application/sdp")
        response.body = body.encode()
    # Round-trip through the codec, as the endpoint would.
    parsed = parse_datagram(bytes(response))
    assert isinstance(parsed, Response)
    return parsed


def peer_request(dialog: Dialog, method: str, cseq: int, **headers: str) -> Request:
    data = (
        f"{method} sip:click2call@127.0.0.1:5060 SIP/2.0\r\n"
        "Via: SIP/2.0/UDP 10.0.0.9:5072;branch=z9hG4bKpeer\r\n"
        f"From: {dialog.remote}\r\nTo: {dialog.local}\r\nCall-ID: {dialog.call_id}\r\n"
        f"CSeq: {cseq} {method}\r\n"
        + "".join(f"{k.replace('_', '-')}: {v}\r\n" for k, v in headers.items())
        + "Content-Length: 0\r\n\r\n"
    )
    request = parse_datagram(data.encode())
    assert isinstance(request, Request)
    return request


def connected_agent() -> tuple[UacLeg, Request]:
    agent = leg()
    invite = sent(agent.start(None))
    agent.on_response(answer(invite, 200, SDP_A, Record_Route="<sip:p2;lr>, <sip:p1;lr>"))
    agent.ack(SDP_D)
    return agent, invite


def test_dialog_from_a_2xx_takes_route_set_target_and_tags() -> None:
    agent, invite = connected_agent()
    dialog = agent.dialog
    assert dialog is not None
    assert dialog.route_set == ("<sip:p1;lr>", "<sip:p2;lr>")  # Record-Route reversed
    assert dialog.remote_target == "sip:200@10.0.0.9:5072;transport=UDP"
    assert (dialog.local_tag, dialog.remote_tag) == (invite.from_().tag, "peer1")
    bye = dialog.request("BYE", "SIP/2.0/UDP h;branch=z9hG4bKx")
    assert bye.uri == dialog.remote_target  # loose routing keeps the target
    assert bye.values("Route") == ["<sip:p1;lr>", "<sip:p2;lr>"]
    assert bye.cseq() == (2, "BYE")
    assert str(dialog.next_hop()) == "sip:p1;lr"


def test_a_strict_router_takes_the_request_uri() -> None:
    dialog = Dialog("c", "<sip:a@h>;tag=1", "<sip:b@h>;tag=2", "sip:b@10.0.0.9", ("<sip:p1>",))
    bye = dialog.request("BYE", "SIP/2.0/UDP h;branch=z9hG4bKx")
    assert bye.uri == "sip:p1"
    assert bye.values("Route") == ["<sip:b@10.0.0.9>"]


def test_remote_cseq_must_grow() -> None:
    agent, _ = connected_agent()
    assert agent.dialog is not None
    options = peer_request(agent.dialog, "OPTIONS", 5)
    assert agent.on_request(options)[0].code == 200  # type: ignore[union-attr]
    older = peer_request(agent.dialog, "INFO", 4)
    assert agent.on_request(older)[0].code == 500  # type: ignore[union-attr]


def test_agent_leg_flow_offerless_invite_ack_with_answer_reinvite_bye() -> None:
    agent = leg()
    invite = sent(agent.start(None))
    assert invite.body == b"" and invite.header("X-Click2Call-Id") == "1700000000.1"
    assert str(invite.from_().uri) == "sip:0502760206@127.0.0.1"
    assert agent.on_response(answer(invite, 180)) == [Report(tp.Ringing(tp.Leg.AGENT, 180))]
    out = agent.on_response(answer(invite, 200, SDP_A))
    assert out == [Report(tp.Answered(tp.Leg.AGENT, SDP_A))]  # no ACK until the answer
    ack = sent(agent.ack(SDP_D))
    assert (ack.method, ack.cseq(), ack.body.decode()) == ("ACK", (1, "ACK"), SDP_D)
    assert ack.uri == "sip:200@10.0.0.9:5072;transport=UDP"
    reinvite = sent(agent.reinvite(SDP_D))
    assert reinvite.cseq() == (2, "INVITE") and reinvite.body.decode() == SDP_D
    out = agent.on_response(answer(reinvite, 200, SDP_A))
    assert sent(out).cseq() == (2, "ACK")
    assert Report(tp.Answered(tp.Leg.AGENT, SDP_A)) in out
    assert agent.dialog is not None
    bye = peer_request(agent.dialog, "BYE", 10)
    response, out = agent.on_request(bye)
    assert response is not None and response.code == 200
    assert out == [Report(tp.HungUp(tp.Leg.AGENT)), LegEnded()]


def test_destination_leg_is_acked_at_once_and_a_retransmitted_2xx_again() -> None:
    destination = leg(tp.Leg.DESTINATION)
    invite = sent(destination.start(SDP_A))
    ok = answer(invite, 200, SDP_D)
    out = destination.on_response(ok)
    ack = sent(out)
    assert Report(tp.Answered(tp.Leg.DESTINATION, SDP_D)) in out
    (first,) = only(out, SendAck)
    (again,) = destination.on_response(ok)
    assert isinstance(first, SendAck) and isinstance(again, SendAck)
    assert (
        (again.data, again.destination)
        == (first.data, first.destination)
        == (bytes(ack), first.destination)
    )
    assert again.request.cseq() == ack.cseq()


def test_an_answered_leg_keeps_only_what_a_connected_call_needs() -> None:
    # Thousands of calls stay connected at once: the INVITE shrinks in place (its
    # transaction holds the same object), and an ACK goes once its INVITE's
    # transaction is over, since the 2xx it answers is no longer resent then.
    destination = leg(tp.Leg.DESTINATION)
    invite = sent(destination.start(SDP_A))
    ok = answer(invite, 200, SDP_D)
    ack = sent(destination.on_response(ok))
    assert destination.invite is invite and invite.body == b""
    assert [name for name, _ in invite.headers] == ["From", "Call-ID", "CSeq"]
    assert destination.local_sdp == SDP_A  # what a session refresh is answered with
    assert bytes(sent(destination.on_response(ok))) == bytes(ack)  # kept as its bytes
    destination.invite_over(invite.cseq()[0])
    assert destination.on_response(ok) == []
    bye = sent(destination.hangup())  # the ACK left before: no second one
    assert bye.method == "BYE" and bye.cseq() == (2, "BYE")


def test_a_challenge_is_answered_once() -> None:
    agent = leg()
    invite = sent(agent.start(None))
    retry = sent(agent.on_response(answer(invite, 401, WWW_Authenticate=CHALLENGE)))
    assert retry.call_id == invite.call_id and retry.cseq() == (2, "INVITE")
    assert retry.from_().tag == invite.from_().tag
    assert retry.via()[0].branch != invite.via()[0].branch
    authorization = retry.header("Authorization") or ""
    assert 'username="agent"' in authorization and "pw" not in authorization
    out = agent.on_response(answer(retry, 401, WWW_Authenticate=CHALLENGE))
    assert out == [Report(tp.Failed(tp.Leg.AGENT, 401, "Unknown")), LegEnded()]


def test_proxy_challenge_without_credentials_fails() -> None:
    agent = leg(username=None)
    invite = sent(agent.start(None))
    out = agent.on_response(answer(invite, 407, Proxy_Authenticate=CHALLENGE))
    assert out[0] == Report(tp.Failed(tp.Leg.AGENT, 407, "Unknown"))


def test_cancel_waits_for_a_provisional_response() -> None:
    agent = leg()
    invite = sent(agent.start(None))
    assert agent.hangup() == []
    cancel = sent(agent.on_response(answer(invite, 180)))
    assert cancel.method == "CANCEL" and cancel.via()[0].branch == invite.via()[0].branch
    out = agent.on_response(answer(invite, 487))
    assert LegEnded() in out and agent.phase is Phase.ENDED


def test_a_2xx_crossing_the_cancel_is_acked_then_ended_with_bye() -> None:
    agent = leg()
    invite = sent(agent.start(None))
    agent.on_response(answer(invite, 180))
    assert sent(agent.hangup()).method == "CANCEL"
    out = agent.on_response(answer(invite, 200, SDP_A))
    assert [o.request.method for o in out if isinstance(o, SendAck | SendRequest)] == [
        "ACK",
        "BYE",
    ]
    bye = only(out, SendRequest)[0].request  # type: ignore[attr-defined]
    assert agent.on_response(answer(bye, 200)) == [LegEnded()]


def test_hanging_up_an_unacknowledged_2xx_acks_it_first() -> None:
    agent = leg()
    invite = sent(agent.start(None))
    agent.on_response(answer(invite, 200, SDP_A))
    methods = [o.request.method for o in agent.hangup() if isinstance(o, SendAck | SendRequest)]
    assert methods == ["ACK", "BYE"]


def test_glare_both_ways() -> None:
    agent, _ = connected_agent()
    assert agent.dialog is not None
    reinvite = sent(agent.reinvite(SDP_D))
    theirs = peer_request(agent.dialog, "INVITE", 20)
    assert agent.on_request(theirs)[0].code == 491  # type: ignore[union-attr]
    out = agent.on_response(answer(reinvite, 491))
    assert len(out) == 1 and isinstance(out[0], RetryLater)
    assert 2.1 <= out[0].seconds <= 4.0
    again = sent(agent.retry())
    assert again.cseq()[0] > reinvite.cseq()[0] and again.body.decode() == SDP_D


def test_refused_reinvite_reports_failure() -> None:
    agent, _ = connected_agent()
    reinvite = sent(agent.reinvite(SDP_D))
    out = agent.on_response(answer(reinvite, 488))
    assert out == [Report(tp.Failed(tp.Leg.AGENT, 488, "Unknown"))]


@pytest.mark.parametrize("method", ["INVITE", "UPDATE"])
def test_session_refreshes_are_answered_with_our_sdp(method: str) -> None:
    agent, _ = connected_agent()
    assert agent.dialog is not None
    refresh = peer_request(
        agent.dialog, method, 30, Session_Expires="1800", Contact="<sip:200@10.0.0.10:5072>"
    )
    response, out = agent.on_request(refresh)
    assert response is not None and response.code == 200 and out == []
    assert response.header("Session-Expires") == "1800;refresher=uac"
    assert response.header("Require") == "timer"
    assert (response.body.decode() == SDP_D) is (method == "INVITE")
    assert agent.dialog.remote_target == "sip:200@10.0.0.10:5072"  # target refreshed


def test_other_requests_in_and_out_of_the_dialog() -> None:
    agent, _ = connected_agent()
    assert agent.dialog is not None
    for cseq, (method, code) in enumerate((("INFO", 200), ("OPTIONS", 200), ("MESSAGE", 501))):
        request = peer_request(agent.dialog, method, 40 + cseq)
        assert agent.on_request(request)[0].code == code  # type: ignore[union-attr]
    stranger = peer_request(agent.dialog, "BYE", 99)
    stranger.set("Call-ID", "someone-else")
    stranger.set("To", "<sip:x@h>;tag=zzz")
    assert agent.on_request(stranger)[0].code == 481  # type: ignore[union-attr]


def test_timeouts_and_unreachable_targets_fail_the_leg() -> None:
    agent = leg()
    invite = sent(agent.start(None))
    assert agent.on_timeout(invite) == [
        Report(tp.Failed(tp.Leg.AGENT, 408, "Request Timeout")),
        LegEnded(),
    ]
    other = leg()
    invite = sent(other.start(None))
    out = other.on_transport_error(invite, "cannot resolve pbx.invalid")
    assert out[0] == Report(tp.Failed(tp.Leg.AGENT, 0, "cannot resolve pbx.invalid"))


def _retried(outputs: list[Output]) -> Request | None:
    again = [o.request for o in outputs if isinstance(o, SendRequest)]
    return again[0] if again else None


def test_credentials_refused_with_a_fresh_nonce_are_not_sent_again() -> None:
    """Many servers answer a wrong password with a new challenge and a new nonce each time
    (one-time nonces): the INVITE was resent at round-trip speed until the ring timeout."""
    agent = leg()
    invite = sent(agent.start(None))
    first = 'Digest realm="pbx", nonce="n1", algorithm=MD5, qop="auth"'
    second = _retried(agent.on_response(answer(invite, 401, WWW_Authenticate=first)))
    assert second is not None and second.header("Authorization")
    again = 'Digest realm="pbx", nonce="n2", algorithm=MD5, qop="auth"'
    out = agent.on_response(answer(second, 401, WWW_Authenticate=again))
    assert _retried(out) is None
    assert any(isinstance(o, Report) and isinstance(o.event, tp.Failed) for o in out)
    # a stale nonce is the server asking again for the same (right) credentials
    stale = 'Digest realm="pbx", nonce="n3", stale=true'
    fresh = leg()
    invite = sent(fresh.start(None))
    second = _retried(fresh.on_response(answer(invite, 401, WWW_Authenticate=first)))
    assert second is not None
    assert _retried(fresh.on_response(answer(second, 401, WWW_Authenticate=stale))) is not None


def test_a_bye_refused_twice_is_not_sent_a_third_time() -> None:
    agent, _ = connected_agent()
    bye = sent(agent.hangup())
    second = _retried(
        agent.on_response(answer(bye, 407, Proxy_Authenticate='Digest realm="p", nonce="b1"'))
    )
    assert second is not None
    assert (
        _retried(
            agent.on_response(
                answer(second, 407, Proxy_Authenticate='Digest realm="p", nonce="b2"')
            )
        )
        is None
    )


def test_a_proxys_and_a_pbxs_credentials_are_both_kept() -> None:
    """407 from the proxy (realm "proxy"), then 401 from the PBX (realm "pbx"): the third
    INVITE answers both (§22.3); it dropped the proxy's, and the proxy challenged again."""
    agent = leg()
    invite = sent(agent.start(None))
    proxy = 'Digest realm="proxy", nonce="p1"'
    second = _retried(agent.on_response(answer(invite, 407, Proxy_Authenticate=proxy)))
    assert second is not None
    third = _retried(
        agent.on_response(answer(second, 401, WWW_Authenticate='Digest realm="pbx", nonce="u1"'))
    )
    assert third is not None
    assert third.header("Proxy-Authorization") and third.header("Authorization")


@pytest.mark.parametrize(
    ("method", "body", "code"),
    [("UPDATE", "", 200), ("INFO", "", 200), ("UPDATE", SDP_A, 488), ("BYE", "", 481)],
)
def test_a_request_in_the_early_dialog_is_answered_not_refused(
    method: str, body: str, code: int
) -> None:
    """RFC 3311: a PBX may UPDATE the ringing call (a caller-ID change); a 481 ends the
    early dialog, and a peer may drop the call for it."""
    agent = leg()
    invite = sent(agent.start(None))
    ringing = answer(invite, 180)
    agent.on_response(ringing)
    data = (
        f"{method} sip:click2call@127.0.0.1:5060 SIP/2.0\r\n"
        "Via: SIP/2.0/UDP 10.0.0.9:5072;branch=z9hG4bKupd\r\n"
        f"From: {ringing.required('To')}\r\nTo: {invite.required('From')}\r\n"
        f"Call-ID: {invite.call_id}\r\nCSeq: 101 {method}\r\n"
        f"Content-Length: {len(body)}\r\n\r\n{body}"
    )
    request = parse_datagram(data.encode())
    assert isinstance(request, Request)
    response, outputs = agent.on_request(request)
    assert response is not None and response.code == code
    assert outputs == [] and agent.phase is Phase.EARLY


def _fork_answer(invite: Request, tag: str, contact: str) -> Response:
    response = reply(invite, 200, to_tag=tag)
    response.add("Contact", contact)
    response.set("Content-Type", "application/sdp")
    response.body = SDP_A.encode()
    parsed = parse_datagram(bytes(response))
    assert isinstance(parsed, Response)
    return parsed


def test_a_second_forked_2xx_is_acked_and_ended_in_its_own_dialog() -> None:
    """A forking proxy and two phones answering (§13.2.2.4): fork B's 200 was ACKed in
    fork A's dialog; B resent it for 32 s and was never hung up."""
    destination = leg(tp.Leg.DESTINATION)
    invite = sent(destination.start(SDP_A))
    first = _fork_answer(invite, "forkA", "<sip:a@10.0.0.1>")
    second = _fork_answer(invite, "forkB", "<sip:b@10.0.0.2>")  # before the leg shrinks it
    destination.on_response(first)
    out = destination.on_response(second)
    ack, bye = [o.request for o in out if isinstance(o, SendAck | SendRequest)]
    assert (ack.method, ack.uri, ack.to().tag) == ("ACK", "sip:b@10.0.0.2", "forkB")
    assert (bye.method, bye.uri, bye.to().tag) == ("BYE", "sip:b@10.0.0.2", "forkB")
    again = destination.on_response(second)  # B's 200 again: ACKed again, no second BYE
    assert [o.request.method for o in again if isinstance(o, SendAck | SendRequest)] == ["ACK"]
    assert destination.on_response(answer(bye, 200)) == []  # our call goes on
    assert destination.phase is Phase.CONFIRMED and destination.dialog is not None
    assert destination.dialog.remote_tag == "forkA"
