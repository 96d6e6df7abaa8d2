"""Each real Asterisk recording, replayed through the call tracker: states and result."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from click2call.calls import TRANSITIONS, CallState, Result
from click2call.engines.asterisk.codec import AmiDecoder, Message
from click2call.engines.asterisk.replies import Replies
from click2call.engines.asterisk.tracker import (
    ENDED_UNSEEN,
    EVENTS_USED,
    MOVES,
    CallTracker,
    Progress,
    worth_parsing,
)
from tests.ami_recordings import names, received, sent

S = CallState
DESTINATION_HUNG_UP = "destination hung up; Cause 16 Normal Clearing"
FULL = [
    S.AGENT_DIALING,
    S.AGENT_RINGING,
    S.AGENT_ANSWERED,
    S.DESTINATION_DIALING,
    S.DESTINATION_RINGING,
    S.CONNECTED,
    S.ENDED,
]


def originate_of(name: str) -> Message:
    message = AmiDecoder().feed(b"Asterisk Call Manager/9.0.0\r\n" + sent(name)[1])[1]
    assert isinstance(message, Message)
    return message


def feed(
    tracker: CallTracker, data: bytes, step: int | None = None, decoder: AmiDecoder | None = None
) -> list[Progress]:
    """Decode `data` (whole, or `step` bytes at a time) and hand the call's messages over."""
    decoder = decoder or AmiDecoder()
    if not data.startswith(b"Asterisk"):
        decoder.feed(b"Asterisk Call Manager/9.0.0\r\n")
    out: list[Progress] = []
    size = step or len(data)
    for start in range(0, len(data), size):
        for message in decoder.feed(data[start : start + size]):
            if isinstance(message, Message) and tracker.concerns(message):
                out += tracker.handle(message)
    return out


def replay(name: str) -> list[Progress]:
    originate = originate_of(name)
    return feed(CallTracker(originate["ChannelId"], originate["ActionID"]), received(name))


