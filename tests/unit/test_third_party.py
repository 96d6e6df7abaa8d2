"""The RFC 3725 controller, flow by flow, without a network."""

from __future__ import annotations

from typing import TypeVar

import pytest

from click2call.calls import CallState, Result
from click2call.engines.sip import third_party as tp
from click2call.engines.sip.sdp import Origin

AGENT_OFFER = "v=0\r\no=a 1 1 IN IP4 10.0.0.1\r\ns=-\r\nc=IN IP4 10.0.0.1\r\nt=0 0\r\n" + (
    "m=audio 4000 RTP/AVP 0\r\n"
)
DEST_ANSWER = "v=0\r\no=d 9 1 IN IP4 10.0.0.2\r\ns=-\r\nc=IN IP4 10.0.0.2\r\nt=0 0\r\n" + (
    "m=audio 5000 RTP/AVP 0\r\n"
)
A, D = tp.Leg.AGENT, tp.Leg.DESTINATION
T = TypeVar("T")


def new_call() -> tp.ThirdPartyCall:
    return tp.ThirdPartyCall(
        agent_ring_timeout=30,
        destination_ring_timeout=45,
        max_call_seconds=7200,
        agent_origin=Origin(111),
        destination_origin=Origin(222),
    )


def reports(outputs: list[tp.Output]) -> list[tuple[CallState, Result | None]]:
    return [(o.state, o.result) for o in outputs if isinstance(o, tp.Report)]


def of_type(outputs: list[tp.Output], kind: type[T]) -> list[T]:
    return [o for o in outputs if isinstance(o, kind)]


def connected_call() -> tp.ThirdPartyCall:
    call = new_call()
    call.start()
    call.handle(tp.Answered(A, AGENT_OFFER))
    call.handle(tp.Answered(D, DEST_ANSWER))
    call.handle(tp.Answered(A, AGENT_OFFER))
    assert call.phase is tp.Phase.CONNECTED
    return call


def test_start_dials_the_agent_without_an_offer_and_arms_its_timer() -> None:
    outputs = new_call().start()
    assert outputs == [
        tp.DialAgent(),
        tp.StartTimer(tp.Timer.AGENT_RING, 30),
        tp.Report(CallState.AGENT_DIALING),
    ]


def test_agent_answer_is_acked_at_once_with_a_held_answer_then_destination_dialled() -> None:
    call = new_call()
    call.start()
    assert reports(call.handle(tp.Ringing(A, 180))) == [(CallState.AGENT_RINGING, None)]
    outputs = call.handle(tp.Answered(A, AGENT_OFFER))
    ack, dial = of_type(outputs, tp.AckAgent)[0], of_type(outputs, tp.DialDestination)[0]
    assert "c=IN IP4 0.0.0.0" in ack.sdp and "o=click2call 111 1 " in ack.sdp
    # The destination gets the agent's media with our origin for that leg.
    assert "c=IN IP4 10.0.0.1" in dial.sdp and "o=click2call 222 1 " in dial.sdp
    assert outputs.index(ack) < outputs.index(dial)  # never hold the agent's ACK
    assert tp.CancelTimer(tp.Timer.AGENT_RING) in outputs
    assert tp.StartTimer(tp.Timer.DESTINATION_RING, 45) in outputs
    assert reports(outputs) == [
        (CallState.AGENT_ANSWERED, None),
        (CallState.DESTINATION_DIALING, None),
    ]


def test_destination_answer_reinvites_the_agent_with_the_same_origin_next_version() -> None:
    call = new_call()
    call.start()
    call.handle(tp.Answered(A, AGENT_OFFER))
    assert reports(call.handle(tp.Ringing(D, 183))) == [(CallState.DESTINATION_RINGING, None)]
    outputs = call.handle(tp.Answered(D, DEST_ANSWER))
    reinvite = of_type(outputs, tp.ReinviteAgent)[0]
    assert "o=click2call 111 2 " in reinvite.sdp and "c=IN IP4 10.0.0.2" in reinvite.sdp
    assert tp.StartTimer(tp.Timer.MAX_DURATION, 7200) in outputs
    assert reports(outputs) == [(CallState.CONNECTED, None)]
    assert call.handle(tp.Answered(A, AGENT_OFFER)) == []
    assert call.phase is tp.Phase.CONNECTED


@pytest.mark.parametrize(
    ("code", "result"),
    [
        (486, Result.AGENT_BUSY),
        (603, Result.AGENT_BUSY),
        (480, Result.AGENT_NO_ANSWER),
        (404, Result.AGENT_FAILED),
        (503, Result.AGENT_FAILED),
    ],
)
def test_agent_failure(code: int, result: Result) -> None:
    call = new_call()
    call.start()
    outputs = call.handle(tp.Failed(A, code, "Why"))
    assert of_type(outputs, tp.Hangup) == []  # the failed leg is already gone
    assert reports(outputs) == [(CallState.ENDED, result)]
    assert outputs[-1] == tp.Report(CallState.ENDED, result, f"SIP {code} Why")
    assert call.ended


