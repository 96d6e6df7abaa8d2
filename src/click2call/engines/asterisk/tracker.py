"""Following originated calls through the AMI event stream, sans-IO.

Asterisk gives every channel of one call the `Linkedid` of the first one, and we preset
that first channel's id (`ChannelId` on Originate) to our call's uniqueid, so every event
of a call names it: as `Linkedid`, `Uniqueid`, `DestLinkedid` or, for OriginateResponse,
by our `ActionID`. Which channel an event is about tells the leg:

    the originated channel (Uniqueid == ours)   the agent leg; after it answers, the
                                                dialplan runs on it and its Dial is the
                                                destination leg (DialBegin/DialEnd with
                                                Uniqueid == ours)
    anything else (a trunk channel, Local ;2)   detail of either leg; not needed

Rules from the recordings (tests/fixtures/asterisk-ami/README.md): OriginateResponse may
come before or after the agent channel's Hangup; an unanswered or unreachable agent has a
DialBegin but no DialEnd; the destination's outcome is only in DialEnd's DialStatus.
"""

from __future__ import annotations

from dataclasses import dataclass

from click2call.calls import CallState, Result
from click2call.engines.asterisk.codec import Message

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


@dataclass(frozen=True, slots=True)
class Progress:
    state: CallState
    result: Result | None = None
    cause: str | None = None


class CallTracker:
    """One originated call: fed its AMI messages, returns its progress."""

    def __init__(self, channel_id: str, action_id: str) -> None:
        self.channel_id = channel_id
        self.action_id = action_id
        self.state = CallState.QUEUED
        self._agent_rang = False
        self._destination_outcome: tuple[Result, str] | None = None

    @property
    def ended(self) -> bool:
        return self.state is CallState.ENDED

    def concerns(self, message: Message) -> bool:
        ours = self.channel_id
        if message.action_id == self.action_id:
            return True
        return ours in (
            message.get("Linkedid"),
            message.get("Uniqueid"),
            message.get("DestLinkedid"),
            message.get("DestUniqueid"),
        )

    def accepted(self) -> list[Progress]:
        """The PBX queued the Originate."""
        return self._to(CallState.AGENT_DIALING)

    def handle(self, message: Message) -> list[Progress]:
        if self.ended:
            return []
        event = message.event
        on_agent = message.get("Uniqueid") == self.channel_id
        if event == "OriginateResponse":
            return self._originate_response(message)
        if event == "Newstate" and on_agent:
            return self._agent_state(message.get("ChannelStateDesc"))
        if event in ("DialBegin", "DialState", "DialEnd") and on_agent:
            return self._destination(event, message.get("DialStatus"))
        if event == "Hangup" and on_agent:
            return self._agent_hangup(message)
        return []

    # --- steps -----------------------------------------------------------------------

    def _to(self, state: CallState) -> list[Progress]:
        if self.state is state:
            return []
        out = []
        if self.state is CallState.QUEUED and state is not CallState.AGENT_DIALING:
            # Events can overtake the reply to the Originate itself.
            out.append(Progress(CallState.AGENT_DIALING))
        self.state = state
        return [*out, Progress(state)]

    def _end(self, result: Result, cause: str) -> list[Progress]:
        out = self._to(CallState.AGENT_DIALING) if self.state is CallState.QUEUED else []
        self.state = CallState.ENDED
        return [*out, Progress(CallState.ENDED, result, cause)]

    def _originate_response(self, message: Message) -> list[Progress]:
        reason = message.get("Reason", "")
        if message.response == "Success":
            return self._agent_answered()
        result, text = _REASON_RESULT.get(reason or "", (Result.AGENT_FAILED, "failed"))
        if result is Result.AGENT_NO_ANSWER and not self._agent_rang:
            result, text = Result.AGENT_FAILED, "agent unreachable (never rang)"
        return self._end(result, f"Originate failed, Reason {reason}: {text}")

    def _agent_state(self, state: str | None) -> list[Progress]:
        if state == "Ringing" and self.state in (CallState.QUEUED, CallState.AGENT_DIALING):
            self._agent_rang = True
            return self._to(CallState.AGENT_RINGING)
        if state == "Up":
            return self._agent_answered()
        return []

    def _agent_answered(self) -> list[Progress]:
        if self.state in (CallState.QUEUED, CallState.AGENT_DIALING, CallState.AGENT_RINGING):
            return self._to(CallState.AGENT_ANSWERED)
        return []

    def _destination(self, event: str, status: str | None) -> list[Progress]:
        out = self._agent_answered()  # the agent's channel dials only once it is up
        if event == "DialBegin":
            out += self._to(CallState.DESTINATION_DIALING)
        elif event == "DialState" and status in ("RINGING", "PROCEEDING", "PROGRESS"):
            if self.state is CallState.AGENT_ANSWERED:
                out += self._to(CallState.DESTINATION_DIALING)
            out += self._to(CallState.DESTINATION_RINGING)
        elif event == "DialEnd" and status == "ANSWER":
            if self.state is CallState.AGENT_ANSWERED:
                out += self._to(CallState.DESTINATION_DIALING)
            out += self._to(CallState.CONNECTED)
        elif event == "DialEnd" and status:
            result = _DIAL_STATUS_RESULT.get(status, Result.DESTINATION_FAILED)
            self._destination_outcome = (result, f"DialStatus {status}")
        return out

    def _agent_hangup(self, message: Message) -> list[Progress]:
        code = message.get("Cause", "")
        cause = f"Cause {code} {message.get('Cause-txt', '')}".strip()
        if self.state is CallState.CONNECTED:
            return self._end(Result.COMPLETED, cause)
        if self._destination_outcome is not None:
            result, outcome = self._destination_outcome
            return self._end(result, f"{outcome}; {cause}")
        if self.state in (CallState.QUEUED, CallState.AGENT_DIALING, CallState.AGENT_RINGING):
            result = _AGENT_CAUSE_RESULT.get(code or "", Result.AGENT_FAILED)
            if result is Result.AGENT_NO_ANSWER and not self._agent_rang:
                result = Result.AGENT_FAILED
            return self._end(result, cause)
        return self._end(Result.DESTINATION_FAILED, cause)