@pytest.mark.parametrize(
    ("name", "states", "result", "cause"),
    [
        # The trunk's HangupRequest comes first: the destination hung up.
        ("originate-sip-success.txt", FULL, Result.COMPLETED, DESTINATION_HUNG_UP),
        ("originate-sip-success-cdr.txt", FULL, Result.COMPLETED, DESTINATION_HUNG_UP),
        ("originate-pjsip-success.txt", FULL, Result.COMPLETED, DESTINATION_HUNG_UP),
        # The agent's mobile (the channel Local;2 dialed) hung up first.
        (
            "originate-mobile-local-success.txt",
            FULL,
            Result.COMPLETED,
            "agent hung up; Cause 16 Normal Clearing",
        ),
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


def test_every_move_of_the_table_is_one_the_call_allows() -> None:
    for (state, _seen), new in MOVES.items():
        assert new in TRANSITIONS[state], (state, new)


def listed(name: str, conn: int, action_id: str) -> tuple[Message, ...]:
    """The channel list a recording's client asked for (Status or CoreShowChannels)."""
    replies = Replies()
    replies.expect(action_id)
    for message in AmiDecoder().feed(received(name, conn)):
        if isinstance(message, Message) and (done := replies.feed(message)[1]) is not None:
            return done.reply.items
    raise AssertionError(f"no reply to {action_id} in {name}")


@pytest.mark.parametrize("step", [None, 1, 7])
def test_a_call_survives_the_lost_link_and_ends_with_its_real_result(step: int | None) -> None:
    name = "reconnect-during-call.txt"
    tracker = CallTracker("1795478400.2003", "c2c-1")
    before = feed(tracker, received(name, 1), step)
    assert [p.state for p in before] == FULL[:-1]  # connected when the link dropped
    assert tracker.reconcile(listed(name, 2, "csc-2")) == []  # still up: nothing to say
    assert tracker.reconcile(listed(name, 2, "status-2")) == []
    after = feed(tracker, received(name, 2), step)
    assert after == [Progress(S.ENDED, Result.COMPLETED, DESTINATION_HUNG_UP)]


@pytest.mark.parametrize(
    ("action_id", "item"), [("status-1", "Status"), ("csc-1", "CoreShowChannel")]
)
def test_a_list_tells_how_far_the_call_got_while_we_were_away(action_id: str, item: str) -> None:
    channels = listed("status-during-call.txt", 1, action_id)
    assert {c.event for c in channels} == {item}
    tracker = CallTracker("1795478400.2002", "c2c-1")
    feed(tracker, b"Response: Success\r\nActionID: c2c-1\r\n\r\n")
    tracker.handle(
        Message(
            (
                ("Event", "Newstate"),
                ("Uniqueid", "1795478400.2002"),
                ("ChannelStateDesc", "Ringing"),
            )
        )
    )
    assert tracker.state is S.AGENT_RINGING
    # Listed up, dialing and bridged: the agent answered and the destination too.
    assert [p.state for p in tracker.reconcile(channels)] == [
        S.AGENT_ANSWERED,
        S.DESTINATION_DIALING,
        S.CONNECTED,
    ]


@pytest.mark.parametrize(
    ("reached", "result", "cause"),
    [
        (S.CONNECTED, Result.COMPLETED, ENDED_UNSEEN),
        (S.AGENT_RINGING, Result.ERROR, f"{ENDED_UNSEEN}; outcome unknown"),
    ],
)
def test_a_call_not_listed_ended_while_the_link_was_down(
    reached: CallState, result: Result, cause: str
) -> None:
    tracker = CallTracker("1795478400.9999", "c2c-1")
    tracker.state = reached
    other_call = listed("status-during-call.txt", 1, "csc-1")
    assert tracker.reconcile(other_call) == [Progress(S.ENDED, result, cause)]
    assert tracker.reconcile(other_call) == []


def test_a_requested_hangup_ends_a_connected_call_as_completed() -> None:
    name = "originate-sip-then-hangup-action.txt"
    tracker = CallTracker(originate_of(name)["ChannelId"], "c2c-1")
    data = received(name)
    reply_at = data.index(b"Message: Channel Hungup")
    assert [p.state for p in feed(tracker, data[:reply_at])] == FULL[:-1]
    tracker.hangup_requested()
    (end,) = feed(tracker, data[data.rindex(b"\r\n\r\n", 0, reply_at) :])
    # SoftHangupRequest on the agent channel, no HangupRequest before it: ours.
    assert (end.result, end.cause) == (
        Result.COMPLETED,
        "hung up by the API; Cause 16 Normal Clearing",
    )


def test_a_remote_hangup_crossing_ours_is_the_remote_one() -> None:
    name = "originate-sip-success.txt"
    tracker = CallTracker(originate_of(name)["ChannelId"], "c2c-1")
    data = received(name)
    request_at = data.index(b"Event: HangupRequest")
    feed(tracker, data[:request_at])
    tracker.hangup_requested()  # sent, but the destination's BYE was first
    (end,) = feed(tracker, data[request_at:])
    assert end.cause == DESTINATION_HUNG_UP


def test_a_requested_hangup_before_the_answer_is_a_cancel() -> None:
    tracker = CallTracker("1.1", "c2c-1")
    feed(tracker, b"Response: Success\r\nActionID: c2c-1\r\n\r\n")
    tracker.hangup_requested()
    (end,) = feed(
        tracker,
        b"Event: Hangup\r\nUniqueid: 1.1\r\nCause: 16\r\nCause-txt: Normal Clearing\r\n\r\n",
    )
    assert (end.result, end.cause) == (
        Result.CANCELED,
        "canceled by the API; Cause 16 Normal Clearing",
    )


@pytest.mark.parametrize("step", [None, 1, 7])
@pytest.mark.parametrize("action_id", ["csc-2", "status-2"])
def test_a_call_taken_back_after_a_restart_is_found_and_followed(
    step: int | None, action_id: str
) -> None:
    # A new process knows only the stored state; connection 2 is all it sees.
    name = "reconnect-during-call.txt"
    tracker = CallTracker("1795478400.2003", None, S.CONNECTED)
    assert tracker.reconcile(listed(name, 2, action_id), "click2call was restarting") == []
    after = feed(tracker, received(name, 2) + b"Event: Trailing\r\n", step)
    # The trunk channel bridged with ours (BridgeId / BridgeID) is the destination's.
    assert after == [Progress(S.ENDED, Result.COMPLETED, DESTINATION_HUNG_UP)]


def test_a_reply_without_an_action_id_is_not_taken_for_ours_after_a_restart() -> None:
    tracker = CallTracker("1.1", None)
    assert not tracker.concerns(Message((("Response", "Success"), ("Message", "x"))))
    assert tracker.handle(Message((("Response", "Success"),))) == []


def test_a_call_gone_while_the_server_restarted_says_so() -> None:
    tracker = CallTracker("1795478400.9999", None, S.CONNECTED)
    assert tracker.reconcile(
        listed("status-during-call.txt", 1, "csc-1"), "click2call was restarting"
    ) == [Progress(S.ENDED, Result.COMPLETED, "ended while click2call was restarting")]


@pytest.mark.parametrize("step", [None, 1, 7])
@pytest.mark.parametrize("name", [n for n in names() if n.startswith("originate-")])
def test_what_is_not_worth_parsing_changes_nothing(name: str, step: int | None) -> None:
    originate = originate_of(name)
    ours = originate["ChannelId"]
    decoder = AmiDecoder(keep=lambda block: worth_parsing(block, {ours}))
    tracker = CallTracker(ours, originate["ActionID"])
    assert feed(tracker, received(name), step, decoder) == replay(name)
    assert decoder.skipped > 0


@pytest.mark.parametrize("name", [n for n in names() if n.startswith("originate-")])
def test_another_calls_events_are_not_parsed(name: str) -> None:
    decoder = AmiDecoder(keep=lambda block: worth_parsing(block, {"c2c-1795000000-1"}))
    kept = [m for m in decoder.feed(received(name)) if isinstance(m, Message)]
    # Replies, and the Originate's own event (it names no Linkedid), are all that is left.
    assert {m.event for m in kept} <= {None, "OriginateResponse"}


def test_an_event_of_one_line_is_judged_by_its_whole_line() -> None:
    assert worth_parsing(b"Event: OriginateResponse", set())
    assert worth_parsing(b"Event: Hangup", {"c2c-1"}) is False  # names no channel of ours
    assert worth_parsing(b"Event: Hangu", set()) is False


def test_a_call_taken_back_before_its_originate_was_acknowledged_catches_up() -> None:
    # Killed between sending the Originate and storing its reply: the row is queued.
    tracker = CallTracker("1795478400.2002", None)
    assert [p.state for p in tracker.reconcile(listed("status-during-call.txt", 1, "csc-1"))] == [
        S.AGENT_DIALING,
        S.AGENT_ANSWERED,
        S.DESTINATION_DIALING,
        S.CONNECTED,
    ]


def test_the_readme_eventfilter_lets_every_event_the_tracker_reads_through() -> None:
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    named = set(re.findall(r"eventfilter\(action\(include\),name\((\w+)\)\)", readme))
    replies = {"CoreShowChannel", "CoreShowChannelsComplete", "Status", "StatusComplete"}
    assert named == EVENTS_USED - replies
