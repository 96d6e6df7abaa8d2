"""Third-party call control (RFC 3725) for one click-to-call, as a pure state machine.

The controller is fed `LegEvent`s (what a SIP leg did, or a timer firing) and answers
with `Action`s (what to send, which timers to run) and `Report`s (the call's progress).
It never touches a socket or a clock, so every flow is tested without a network.

The flow, per RFC 3725 §4.2 with the agent answered at once (DESIGN.md explains why the
agent's ACK must not wait for the destination):

    agent:       INVITE (no SDP) ─► 200 OK (offer A) ─► ACK (answer: our ringback
                 stream, sendonly; or held, c=0.0.0.0, without ringback or G.711)
    destination: INVITE (offer A) ─► 200 OK (answer D) ─► ACK
    agent:       re-INVITE (D) ─► 200 OK ─► ACK          media now flows end to end

`STEPS` is the transition table: (phase, event kind) → handler. A pair absent from
it is an event that no longer matters in that phase (a late 180, a BYE crossing ours)
and is ignored.
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from dataclasses import dataclass

from click2call.calls import CallState, Result
from click2call.engines.sip.sdp import (
    MediaTarget,
    Origin,
    g711_target,
    hold_answer,
    ringback_answer,
    with_origin,
)


class Leg(enum.Enum):
    AGENT = "agent"
    DESTINATION = "destination"


class Timer(enum.Enum):
    AGENT_RING = "agent_ring"
    DESTINATION_RING = "destination_ring"
    MAX_DURATION = "max_duration"


# --- what the SIP side reports -------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Ringing:
    leg: Leg
    code: int


@dataclass(frozen=True, slots=True)
class Answered:
    """A 2xx to the leg's INVITE (or re-INVITE) with its SDP body, if any."""

    leg: Leg
    sdp: str | None


@dataclass(frozen=True, slots=True)
class Failed:
    """A final non-2xx response (a transaction timeout reported as 408), or code 0: the
    request never reached the peer, and `reason` says why in words."""

    leg: Leg
    code: int
    reason: str


@dataclass(frozen=True, slots=True)
class HungUp:
    """The far end of the leg sent BYE (or the dialog died)."""

    leg: Leg


@dataclass(frozen=True, slots=True)
class TimerFired:
    timer: Timer


@dataclass(frozen=True, slots=True)
class HangupRequested:
    """Someone asked to end the call: through the API, or the server is stopping."""

    by: str = "the API"


LegEvent = Ringing | Answered | Failed | HungUp | TimerFired | HangupRequested


# --- what the controller asks for ----------------------------------------------------


@dataclass(frozen=True, slots=True)
class DialAgent:
    pass


@dataclass(frozen=True, slots=True)
class AckAgent:
    sdp: str


@dataclass(frozen=True, slots=True)
class DialDestination:
    sdp: str


@dataclass(frozen=True, slots=True)
class ReinviteAgent:
    sdp: str


@dataclass(frozen=True, slots=True)
class Hangup:
    """End the leg: CANCEL before its answer, BYE after."""

    leg: Leg


@dataclass(frozen=True, slots=True)
class StartRingback:
    """Play ringback to the agent, from our media port, while the destination rings."""

    target: MediaTarget


@dataclass(frozen=True, slots=True)
class StopRingback:
    pass


@dataclass(frozen=True, slots=True)
class LocalMedia:
    """The address and UDP port ringback leaves from (bound by the I/O side)."""

    address: str
    port: int


@dataclass(frozen=True, slots=True)
class StartTimer:
    timer: Timer
    seconds: float


@dataclass(frozen=True, slots=True)
class CancelTimer:
    timer: Timer


# Built once: every call's end cancels them all (iterating the Enum per call showed in profiles).
_CANCEL_EVERY_TIMER = tuple(CancelTimer(timer) for timer in Timer)


@dataclass(frozen=True, slots=True)
class Report:
    state: CallState
    result: Result | None = None
    cause: str | None = None


Action = DialAgent | AckAgent | DialDestination | ReinviteAgent | Hangup | StartTimer
Output = Action | CancelTimer | Report | StartRingback | StopRingback


class Phase(enum.Enum):
    IDLE = "idle"
    AGENT_CALLING = "agent_calling"
    DESTINATION_CALLING = "destination_calling"
    BRIDGING = "bridging"  # destination answered, agent being re-INVITEd
    CONNECTED = "connected"
    ENDED = "ended"


_RESTARTED = {
    Phase.IDLE: "server restarted before the call was placed",
    Phase.AGENT_CALLING: "server restarted while the agent's phone was ringing",
    Phase.DESTINATION_CALLING: "server restarted while the destination was ringing",
    Phase.BRIDGING: "server restarted while the two legs were being joined",
}
_BUSY = frozenset({486, 600, 603})
_NO_ANSWER = frozenset({408, 480, 487})