def test_an_unreachable_agent_fails_with_the_cause_in_words() -> None:
    call = new_call()
    call.start()
    outputs = call.handle(tp.Failed(A, 0, "connection refused by 127.0.0.1:5070/tcp"))
    assert outputs[-1] == tp.Report(
        CallState.ENDED, Result.AGENT_FAILED, "connection refused by 127.0.0.1:5070/tcp"
    )


def test_agent_ring_timeout_cancels_the_agent() -> None:
    call = new_call()
    call.start()
    outputs = call.handle(tp.TimerFired(tp.Timer.AGENT_RING))
    assert of_type(outputs, tp.Hangup) == [tp.Hangup(A)]
    assert outputs[-1] == tp.Report(
        CallState.ENDED, Result.AGENT_NO_ANSWER, "no answer within 30 s"
    )
    assert call.handle(tp.Failed(A, 487, "Request Terminated")) == []  # the CANCEL's echo


@pytest.mark.parametrize(
    ("event", "result"),
    [
        (tp.Failed(D, 486, "Busy Here"), Result.DESTINATION_BUSY),
        (tp.Failed(D, 404, "Not Found"), Result.DESTINATION_FAILED),
        (tp.TimerFired(tp.Timer.DESTINATION_RING), Result.DESTINATION_NO_ANSWER),
    ],
)
def test_destination_failure_hangs_up_the_agent(event: tp.LegEvent, result: Result) -> None:
    call = new_call()
    call.start()
    call.handle(tp.Answered(A, AGENT_OFFER))
    outputs = call.handle(event)
    hangups = of_type(outputs, tp.Hangup)
    assert tp.Hangup(A) in hangups
    assert (tp.Hangup(D) in hangups) is isinstance(event, tp.TimerFired)
    assert reports(outputs) == [(CallState.ENDED, result)]


def test_agent_hanging_up_while_destination_rings_cancels_it() -> None:
    call = new_call()
    call.start()
    call.handle(tp.Answered(A, AGENT_OFFER))
    outputs = call.handle(tp.HungUp(A))
    assert of_type(outputs, tp.Hangup) == [tp.Hangup(D)]
    assert reports(outputs) == [(CallState.ENDED, Result.CANCELED)]


@pytest.mark.parametrize("leg", [A, D])
def test_either_party_hanging_up_ends_the_other(leg: tp.Leg) -> None:
    call = connected_call()
    outputs = call.handle(tp.HungUp(leg))
    other = D if leg is A else A
    assert of_type(outputs, tp.Hangup) == [tp.Hangup(other)]
    assert outputs[-1] == tp.Report(CallState.ENDED, Result.COMPLETED, f"{leg.value} hung up")
    assert call.handle(tp.HungUp(other)) == []  # the crossing BYE changes nothing


def test_refused_bridge_cleans_up_both_legs() -> None:
    call = new_call()
    call.start()
    call.handle(tp.Answered(A, AGENT_OFFER))
    call.handle(tp.Answered(D, DEST_ANSWER))
    outputs = call.handle(tp.Failed(A, 488, "Not Acceptable Here"))
    assert of_type(outputs, tp.Hangup) == [tp.Hangup(A), tp.Hangup(D)]
    assert reports(outputs) == [(CallState.ENDED, Result.ERROR)]


def test_maximum_call_length() -> None:
    call = connected_call()
    outputs = call.handle(tp.TimerFired(tp.Timer.MAX_DURATION))
    assert of_type(outputs, tp.Hangup) == [tp.Hangup(A), tp.Hangup(D)]
    assert outputs[-1].cause == "maximum call length of 7200 s reached"  # type: ignore[union-attr]


def test_hangup_requested_before_and_after_connect() -> None:
    ringing = new_call()
    ringing.start()
    assert reports(ringing.handle(tp.HangupRequested())) == [(CallState.ENDED, Result.CANCELED)]
    connected = connected_call()
    outputs = connected.handle(tp.HangupRequested("server shutdown"))
    assert outputs[-1] == tp.Report(CallState.ENDED, Result.COMPLETED, "hung up by server shutdown")


def test_agent_answer_without_offer_or_with_garbage_fails_cleanly() -> None:
    for sdp in (None, "garbage"):
        call = new_call()
        call.start()
        outputs = call.handle(tp.Answered(A, sdp))
        assert tp.Hangup(A) in outputs
        assert reports(outputs) == [(CallState.ENDED, Result.AGENT_FAILED)]


def test_stale_timers_and_events_after_the_end_are_ignored() -> None:
    call = connected_call()
    call.handle(tp.HungUp(A))
    for event in (tp.TimerFired(tp.Timer.AGENT_RING), tp.Ringing(D, 180), tp.HangupRequested()):
        assert call.handle(event) == []
    # A timer of an earlier phase does nothing while connected either.
    live = connected_call()
    assert live.handle(tp.TimerFired(tp.Timer.DESTINATION_RING)) == []
