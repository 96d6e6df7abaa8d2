"""Ringback: G.711 encoding, the tone's cadence, RTP headers, SDP and the controller's steps."""

from __future__ import annotations

import pytest

from click2call.engines.sip import third_party as tp
from click2call.engines.sip.ringback import (
    FRAME_SAMPLES,
    PCMA,
    PCMU,
    alaw,
    cadence_for,
    frames,
    rtp_packet,
    ulaw,
)
from click2call.engines.sip.sdp import MediaTarget, Origin, g711_target, ringback_answer

OFFER = (
    "v=0\r\no=a 1 1 IN IP4 10.0.0.1\r\ns=-\r\nc=IN IP4 10.0.0.1\r\nt=0 0\r\n"
    "m=audio 4000 RTP/AVP 8 0 101\r\na=rtpmap:101 telephone-event/8000\r\n"
)


@pytest.mark.parametrize(
    ("sample", "mu", "a"),
    [
        (0, 0xFF, 0xD5),
        (-1, 0x7F, 0x55),
        (32767, 0x80, 0xAA),
        (-32768, 0x00, 0x2A),
        (1000, 0xCE, 0xFA),
    ],
)
def test_g711_reference_values(sample: int, mu: int, a: int) -> None:
    assert (ulaw(sample), alaw(sample)) == (mu, a)


@pytest.mark.parametrize(("payload_type", "silence"), [(PCMU, 0xFF), (PCMA, 0xD5)])
def test_israeli_cadence_one_second_of_tone_then_three_of_silence(
    payload_type: int, silence: int
) -> None:
    tone = frames(cadence_for("IL"), payload_type)
    assert len(tone) == 200 and {len(f) for f in tone} == {FRAME_SAMPLES}
    assert all(len(set(f)) > 10 for f in tone[:50])  # 1 s of 400 Hz
    assert all(set(f) == {silence} for f in tone[50:])  # 3 s of silence
    assert frames(cadence_for("IL"), payload_type) is tone  # computed once
    assert cadence_for("XX") == cadence_for("FR")  # ITU default elsewhere


def test_rtp_header() -> None:
    packet = rtp_packet(0, 70000, 2**32 + 5, 0xDEADBEEF, b"\xff" * 160, marker=True)
    assert packet[:12] == bytes.fromhex("80 80 1170 00000005 deadbeef".replace(" ", ""))
    assert rtp_packet(8, 1, 160, 1, b"", marker=False) == bytes.fromhex("80080001000000a000000001")


def test_sdp_target_and_answer() -> None:
    assert g711_target(OFFER) == MediaTarget("10.0.0.1", 4000, PCMA)
    assert g711_target(OFFER.replace(" 8 0 101", " 9 101")) is None  # G.722 only
    assert g711_target(OFFER.replace("c=IN IP4 10.0.0.1", "c=IN IP4 0.0.0.0")) is None
    answer = ringback_answer(OFFER, "click2call 7 1 IN IP4 127.0.0.1", "127.0.0.1", 20000, PCMA)
    assert answer == (
        "v=0\r\no=click2call 7 1 IN IP4 127.0.0.1\r\ns=click2call\r\nc=IN IP4 127.0.0.1\r\n"
        "t=0 0\r\nm=audio 20000 RTP/AVP 8\r\na=rtpmap:8 PCMA/8000\r\na=sendonly\r\n"
    )


def _call() -> tp.ThirdPartyCall:
    call = tp.ThirdPartyCall(
        agent_ring_timeout=30,
        destination_ring_timeout=45,
        max_call_seconds=60,
        agent_origin=Origin(1),
        destination_origin=Origin(2),
        ringback_media=tp.LocalMedia("127.0.0.1", 20000),
    )
    call.start()
    return call


def test_the_controller_plays_ringback_while_the_destination_rings() -> None:
    call = _call()
    answered = call.handle(tp.Answered(tp.Leg.AGENT, OFFER))
    ack = next(o for o in answered if isinstance(o, tp.AckAgent))
    assert "m=audio 20000 RTP/AVP 8" in ack.sdp
    assert tp.StartRingback(MediaTarget("10.0.0.1", 4000, PCMA)) in answered
    bridged = call.handle(tp.Answered(tp.Leg.DESTINATION, OFFER.replace("10.0.0.1", "10.0.0.2")))
    assert bridged.index(tp.StopRingback()) < bridged.index(
        next(o for o in bridged if isinstance(o, tp.ReinviteAgent))
    )
    assert tp.StopRingback() in call.handle(tp.HungUp(tp.Leg.AGENT))


def test_without_g711_the_agent_is_held_in_silence() -> None:
    call = _call()
    answered = call.handle(tp.Answered(tp.Leg.AGENT, OFFER.replace(" 8 0 101", " 9")))
    ack = next(o for o in answered if isinstance(o, tp.AckAgent))
    assert "c=IN IP4 0.0.0.0" in ack.sdp
    assert not any(isinstance(o, tp.StartRingback) for o in answered)