def result_for_failure(leg: Leg, code: int) -> Result:
    """The call result for a final SIP response `code` on `leg`."""
    if leg is Leg.AGENT:
        if code in _BUSY:
            return Result.AGENT_BUSY
        return Result.AGENT_NO_ANSWER if code in _NO_ANSWER else Result.AGENT_FAILED
    if code in _BUSY:
        return Result.DESTINATION_BUSY
    return Result.DESTINATION_NO_ANSWER if code in _NO_ANSWER else Result.DESTINATION_FAILED


@dataclass(slots=True)
class ThirdPartyCall:
    """One click-to-call. `start()` then `handle()` every event; both return outputs in order."""

    agent_ring_timeout: float
    destination_ring_timeout: float
    max_call_seconds: float
    agent_origin: Origin
    destination_origin: Origin
    ringback_media: LocalMedia | None = None  # None: the agent hears silence (held)
    phase: Phase = Phase.IDLE

    def start(self) -> list[Output]:
        self.phase = Phase.AGENT_CALLING
        return [
            DialAgent(),
            StartTimer(Timer.AGENT_RING, self.agent_ring_timeout),
            Report(CallState.AGENT_DIALING),
        ]

    def handle(self, event: LegEvent) -> list[Output]:
        step = STEPS.get((self.phase, _kind(event)))
        return [] if step is None else step(self, event)

    @property
    def ended(self) -> bool:
        return self.phase is Phase.ENDED

    def resumed(self, seconds_connected: float) -> list[Output]:
        """Rebuilt from its snapshot after a restart: a connected call goes on with what is
        left of its maximum length; any other ends, since its timers and half-done
        exchanges died with the old process."""
        if self.phase is Phase.CONNECTED:
            left = max(self.max_call_seconds - seconds_connected, 0.0)
            return [StartTimer(Timer.MAX_DURATION, left)]
        if self.phase is Phase.ENDED:
            return []
        return self._end(Result.ERROR, _RESTARTED.get(self.phase, _RESTARTED[Phase.IDLE]))

    # --- steps -----------------------------------------------------------------------

    def _agent_ringing(self, event: LegEvent) -> list[Output]:
        if not isinstance(event, Ringing) or event.leg is not Leg.AGENT:
            return []
        return [Report(CallState.AGENT_RINGING)]

    def _agent_answered(self, event: LegEvent) -> list[Output]:
        assert isinstance(event, Answered)
        if event.leg is not Leg.AGENT:
            return []
        if not event.sdp:
            # Without the agent's offer there is nothing to bridge; RFC 3725 needs it.
            return self._end(Result.AGENT_FAILED, "agent answered without an SDP offer")
        media = self.ringback_media
        target = g711_target(event.sdp) if media is not None else None
        try:
            origin = self.agent_origin.next()
            if media is not None and target is not None:
                pt = target.payload_type
                answer = ringback_answer(event.sdp, origin, media.address, media.port, pt)
            else:
                answer = hold_answer(event.sdp, origin)
            offer = with_origin(event.sdp, self.destination_origin.next())
        except ValueError as exc:
            return self._end(Result.AGENT_FAILED, f"unreadable SDP offer from the agent: {exc}")
        self.phase = Phase.DESTINATION_CALLING
        tone: list[Output] = [StartRingback(target)] if target is not None else []
        return [
            CancelTimer(Timer.AGENT_RING),
            AckAgent(answer),
            *tone,
            Report(CallState.AGENT_ANSWERED),
            DialDestination(offer),
            StartTimer(Timer.DESTINATION_RING, self.destination_ring_timeout),
            Report(CallState.DESTINATION_DIALING),
        ]

    def _destination_ringing(self, event: LegEvent) -> list[Output]:
        assert isinstance(event, Ringing)
        if event.leg is not Leg.DESTINATION:
            return []
        return [Report(CallState.DESTINATION_RINGING)]

    def _destination_answered(self, event: LegEvent) -> list[Output]:
        assert isinstance(event, Answered)
        if event.leg is not Leg.DESTINATION:
            return []
        if not event.sdp:
            return self._end(Result.DESTINATION_FAILED, "destination answered without SDP")
        try:
            bridged = with_origin(event.sdp, self.agent_origin.next())
        except ValueError as exc:
            return self._end(Result.DESTINATION_FAILED, f"unreadable SDP from destination: {exc}")
        self.phase = Phase.BRIDGING
        silence: list[Output] = [StopRingback()] if self.ringback_media is not None else []
        return [
            CancelTimer(Timer.DESTINATION_RING),
            *silence,
            ReinviteAgent(bridged),
            StartTimer(Timer.MAX_DURATION, self.max_call_seconds),
            Report(CallState.CONNECTED),
        ]

    def _bridged(self, event: LegEvent) -> list[Output]:
        assert isinstance(event, Answered)
        if event.leg is Leg.AGENT:
            self.phase = Phase.CONNECTED
        return []

    def _failed(self, event: LegEvent) -> list[Output]:
        assert isinstance(event, Failed)
        cause = f"SIP {event.code} {event.reason}".strip() if event.code else event.reason
        if self.phase is Phase.BRIDGING and event.leg is Leg.AGENT:
            return self._end(Result.ERROR, f"agent refused the bridged media: {cause}")
        return self._end(result_for_failure(event.leg, event.code), cause, spare=event.leg)

    def _hung_up(self, event: LegEvent) -> list[Output]:
        assert isinstance(event, HungUp)
        if self.phase in (Phase.BRIDGING, Phase.CONNECTED):
            return self._end(Result.COMPLETED, f"{event.leg.value} hung up", spare=event.leg)
        if event.leg is Leg.AGENT:
            return self._end(
                Result.CANCELED, "agent hung up before the destination answered", spare=Leg.AGENT
            )
        return self._end(Result.DESTINATION_FAILED, "destination dialog ended", spare=event.leg)

    def _timer(self, event: LegEvent) -> list[Output]:
        assert isinstance(event, TimerFired)
        if event.timer is Timer.AGENT_RING and self.phase is Phase.AGENT_CALLING:
            return self._end(
                Result.AGENT_NO_ANSWER, f"no answer within {self.agent_ring_timeout:g} s"
            )
        if event.timer is Timer.DESTINATION_RING and self.phase is Phase.DESTINATION_CALLING:
            return self._end(
                Result.DESTINATION_NO_ANSWER,
                f"no answer within {self.destination_ring_timeout:g} s",
            )
        if event.timer is Timer.MAX_DURATION and self.phase in (Phase.BRIDGING, Phase.CONNECTED):
            return self._end(
                Result.COMPLETED, f"maximum call length of {self.max_call_seconds:g} s reached"
            )
        return []

    def _hangup_requested(self, event: LegEvent) -> list[Output]:
        assert isinstance(event, HangupRequested)
        if self.phase in (Phase.BRIDGING, Phase.CONNECTED):
            return self._end(Result.COMPLETED, f"hung up by {event.by}")
        return self._end(Result.CANCELED, f"canceled by {event.by}")

    def _end(self, result: Result, cause: str, spare: Leg | None = None) -> list[Output]:
        """Hang up every leg still up (except `spare`, already gone) and report the end."""
        phase, self.phase = self.phase, Phase.ENDED
        outputs: list[Output] = [*_CANCEL_EVERY_TIMER]
        if self.ringback_media is not None:
            outputs.append(StopRingback())
        legs = [Leg.AGENT]
        if phase in (Phase.DESTINATION_CALLING, Phase.BRIDGING, Phase.CONNECTED):
            legs.append(Leg.DESTINATION)
        outputs += [Hangup(leg) for leg in legs if leg is not spare]
        outputs.append(Report(CallState.ENDED, result, cause))
        return outputs


