"""Following originated calls through the AMI event stream, sans-IO.

Everything that moves a call's state on Asterisk lives in this file: `sighting()` names
what an AMI message says about the call, and the `MOVES` table maps that, from the call's
current state, onto the call's next state (a subset of `calls.TRANSITIONS`; a unit test
checks it). Anything not in the table changes nothing. How a call ends, and with which
result, is decided by `_ending()` from the facts gathered on the way.

Asterisk gives every channel of one call the `Linkedid` of the first one, and we preset
that first channel's id (`ChannelId` on Originate) to `c2c-<epoch>-<seq>`, our call's
uniqueid made unlike any id Asterisk mints (`actions.channel_id`), so every event of a
call names it: as `Linkedid`, `Uniqueid`, `DestLinkedid` or, for the Originate's
response and OriginateResponse, by our `ActionID`. Which channel an event is about tells
the leg:

    the originated channel (Uniqueid == ours)   the agent leg; after it answers, the
                                                dialplan runs on it and its Dial is the
                                                destination leg (DialBegin/DialState/
                                                DialEnd with Uniqueid == ours)
    anything else (a trunk channel, Local ;2)   detail of either leg; not needed

Rules from the recordings (tests/fixtures/asterisk-ami/README.md): the Originate's
`Response` comes before any event of its channel; OriginateResponse may come before or
after the agent channel's Hangup; an unanswered or unreachable agent has a DialBegin but
no DialEnd; the destination's outcome is only in DialEnd's DialStatus. After a lost AMI
link nothing is replayed: the channel list (CoreShowChannels or Status) is the only way
to know whether the call is still up and how far it got (`reconcile()`).
"""

from __future__ import annotations

import enum
from collections.abc import Container, Iterable
from dataclasses import dataclass

from click2call.calls import CallState, Result
from click2call.engines.asterisk.codec import Message


class Sighting(enum.Enum):
    """What the PBX said about a call, as far as the call's state is concerned."""

    QUEUED = "Originate queued"  # Response: Success to our Originate
    AGENT_RINGING = "agent channel ringing"  # Newstate Ringing on the agent channel
    AGENT_UP = "agent channel up"  # Newstate Up, or OriginateResponse Success
    DIAL_BEGIN = "destination dialed"  # DialBegin from the agent channel
    DIAL_RINGING = "destination ringing"  # DialState RINGING/PROCEEDING/PROGRESS
    DIAL_ANSWER = "destination answered"  # DialEnd ANSWER (or, listed, a bridge)


S, V = CallState, Sighting
MOVES: dict[tuple[CallState, Sighting], CallState] = {
    (S.QUEUED, V.QUEUED): S.AGENT_DIALING,
    (S.AGENT_DIALING, V.AGENT_RINGING): S.AGENT_RINGING,
    (S.AGENT_DIALING, V.AGENT_UP): S.AGENT_ANSWERED,
    (S.AGENT_RINGING, V.AGENT_UP): S.AGENT_ANSWERED,
    (S.AGENT_ANSWERED, V.DIAL_BEGIN): S.DESTINATION_DIALING,
    (S.DESTINATION_DIALING, V.DIAL_RINGING): S.DESTINATION_RINGING,
    (S.DESTINATION_DIALING, V.DIAL_ANSWER): S.CONNECTED,
    (S.DESTINATION_RINGING, V.DIAL_ANSWER): S.CONNECTED,
}
_BEFORE_ANSWER = frozenset({S.QUEUED, S.AGENT_DIALING, S.AGENT_RINGING})

# OriginateResponse "Reason": Asterisk's control frame for the agent leg's outcome.
_REASON_RESULT = {
    "0": (Result.AGENT_FAILED, "agent channel could not be created"),
    "1": (Result.AGENT_FAILED, "agent leg hung up"),
    "3": (Result.AGENT_NO_ANSWER, "no answer"),
    "5": (Result.AGENT_BUSY, "busy"),
    "8": (Result.AGENT_FAILED, "congestion"),
}
_DIAL_STATUS_RESULT = {
    "BUSY": Result.DESTINATION_BUSY,
    "NOANSWER": Result.DESTINATION_NO_ANSWER,
    "CANCEL": Result.CANCELED,
    "CHANUNAVAIL": Result.DESTINATION_FAILED,
    "CONGESTION": Result.DESTINATION_FAILED,
    "DONTCALL": Result.DESTINATION_FAILED,
    "TORTURE": Result.DESTINATION_FAILED,
    "INVALIDARGS": Result.DESTINATION_FAILED,
}
# Q.850 causes on the agent channel's Hangup when no OriginateResponse told us more.
_AGENT_CAUSE_RESULT = {
    "17": Result.AGENT_BUSY,
    "18": Result.AGENT_NO_ANSWER,
    "19": Result.AGENT_NO_ANSWER,
    "21": Result.AGENT_BUSY,
}
_NEWSTATE = {"Ringing": V.AGENT_RINGING, "Up": V.AGENT_UP}
_HANGUP_REQUESTS = frozenset({"HangupRequest", "SoftHangupRequest"})
_DIAL_RINGING = frozenset({"RINGING", "PROCEEDING", "PROGRESS"})
LINK_DOWN = "the AMI link to the PBX was down"
ENDED_UNSEEN = f"ended while {LINK_DOWN}"


