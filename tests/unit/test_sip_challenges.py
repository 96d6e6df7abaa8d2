"""engines/sip/challenges.py: which digest challenge a leg answers, and how."""

from __future__ import annotations

from click2call.engines.sip.challenges import Answers
from click2call.engines.sip.dialog import reply
from click2call.engines.sip.message import Request, Response, parse_datagram

INVITE = (
    b"INVITE sip:200@10.0.0.5 SIP/2.0\r\nVia: SIP/2.0/UDP 10.0.0.10;branch=z9hG4bK1\r\n"
    b"From: <sip:c2c@10.0.0.10>;tag=a\r\nTo: <sip:200@10.0.0.5>\r\nCall-ID: c1\r\n"
    b"CSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n"
)


def _invite(cseq: int) -> Request:
    request = parse_datagram(INVITE)
    assert isinstance(request, Request)
    request.set("CSeq", f"{cseq} INVITE")
    return request


def _challenge(request: Request, code: int, header: str, value: str) -> Response:
    response = reply(request, code, to_tag="p")
    response.add(header, value)
    return response


def test_a_realm_that_challenges_the_credentials_it_was_sent_is_not_answered_again() -> None:
    answers = Answers()
    first = _challenge(_invite(1), 401, "WWW-Authenticate", 'Digest realm="pbx", nonce="n1"')
    assert answers.may_answer(first)
    second = _invite(2)
    answers.answer(second, first, "agent", "pw", "c0ffee")
    assert 'username="agent"' in (second.header("Authorization") or "")
    refused = _challenge(second, 401, "WWW-Authenticate", 'Digest realm="pbx", nonce="n2"')
    assert not answers.may_answer(refused)
    stale = _challenge(
        second, 401, "WWW-Authenticate", 'Digest realm="pbx", nonce="n3", stale=true'
    )
    assert answers.may_answer(stale)
    proxy = _challenge(second, 407, "Proxy-Authenticate", 'Digest realm="proxy", nonce="p1"')
    assert answers.may_answer(proxy)  # another realm: its own credentials


def test_a_challenge_we_cannot_answer_is_not_taken() -> None:
    answers = Answers()
    unknown = _challenge(
        _invite(1), 401, "WWW-Authenticate", 'Digest realm="x", nonce="n", algorithm=SHA-512-256'
    )
    assert not answers.may_answer(unknown)
    assert not answers.may_answer(reply(_invite(1), 486))
