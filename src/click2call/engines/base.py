"""The interface every engine implements, and what it reports back."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from click2call.calls import CallEvent, CallOrder

EventSink = Callable[[CallEvent], None]
"""Engines call this on the asyncio loop, once per step of a call, in order."""

Clock = Callable[[], datetime]
"""Engines stamp events with it; the runtime passes one, tests can pass their own."""


@dataclass(frozen=True, slots=True)
class PeerHealth:
    """What the engine last learnt of one peer it sends calls to (a PBX, a trunk)."""

    role: str  # "pbx" or "trunk"
    target: str  # as configured
    state: str  # "up", "down", or "unknown" (not probed yet, or probing off)
    last_reply: str | None = None  # e.g. "200 OK"
    rtt_ms: float | None = None  # round trip of the last probe
    reason: str | None = None  # why it is down, in words


@dataclass(frozen=True, slots=True)
class EngineHealth:
    name: str
    ok: bool
    detail: str
    active_calls: int
    peers: tuple[PeerHealth, ...] = ()


class Engine(Protocol):
    async def start(self) -> None:
        """Bind or connect; an engine that loses its peer reconnects by itself."""

    async def close(self) -> None:
        """Hang up what is still up and release sockets and threads."""

    async def originate(self, order: CallOrder, events: EventSink) -> None:
        """Start the agent leg. Returns once the order is accepted; progress arrives as events.

        Raises EngineUnavailable when the order cannot be accepted.
        """

    async def hangup(self, call_uniqueid: str) -> None:
        """End a call in any state; unknown or finished calls are ignored."""

    def health(self) -> EngineHealth: ...