def _kind(event: LegEvent) -> type:
    return type(event)


_Step = Callable[[ThirdPartyCall, LegEvent], list[Output]]
_P = Phase
STEPS: dict[tuple[Phase, type], _Step] = {
    (_P.AGENT_CALLING, Ringing): ThirdPartyCall._agent_ringing,
    (_P.AGENT_CALLING, Answered): ThirdPartyCall._agent_answered,
    (_P.AGENT_CALLING, Failed): ThirdPartyCall._failed,
    (_P.AGENT_CALLING, HungUp): ThirdPartyCall._hung_up,
    (_P.AGENT_CALLING, TimerFired): ThirdPartyCall._timer,
    (_P.AGENT_CALLING, HangupRequested): ThirdPartyCall._hangup_requested,
    (_P.DESTINATION_CALLING, Ringing): ThirdPartyCall._destination_ringing,
    (_P.DESTINATION_CALLING, Answered): ThirdPartyCall._destination_answered,
    (_P.DESTINATION_CALLING, Failed): ThirdPartyCall._failed,
    (_P.DESTINATION_CALLING, HungUp): ThirdPartyCall._hung_up,
    (_P.DESTINATION_CALLING, TimerFired): ThirdPartyCall._timer,
    (_P.DESTINATION_CALLING, HangupRequested): ThirdPartyCall._hangup_requested,
    (_P.BRIDGING, Answered): ThirdPartyCall._bridged,
    (_P.BRIDGING, Failed): ThirdPartyCall._failed,
    (_P.BRIDGING, HungUp): ThirdPartyCall._hung_up,
    (_P.BRIDGING, TimerFired): ThirdPartyCall._timer,
    (_P.BRIDGING, HangupRequested): ThirdPartyCall._hangup_requested,
    (_P.CONNECTED, HungUp): ThirdPartyCall._hung_up,
    (_P.CONNECTED, TimerFired): ThirdPartyCall._timer,
    (_P.CONNECTED, HangupRequested): ThirdPartyCall._hangup_requested,
}
