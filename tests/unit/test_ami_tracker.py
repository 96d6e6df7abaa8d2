"""Each real Asterisk recording, replayed through the call tracker: states and result."""

from __future__ import annotations

import pytest

from click2call.calls import TRANSITIONS, CallState, Result
from click2call.engines.asterisk.codec import AmiDecoder, Message
from click2call.engines.asterisk.tracker import CallTracker, Progress
from tests.ami_recordings import received, sent

S = CallState
FULL = [
    S.AGENT_DIALING,
    S.AGENT_RINGING,
    S.AGENT_ANSWERED,
    S.DESTINATION_DIALING,
    S.DESTINATION_RINGING,
    S.CONNECTED,
    S.ENDED,
]


def replay(name: str) -> list[Progress]:
    originate = Message(
        AmiDecoder().feed(b"Asterisk Call Manager/9.0.0\r\n" + sent(name)[1])[1].headers
    )  # type: ignore[union-attr]
    tracker = CallTracker(originate["ChannelId"], originate["ActionID"])
    out: list[Progress] = []
    for message in AmiDecoder().feed(received(name)):
        if not isinstance(message, Message) or not tracker.concerns(message):
            continue
        if message.response == "Success" and message.event is None:
            out += tracker.accepted()
        else:
            out += tracker.handle(message)
    return out


@pytest.mark.parametrize(
    ("name", "states", "result", "cause"),
    [
        ("originate-sip-success.txt", FULL, Result.COMPLETED, "Cause 16 Normal Clearing"),
        ("originate-sip-success-cdr.txt", FULL, Result.COMPLETED, "Cause 16 Normal Clearing"),
        ("originate-pjsip-success.txt", FULL, Result.COMPLETED, "Cause 16 Normal Clearing"),
        ("originate-mobile-local-success.txt", FULL, Result.COMPLETED, "Cause 16 Normal Clearing"),
        (
            "originate-agent-busy.txt",
            [S.AGENT_DIALING, S.ENDED],
            Result.AGENT_BUSY,
            "Originate failed, Reason 5: busy",
        ),
        (
            "originate-agent-noanswer.txt",
            [S.AGENT_DIALING, S.AGENT_RINGING, S.ENDED],
            Result.AGENT_NO_ANSWER,
            None,
        ),
        ("originate-agent-unreachable.txt", [S.AGENT_DIALING, S.ENDED], Result.AGENT_FAILED, None),
        (
            "originate-destination-busy.txt",
            [S.AGENT_DIALING, S.AGENT_RINGING, S.AGENT_ANSWERED, S.DESTINATION_DIALING, S.ENDED],
            Result.DESTINATION_BUSY,
            "DialStatus BUSY; Cause 17 User busy",
        ),
        (
            "originate-destination-noanswer.txt",
            [
                S.AGENT_DIALING,
                S.AGENT_RINGING,
                S.AGENT_ANSWERED,
                S.DESTINATION_DIALING,
                S.DESTINATION_RINGING,
                S.ENDED,
            ],
            Result.DESTINATION_NO_ANSWER,
            None,
        ),
        (
            "originate-unknown-endpoint-pjsip.txt",
            [S.AGENT_DIALING, S.ENDED],
            Result.AGENT_FAILED,
            "Originate failed, Reason 0: agent channel could not be created",
        ),
        (
            "originate-unknown-endpoint-sip.txt",
            [S.AGENT_DIALING, S.ENDED],
            Result.AGENT_FAILED,
            None,
        ),
    ],
)
def test_recorded_flows(
    name: str, states: list[CallState], result: Result, cause: str | None
) -> None:
    progress = replay(name)
    assert [p.state for p in progress] == states
    assert progress[-1].result is result
    if cause is not None:
        assert progress[-1].cause == cause
    # Every step is one the call state table allows.
    current = S.QUEUED
    for step in progress:
        assert step.state in TRANSITIONS[current], (current, step.state)
        current = step.state


def test_nothing_after_the_end_and_other_calls_are_not_ours() -> None:
    tracker = CallTracker("1.1", "c2c-1")
    other = Message((("Event", "Hangup"), ("Uniqueid", "2.2"), ("Linkedid", "2.2")))
    assert not tracker.concerns(other)
    mine = Message((("Event", "Hangup"), ("Uniqueid", "1.1"), ("Linkedid", "1.1"), ("Cause", "16")))
    assert tracker.concerns(mine)
    assert tracker.handle(mine)[-1].state is S.ENDED
    assert tracker.handle(mine) == []
