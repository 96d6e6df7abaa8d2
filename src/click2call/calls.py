"""What a call is: the order, its legs, its states and the events that move it.

Everything that decides which state a call may enter lives in this file, as the
`TRANSITIONS` table below; engines report `CallEvent`s and `advance` checks them.
Pure code: no I/O, no clock (timestamps arrive inside events).

    queued → agent_dialing → agent_ringing → agent_answered
           → destination_dialing → destination_ringing → connected → ended

Any state may go to `ended`, which carries a `Result` and the raw cause.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from datetime import datetime

from click2call.errors import IllegalTransition


class CallState(enum.StrEnum):
    QUEUED = "queued"
    AGENT_DIALING = "agent_dialing"
    AGENT_RINGING = "agent_ringing"
    AGENT_ANSWERED = "agent_answered"
    DESTINATION_DIALING = "destination_dialing"
    DESTINATION_RINGING = "destination_ringing"
    CONNECTED = "connected"
    ENDED = "ended"


class Result(enum.StrEnum):
    COMPLETED = "completed"
    AGENT_BUSY = "agent_busy"
    AGENT_NO_ANSWER = "agent_no_answer"
    AGENT_FAILED = "agent_failed"
    DESTINATION_BUSY = "destination_busy"
    DESTINATION_NO_ANSWER = "destination_no_answer"
    DESTINATION_FAILED = "destination_failed"
    CANCELED = "canceled"
    REJECTED = "rejected"
    ERROR = "error"


S = CallState
TRANSITIONS: dict[CallState, frozenset[CallState]] = {
    S.QUEUED: frozenset({S.AGENT_DIALING, S.ENDED}),
    S.AGENT_DIALING: frozenset({S.AGENT_RINGING, S.AGENT_ANSWERED, S.ENDED}),
    S.AGENT_RINGING: frozenset({S.AGENT_ANSWERED, S.ENDED}),
    S.AGENT_ANSWERED: frozenset({S.DESTINATION_DIALING, S.ENDED}),
    S.DESTINATION_DIALING: frozenset({S.DESTINATION_RINGING, S.CONNECTED, S.ENDED}),
    S.DESTINATION_RINGING: frozenset({S.CONNECTED, S.ENDED}),
    S.CONNECTED: frozenset({S.ENDED}),
    S.ENDED: frozenset(),
}

# Events that may repeat without changing anything (a second 180, a 183 after a 180).
_REPEATABLE = frozenset({S.AGENT_RINGING, S.DESTINATION_RINGING})


class AgentKind(enum.StrEnum):
    EXTENSION = "extension"
    EXTERNAL = "external"


class Tech(enum.StrEnum):
    SIP = "sip"
    PJSIP = "pjsip"


@dataclass(frozen=True, slots=True)
class Extension:
    """An agent reached through the PBX as an extension (dial.php)."""

    tech: Tech
    number: str
    kind: AgentKind = AgentKind.EXTENSION


@dataclass(frozen=True, slots=True)
class External:
    """An agent reached on a mobile or outside number through the trunk (dial_external.php)."""

    number: str
    kind: AgentKind = AgentKind.EXTERNAL


Agent = Extension | External


@dataclass(frozen=True, slots=True)
class Destination:
    """The number to call; `via_trunk` is False for internal extensions reached through the PBX."""

    number: str
    via_trunk: bool = True


@dataclass(frozen=True, slots=True)
class CallOrder:
    """Everything an engine needs to place one two-leg call, already validated."""

    call_id: int
    uniqueid: str
    tenant: str
    agent: Agent
    destination: Destination
    destination_caller_id: str  # shown to the destination
    agent_caller_id: str  # shown to the agent: whom they are about to call
    agent_ring_timeout: float
    destination_ring_timeout: float
    max_call_seconds: float
    variables: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class CallEvent:
    """One step of a call, as reported by an engine."""

    uniqueid: str
    state: CallState
    at: datetime
    result: Result | None = None
    cause: str | None = None

    def __post_init__(self) -> None:
        if (self.state is CallState.ENDED) != (self.result is not None):
            raise ValueError("a result goes with the ended state, and only with it")


def advance(current: CallState, event: CallEvent) -> CallState | None:
    """The state `event` moves a call in `current` to, or None when it changes nothing.

    Raises IllegalTransition for a move the table does not allow.
    """
    if event.state is current and current in _REPEATABLE:
        return None
    if event.state not in TRANSITIONS[current]:
        raise IllegalTransition(f"{current} cannot go to {event.state}")
    return event.state


EVENT_TYPES = (*(f"call.{state.value}" for state in CallState), "call.rejected")
"""The names of stored call events, as webhooks and the live feed give them."""


def event_type(state: CallState, result: Result | None) -> str:
    """`call.<state>`; a call refused before it was dialled ends as `call.rejected`."""
    return "call.rejected" if result is Result.REJECTED else f"call.{state.value}"


def is_active(state: CallState) -> bool:
    return state is not CallState.ENDED
