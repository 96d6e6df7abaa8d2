"""The built-in SIP engine: the server itself is the user agent that places both legs.

Measured choice (DESIGN.md): sippy 2.5.0 carries the SIP transactions, digest auth,
CANCEL/BYE and re-INVITE; the call flow is our own pure controller (third_party.py).
One sippy stack serves every tenant; each tenant gets a `SipEngine` with its own PBX,
trunk and credentials.
"""

from __future__ import annotations

import asyncio
import logging
import random
import socket
from collections.abc import Callable
from typing import TYPE_CHECKING

from click2call.calls import CallEvent, CallOrder
from click2call.engines.base import Clock, EngineHealth, EventSink
from click2call.engines.sip import third_party as tp
from click2call.engines.sip.ringback import cadence_for
from click2call.engines.sip.sdp import Origin
from click2call.engines.sip.stack import SippyStack
from click2call.engines.sip.targets import agent_target, destination_target
from click2call.settings import TenantSettings

if TYPE_CHECKING:
    from click2call.engines.sip.ringback_player import RingbackPlayer
    from click2call.engines.sip.sippy_call import SippyCall

log = logging.getLogger("click2call.sip")
_CLOSE_GRACE = 2.0  # seconds a stopping server waits for its calls' endings


class SipEngine:
    def __init__(
        self,
        tenant: TenantSettings,
        stack: SippyStack,
        clock: Clock,
        session_ids: Callable[[], int] = lambda: random.getrandbits(48),
    ) -> None:
        self._tenant = tenant
        self._stack = stack
        self._clock = clock
        self._session_ids = session_ids
        self._active: set[str] = set()
        # Only touched on the sippy thread.
        self._calls: dict[str, SippyCall] = {}

    async def start(self) -> None:
        await asyncio.to_thread(self._stack.start)

    async def close(self) -> None:
        """Hang up live calls and give their endings a moment to reach the store."""
        if not self._active or not self._stack.running:
            return
        for uniqueid in list(self._active):
            self._stack.call(self._hangup_call, uniqueid, "server shutdown")
        for _ in range(int(_CLOSE_GRACE / 0.05)):
            if not self._active:
                return
            await asyncio.sleep(0.05)

    async def originate(self, order: CallOrder, events: EventSink) -> None:
        loop = asyncio.get_running_loop()
        self._active.add(order.uniqueid)

        def deliver(event: CallEvent) -> None:
            if event.result is not None:
                self._active.discard(event.uniqueid)
            events(event)

        def report(step: tp.Report) -> None:  # sippy thread
            event = CallEvent(order.uniqueid, step.state, self._clock(), step.result, step.cause)
            loop.call_soon_threadsafe(deliver, event)

        try:
            self._stack.call(self._start_call, order, report)
        except Exception:
            self._active.discard(order.uniqueid)
            raise

    async def hangup(self, call_uniqueid: str) -> None:
        if call_uniqueid in self._active and self._stack.running:
            self._stack.call(self._hangup_call, call_uniqueid, "the API")

    def health(self) -> EngineHealth:
        stack = self._stack.settings
        if self._stack.running:
            detail = f"listening on {stack.host}:{stack.port}/udp"
        else:
            detail = self._stack.error or "SIP stack not started"
        return EngineHealth("sip", self._stack.running, detail, len(self._active))

    # --- sippy thread ----------------------------------------------------------------

    def _start_call(self, order: CallOrder, report: Callable[[tp.Report], None]) -> None:
        from click2call.engines.sip.sippy_call import SippyCall

        address = self._stack.settings.host
        player, media = self._ringback(address)
        controller = tp.ThirdPartyCall(
            agent_ring_timeout=order.agent_ring_timeout,
            destination_ring_timeout=order.destination_ring_timeout,
            max_call_seconds=order.max_call_seconds,
            agent_origin=Origin(self._session_ids(), address),
            destination_origin=Origin(self._session_ids(), address),
            ringback_media=media,
        )
        call = SippyCall(
            self._stack.global_config,
            controller,
            agent=agent_target(order, self._tenant.sip),
            destination=destination_target(order, self._tenant.sip),
            correlation_id=order.uniqueid,
            report=report,
            on_ended=lambda: self._forget(order.uniqueid),
            ringback=player,
        )
        self._calls[order.uniqueid] = call
        call.start()

    def _ringback(self, address: str) -> tuple[RingbackPlayer | None, tp.LocalMedia | None]:
        """A UDP socket the tone leaves from, when the tenant wants ringback."""
        if self._tenant.sip.ringback == "off":
            return None, None
        from click2call.engines.sip.ringback_player import RingbackPlayer

        family = socket.AF_INET6 if ":" in address else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_DGRAM)
        try:
            sock.bind((address, 0))
        except OSError as exc:
            sock.close()
            log.warning("no ringback for this call: cannot bind %s: %s", address, exc)
            return None, None
        sock.setblocking(False)
        player = RingbackPlayer(sock, cadence_for(self._tenant.region), self._session_ids())
        return player, tp.LocalMedia(address, sock.getsockname()[1])

    def _forget(self, uniqueid: str) -> None:
        self._calls.pop(uniqueid, None)

    def _hangup_call(self, uniqueid: str, by: str) -> None:
        call = self._calls.get(uniqueid)
        if call is not None:
            call.hangup(by)