# What the tracker and the engine read, by event; Asterisk sends much more (a connected
# call is ~100 messages with `Events: on`, ~30 with `Events: call`, ~12 of them read).
_OF_THE_AGENT_CHANNEL = ("Newchannel", "Newstate", "DialBegin", "DialState", "DialEnd", "Hangup")
_OF_ANY_CHANNEL = ("HangupRequest", "SoftHangupRequest", "CoreShowChannel", "Status")
_OF_NO_CHANNEL = ("OriginateResponse", "CoreShowChannelsComplete", "StatusComplete")
EVENTS_USED = frozenset(_OF_THE_AGENT_CHANNEL + _OF_ANY_CHANNEL + _OF_NO_CHANNEL)
_READ_WHEN = {
    **{f"Event: {name}".encode(): "agent" for name in _OF_THE_AGENT_CHANNEL},
    **{f"Event: {name}".encode(): "any" for name in _OF_ANY_CHANNEL},
    **{f"Event: {name}".encode(): "always" for name in _OF_NO_CHANNEL},
}


def _value(block: bytes, header: bytes) -> str | None:
    """The value of `header` (b"\\r\\nName: ") in a raw header block, without parsing it."""
    at = block.find(header)
    if at < 0:
        return None
    start = at + len(header)
    end = block.find(b"\r", start)
    return block[start : end if end >= 0 else len(block)].decode(errors="replace")


def worth_parsing(block: bytes, channel_ids: Container[str]) -> bool:
    """Whether a raw message (its header lines, as the codec cuts them) can matter to one
    of the calls whose agent channels are `channel_ids`, judged without parsing it: a
    reply, or an event the tracker reads about a channel it reads it for (Asterisk writes
    `Event:` first, and `Uniqueid`/`Linkedid` with this spelling)."""
    if not block.startswith(b"Event: "):
        return True  # a reply: matched to its action by ActionID
    end = block.find(b"\r\n")  # the first line, without copying the rest
    when = _READ_WHEN.get(block if end < 0 else block[:end])
    if when is None or when == "always":
        return when == "always"
    if _value(block, b"\r\nUniqueid: ") in channel_ids:
        return True
    return when == "any" and _value(block, b"\r\nLinkedid: ") in channel_ids


@dataclass(frozen=True, slots=True)
class Progress:
    state: CallState
    result: Result | None = None
    cause: str | None = None


def sighting(message: Message, channel_id: str, action_id: str | None) -> Sighting | None:
    """What `message` says about the call whose agent channel is `channel_id`."""
    event = message.event
    if event is None:
        ours = action_id is not None and message.action_id == action_id
        ours = ours and message.response == "Success"
        return V.QUEUED if ours else None
    if event == "OriginateResponse":
        return V.AGENT_UP if message.response == "Success" else None
    if message.get("Uniqueid") != channel_id:
        return None
    status = message.get("DialStatus")
    if event == "Newstate":
        return _NEWSTATE.get(message.get("ChannelStateDesc") or "")
    if event == "DialBegin":
        return V.DIAL_BEGIN
    if event == "DialState" and status in _DIAL_RINGING:
        return V.DIAL_RINGING
    if event == "DialEnd" and status == "ANSWER":
        return V.DIAL_ANSWER
    return None


