from __future__ import annotations

import pytest

from click2call.engines.sip.sdp import Origin, g711_target, hold_answer, with_origin

OFFER = (
    "v=0\r\n"
    "o=- 1234 1 IN IP4 192.0.2.10\r\n"
    "s=-\r\n"
    "c=IN IP4 192.0.2.10\r\n"
    "t=0 0\r\n"
    "m=audio 40000 RTP/AVP 8 0 101\r\n"
    "a=rtpmap:8 PCMA/8000\r\n"
    "a=rtpmap:0 PCMU/8000\r\n"
    "a=rtpmap:101 telephone-event/8000\r\n"
    "a=fmtp:101 0-15\r\n"
    "m=video 0 RTP/AVP 96\r\n"
)


def test_hold_answer_accepts_the_first_format_on_a_black_hole() -> None:
    answer = hold_answer(OFFER, "click2call 7 1 IN IP4 127.0.0.1")
    assert answer == (
        "v=0\r\n"
        "o=click2call 7 1 IN IP4 127.0.0.1\r\n"
        "s=click2call\r\n"
        "c=IN IP4 0.0.0.0\r\n"
        "t=0 0\r\n"
        "m=audio 9 RTP/AVP 8\r\n"
        "a=rtpmap:8 PCMA/8000\r\n"
        "m=video 0 RTP/AVP 96\r\n"
    )


def test_hold_answer_on_ipv6_and_bare_lf() -> None:
    offer = "v=0\no=- 1 1 IN IP6 ::1\ns=-\nc=IN IP6 ::1\nt=0 0\nm=audio 5004 RTP/AVP 0\n"
    answer = hold_answer(offer, "click2call 7 1 IN IP6 ::1")
    assert "c=IN IP6 ::\r\n" in answer
    assert answer.endswith("m=audio 9 RTP/AVP 0\r\n")


def test_with_origin_replaces_only_the_origin() -> None:
    rewritten = with_origin(OFFER, "click2call 7 2 IN IP4 127.0.0.1")
    assert rewritten == OFFER.replace(
        "o=- 1234 1 IN IP4 192.0.2.10", "o=click2call 7 2 IN IP4 127.0.0.1"
    )


def test_origin_version_goes_up_per_body_and_the_session_stays() -> None:
    origin = Origin(session_id=42, address="127.0.0.1")
    assert origin.next() == "click2call 42 1 IN IP4 127.0.0.1"
    assert origin.next() == "click2call 42 2 IN IP4 127.0.0.1"


@pytest.mark.parametrize("body", ["", "hello", "o=- 1 1 IN IP4 x\r\n"])
def test_non_sdp_is_refused(body: str) -> None:
    with pytest.raises(ValueError, match="SDP"):
        hold_answer(body, "x")
    with pytest.raises(ValueError, match="SDP"):
        with_origin(body, "x")


def test_malformed_media_line_is_refused() -> None:
    with pytest.raises(ValueError, match="malformed media line"):
        hold_answer("v=0\r\nm=audio\r\n", "x")


@pytest.mark.parametrize(
    ("media", "port"), [("m=audio 49170/2 RTP/AVP 0 101", 49170), ("m=audio x/2 RTP/AVP 0", None)]
)
def test_a_media_port_with_a_count_is_read_not_raised(media: str, port: int | None) -> None:
    """`m=audio <port>/<count>` is legal (RFC 4566 §5.14): int() on it raised inside the
    handling of the agent's 200 OK, which was then never ACKed."""
    offer = f"v=0\r\no=- 1 1 IN IP4 10.0.0.9\r\ns=-\r\nc=IN IP4 10.0.0.9\r\nt=0 0\r\n{media}\r\n"
    target = g711_target(offer)
    assert (target.port if target else None) == port