class CallTracker:
    """One originated call: fed its AMI messages, returns its progress.

    `action_id` is our Originate's; None for a call taken back after a restart, which
    starts from its stored `state` and learns the rest from the channel list.
    """

    def __init__(
        self, channel_id: str, action_id: str | None, state: CallState = CallState.QUEUED
    ) -> None:
        self.channel_id = channel_id
        self.action_id = action_id
        self.state = state
        self._agent_rang = False
        self._destination_outcome: tuple[Result, str] | None = None
        self._destination_channel: str | None = None  # its Uniqueid, once dialed
        self._requested_by: str | None = None  # who asked us to hang up
        self._first_request: tuple[str, str] | None = None  # (event, Uniqueid)

    @property
    def ended(self) -> bool:
        return self.state is CallState.ENDED

    def concerns(self, message: Message) -> bool:
        ours = self.channel_id
        if self.action_id is not None and message.action_id == self.action_id:
            return True
        return ours in (
            message.get("Linkedid"),
            message.get("Uniqueid"),
            message.get("DestLinkedid"),
            message.get("DestUniqueid"),
        )

    def hangup_requested(self, by: str = "the API") -> None:
        """We asked the PBX to hang up (`by`: on whose behalf, for the cause)."""
        self._requested_by = self._requested_by or by

    def handle(self, message: Message) -> list[Progress]:
        if self.ended:
            return []
        self._note_who(message)
        seen = sighting(message, self.channel_id, self.action_id)
        if seen is not None:
            return self._move(seen)
        event = message.event
        if event == "OriginateResponse":
            return self._originate_failed(message.get("Reason") or "")
        if message.get("Uniqueid") != self.channel_id:
            return []
        if event == "DialEnd":
            status = message.get("DialStatus") or ""
            result = _DIAL_STATUS_RESULT.get(status, Result.DESTINATION_FAILED)
            self._destination_outcome = (result, f"DialStatus {status}")
        elif event == "Hangup":
            code = message.get("Cause") or ""
            return self._end(*self._ending(code, f"Cause {code} {message.get('Cause-txt', '')}"))
        return []

    def _note_who(self, message: Message) -> None:
        """Which channel is the destination's, and which asked first to hang up."""
        event = message.event
        if event in _HANGUP_REQUESTS and self._first_request is None:
            self._first_request = (event, message.get("Uniqueid") or "")
        elif event == "DialBegin" and message.get("Uniqueid") == self.channel_id:
            self._destination_channel = message.get("DestUniqueid")

    def reconcile(self, channels: Iterable[Message], away: str = LINK_DOWN) -> list[Progress]:
        """After a lost AMI link or a restart (`away` says which, for the cause): the
        PBX's channel list (`CoreShowChannel` or `Status` events, whose names differ:
        `BridgeId`/`BridgeID`, header names are case-insensitive) says whether the call is
        still up, and how far it got meanwhile."""
        if self.ended:
            return []
        listed = {c.get("Uniqueid"): c for c in channels if c.get("Linkedid") == self.channel_id}
        agent = listed.get(self.channel_id)
        if agent is None:  # our Hangup came and went while we were away
            if self.state is S.CONNECTED:
                return self._end(Result.COMPLETED, f"ended while {away}")
            result, outcome = self._destination_outcome or (Result.ERROR, "outcome unknown")
            return self._end(result, f"ended while {away}; {outcome}")
        seen = [V.QUEUED]  # listed: Asterisk took the Originate (if we never saw its reply)
        bridge = agent.get("BridgeId")
        if agent.get("ChannelStateDesc") == "Ringing":
            seen.append(V.AGENT_RINGING)
        if agent.get("ChannelStateDesc") == "Up":
            seen.append(V.AGENT_UP)
            if agent.get("Application") == "Dial":
                seen.append(V.DIAL_BEGIN)
            if bridge:  # the dialed leg answered and was joined to the agent's
                seen.append(V.DIAL_ANSWER)
        for uniqueid, channel in listed.items():
            # The destination is the channel bridged with ours (a Local agent's ;2 half is
            # bridged with the agent's own phone instead).
            if bridge and uniqueid != self.channel_id and channel.get("BridgeId") == bridge:
                self._destination_channel = uniqueid
        return [step for s in seen for step in self._move(s)]

    # --- steps -----------------------------------------------------------------------

    def _move(self, seen: Sighting) -> list[Progress]:
        if seen is V.AGENT_RINGING:
            self._agent_rang = True
        state = MOVES.get((self.state, seen))
        if state is None:
            return []
        self.state = state
        return [Progress(state)]

    def _end(self, result: Result, cause: str) -> list[Progress]:
        self.state = CallState.ENDED
        return [Progress(CallState.ENDED, result, cause.strip())]

    def _originate_failed(self, reason: str) -> list[Progress]:
        result, text = _REASON_RESULT.get(reason, (Result.AGENT_FAILED, "failed"))
        if result is Result.AGENT_NO_ANSWER and not self._agent_rang:
            result, text = Result.AGENT_FAILED, "agent unreachable (never rang)"
        return self._end(result, f"Originate failed, Reason {reason}: {text}")

    def _ender(self) -> str | None:
        """Who ended the call, in words, from the first hang-up request among its
        channels: our Hangup action shows as `SoftHangupRequest` on the agent channel, a
        phone that hangs up as `HangupRequest` on its own channel (recordings:
        originate-sip-then-hangup-action.txt, originate-sip-success.txt)."""
        ours = None if self._requested_by is None else f"by {self._requested_by}"
        if self._first_request is None:
            return ours  # the account reads no such events: trust our own request
        event, channel = self._first_request
        if event == "SoftHangupRequest":
            return ours if ours and channel == self.channel_id else "on the PBX"
        return "destination" if channel == self._destination_channel else "agent"

    def _ending(self, code: str, cause: str) -> tuple[Result, str]:
        """The result of a call whose agent channel hung up with Q.850 cause `code`."""
        ender = self._ender()
        if self.state is S.CONNECTED:
            if ender in ("agent", "destination"):
                return Result.COMPLETED, f"{ender} hung up; {cause}"
            return Result.COMPLETED, f"hung up {ender}; {cause}" if ender else cause
        if ender is not None and ender.startswith("by "):
            return Result.CANCELED, f"canceled {ender}; {cause}"
        if self._destination_outcome is not None:
            result, outcome = self._destination_outcome
            return result, f"{outcome}; {cause}"
        if self.state in _BEFORE_ANSWER:
            result = _AGENT_CAUSE_RESULT.get(code, Result.AGENT_FAILED)
            if result is Result.AGENT_NO_ANSWER and not self._agent_rang:
                result = Result.AGENT_FAILED
            return result, cause
        return Result.DESTINATION_FAILED, cause
