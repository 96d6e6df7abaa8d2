"""The built-in SIP engine: the server itself is the user agent that places both legs.

Our own SIP core underneath (DESIGN.md, "Engines"): message.py, transaction.py,
dialog.py, auth.py and leg.py are pure; endpoint.py and transport.py are the asyncio
shell. One `SipEndpoint` (one socket) serves every tenant; each tenant gets a
`SipEngine` with its own PBX, trunk and credentials. A `SipCall` joins the two legs
through the pure RFC 3725 controller (third_party.py) and makes no decision itself.
"""

from __future__ import annotations

import asyncio
import logging
import random
import socket
from collections.abc import Callable

from click2call.calls import CallEvent, CallOrder
from click2call.engines.base import Clock, EngineHealth, EventSink
from click2call.engines.sip import snapshot as snap
from click2call.engines.sip import third_party as tp
from click2call.engines.sip.endpoint import SipEndpoint
from click2call.engines.sip.leg import Output as LegOutput
from click2call.engines.sip.leg import UacLeg
from click2call.engines.sip.message import SipUri
from click2call.engines.sip.probe import Outcome, PeerStatus, Probe, options_request
from click2call.engines.sip.ringback import cadence_for
from click2call.engines.sip.ringback_player import RingbackClock, RingbackPlayer
from click2call.engines.sip.sdp import Origin
from click2call.engines.sip.takeover import end_stored_call
from click2call.engines.sip.targets import LegTarget, agent_target, destination_target
from click2call.engines.sip.timers import Timer
from click2call.errors import EngineUnavailable
from click2call.settings import TenantSettings, sip_target

log = logging.getLogger("click2call.sip")
# Where a call's SIP state goes as it changes: (call uniqueid, snapshot JSON).
DialogSink = Callable[[str, str], None]
# Where a call's progress goes: (call uniqueid, the step, the call's event sink).
Reporter = Callable[[str, tp.Report, EventSink], None]
_CLOSE_GRACE = 2.0  # seconds a stopping server waits for its calls' endings


class SipCall:
    """One click-to-call: the controller's outputs carried out on two legs.

    Thousands stay connected at once, so what each holds is kept small: its legs and
    timers in tuples (a dict of one entry is ~240 bytes), no closures of its own."""

    __slots__ = (
        "_controller",
        "_correlation_id",
        "_endpoint",
        "_events",
        "_legs",
        "_report",
        "_ringback",
        "_save",
        "_saved",
        "_saving",
        "_targets",
        "_timers",
    )

    def __init__(
        self,
        endpoint: SipEndpoint,
        controller: tp.ThirdPartyCall,
        targets: dict[tp.Leg, LegTarget],
        correlation_id: str,
        report: Reporter,
        events: EventSink,
        ringback: RingbackPlayer | None,
        save: DialogSink | None = None,
    ) -> None:
        """`report(correlation_id, step, events)` receives each step of the call."""
        self._endpoint = endpoint
        self._controller = controller
        self._targets: dict[tp.Leg, LegTarget] | None = targets or None
        self._correlation_id = correlation_id
        self._report = report
        self._events = events
        self._ringback = ringback
        self._legs: tuple[UacLeg, ...] = ()  # in the order dialled
        self._timers: tuple[tuple[tp.Timer, Timer], ...] = ()
        self._save = save
        self._saved: tuple[object, ...] = ()  # what the last stored state was made of
        self._saving = False

    @property
    def ended(self) -> bool:
        return self._controller.ended

    def start(self) -> None:
        self._run(self._controller.start())

    def hangup(self, by: str) -> None:
        self._run(self._controller.handle(tp.HangupRequested(by)))

    def leg_event(self, event: tp.LegEvent) -> None:
        self._run(self._controller.handle(event))

    def resume(self, legs: list[UacLeg], seconds_connected: float) -> None:
        """Go on with the legs a previous process placed: a connected call keeps running,
        any other ends at once, hanging up whatever leg is up."""
        for leg in legs:
            self._legs = (*self._legs, leg)
            self._endpoint.adopt(leg, self)
        self._saved = snap.fingerprint(self._controller, legs)
        self._run(self._controller.resumed(seconds_connected))

    def leg_changed(self) -> None:
        """A leg's dialog may have moved: store the call's state once this loop turn ends,
        after the reports queued before it, so the store sees changes in their order."""
        if self._save is not None and not self._saving and not self.ended:
            self._saving = True
            asyncio.get_running_loop().call_soon(self._store_state)

    def _store_state(self) -> None:
        self._saving = False
        if self._save is None or self.ended:
            return  # the ended event removes the stored state
        key = snap.fingerprint(self._controller, self._legs)
        if key != self._saved:
            self._saved = key
            self._save(self._correlation_id, snap.to_json(self._controller, self._legs))

    def _run(self, outputs: list[tp.Output]) -> None:
        for output in outputs:
            match output:
                case tp.DialAgent():
                    self._dial(tp.Leg.AGENT, None)
                case tp.DialDestination(sdp=sdp):
                    self._dial(tp.Leg.DESTINATION, sdp)
                case tp.AckAgent(sdp=sdp):
                    self._on_leg(tp.Leg.AGENT, UacLeg.ack, sdp)
                case tp.ReinviteAgent(sdp=sdp):
                    self._on_leg(tp.Leg.AGENT, UacLeg.reinvite, sdp)
                case tp.Hangup(leg=which):
                    self._on_leg(which, UacLeg.hangup)
                case tp.StartTimer(timer=timer, seconds=seconds):
                    clock = self._endpoint.timers
                    # The function and the call as arguments: no bound method to keep.
                    armed = clock.call_later(seconds, SipCall._timer_fired, self, timer)
                    self._timers = (*self._drop_timer(timer)[0], (timer, armed))
                case tp.CancelTimer(timer=timer):
                    self._timers, pending = self._drop_timer(timer)
                    if pending is not None:
                        self._endpoint.timers.cancel(pending)
                case tp.StartRingback(target=target):
                    if self._ringback is not None:
                        self._ringback.start(target)
                case tp.StopRingback():
                    # Media now flows end to end: free the socket at once, since
                    # a thousand connected calls must not hold a thousand descriptors.
                    if self._ringback is not None:
                        self._ringback.close()
                        self._ringback = None
                case tp.Report():
                    # Recording a step writes to the store: let the SIP work of this
                    # turn (the destination's INVITE above all) leave first.
                    loop = asyncio.get_running_loop()
                    loop.call_soon(self._report, self._correlation_id, output, self._events)
        self.leg_changed()  # the controller's phase may have moved

    def _dial(self, which: tp.Leg, sdp: str | None) -> None:
        assert self._targets is not None
        target = self._targets.pop(which)  # each leg is dialled once
        if not self._targets:
            self._targets = None  # an emptied dict keeps its table
        leg = UacLeg(
            which,
            target,
            self._endpoint.local(target.transport),
            self._endpoint.tokens,
            self._correlation_id,
        )
        self._legs = (*self._legs, leg)
        self._endpoint.place(leg, self, sdp)

    def _on_leg(self, which: tp.Leg, action: Callable[..., list[LegOutput]], *args: str) -> None:
        for leg in self._legs:
            if leg.role is which:
                self._endpoint.run(leg, action(leg, *args))
                return

    def _drop_timer(
        self, which: tp.Timer
    ) -> tuple[tuple[tuple[tp.Timer, Timer], ...], Timer | None]:
        """The call's timers without `which`, and `which`'s if it was armed."""
        for i, (timer, armed) in enumerate(self._timers):
            if timer is which:
                return self._timers[:i] + self._timers[i + 1 :], armed
        return self._timers, None

    def _timer_fired(self, timer: tp.Timer) -> None:
        self._timers = self._drop_timer(timer)[0]
        self._run(self._controller.handle(tp.TimerFired(timer)))


class SipEngine:
    def __init__(
        self,
        tenant: TenantSettings,
        endpoint: SipEndpoint,
        clock: Clock,
        session_ids: Callable[[], int] = lambda: random.getrandbits(48),
        save: DialogSink | None = None,
    ) -> None:
        """`save` receives each call's SIP state as it changes (see snapshot.py)."""
        self._tenant = tenant
        self._save = save
        self._endpoint = endpoint
        self._clock = clock
        self._session_ids = session_ids
        self._calls: dict[str, SipCall] = {}
        self._report = self._reported  # bound once: every call shares it
        self._peers = [
            PeerStatus("pbx", tenant.sip.pbx),
            PeerStatus("trunk", tenant.sip.trunk),
        ]
        self._probing: list[asyncio.Task[None]] = []
        self._ringing = RingbackClock()  # every ringing call's tone, on one 20 ms tick

    async def start(self) -> None:
        await self._endpoint.start()
        interval = self._endpoint.settings.options_interval
        if interval > 0 and not self._probing:
            loop = asyncio.get_running_loop()
            self._probing = [loop.create_task(self._probe(p, interval)) for p in self._peers]

    async def _probe(self, status: PeerStatus, interval: float) -> None:
        """OPTIONS to one peer every `interval` seconds, for as long as the engine runs."""
        address, transport = sip_target(status.target)
        params = (("transport", transport),) if transport == "tcp" else ()
        scheme = "sips" if transport == "tls" else "sip"
        uri = SipUri(address.host, None, address.port, scheme, params)
        loop = asyncio.get_running_loop()
        while True:
            outcome: asyncio.Future[Outcome] = loop.create_future()
            request = options_request(uri, self._endpoint.local(transport), self._endpoint.tokens)
            sent = loop.time()
            self._endpoint.send_request(Probe(request, outcome.set_result), request, uri)
            result = await outcome
            was = status.state
            status.record(result, loop.time() - sent)
            if status.state != was and status.state == "down":
                log.warning("%s %s is down: %s", status.role, status.target, status.reason)
            await asyncio.sleep(interval)

    async def close(self) -> None:
        """Hang up live calls and give their endings a moment to reach the store."""
        for task in self._probing:
            task.cancel()
        self._probing = []
        if not self._calls or not self._endpoint.running:
            return
        for call in list(self._calls.values()):
            call.hangup("server shutdown")
        for _ in range(int(_CLOSE_GRACE / 0.05)):
            if not self._calls:
                return
            await asyncio.sleep(0.05)

    async def originate(self, order: CallOrder, events: EventSink) -> None:
        if not self._endpoint.running:
            raise EngineUnavailable("SIP stack is not running")
        uniqueid = order.uniqueid
        address = self._endpoint.settings.host
        player, media = self._ringback(address)
        controller = tp.ThirdPartyCall(
            agent_ring_timeout=order.agent_ring_timeout,
            destination_ring_timeout=order.destination_ring_timeout,
            max_call_seconds=order.max_call_seconds,
            agent_origin=Origin(self._session_ids(), address),
            destination_origin=Origin(self._session_ids(), address),
            ringback_media=media,
        )
        targets = {
            tp.Leg.AGENT: agent_target(order, self._tenant.sip),
            tp.Leg.DESTINATION: destination_target(order, self._tenant.sip),
        }
        call = SipCall(
            self._endpoint, controller, targets, uniqueid, self._report, events, player, self._save
        )
        self._calls[uniqueid] = call
        # Reply to the HTTP request first; the INVITE leaves on the next loop turn.
        asyncio.get_running_loop().call_soon(call.start)

    def resume(
        self, uniqueid: str, stored: str, seconds_connected: float, events: EventSink
    ) -> None:
        """Take back a call a previous process of this node left, from its stored SIP
        state (`stored`, snapshot JSON): connected, it goes on; else it ends cleanly.
        ValueError for a snapshot that cannot be read."""
        if not self._endpoint.running:
            raise EngineUnavailable("SIP stack is not running")
        state = snap.from_json(stored)
        sip = self._tenant.sip
        credentials = (sip.username or None, sip.password.get_secret_value() or None)
        legs = [
            snap.restore_leg(
                leg, self._endpoint.local(leg.transport), self._endpoint.tokens, credentials
            )
            for leg in state.legs
        ]
        controller = snap.restore_call(state)
        call = SipCall(
            self._endpoint, controller, {}, uniqueid, self._report, events, None, self._save
        )
        self._calls[uniqueid] = call
        call.resume(legs, seconds_connected)

    def end_orphan(self, uniqueid: str, stored: str) -> list[str]:
        """End a call a lost node placed, from its stored SIP state (snapshot JSON):
        CANCEL or BYE to each leg; the methods sent. ValueError for an unreadable one."""
        if not self._endpoint.running:
            raise EngineUnavailable("SIP stack is not running")
        return end_stored_call(self._endpoint, uniqueid, stored)

    def _reported(self, uniqueid: str, step: tp.Report, events: EventSink) -> None:
        if step.result is not None:
            self._calls.pop(uniqueid, None)
        events(CallEvent(uniqueid, step.state, self._clock(), step.result, step.cause))

    async def hangup(self, call_uniqueid: str) -> None:
        call = self._calls.get(call_uniqueid)
        if call is not None:
            call.hangup("the API")

    def health(self) -> EngineHealth:
        stack = self._endpoint.settings
        if self._endpoint.running:
            local = self._endpoint.local()
            detail = f"listening on {local.host}:{local.port} (udp, tcp)"
        else:
            detail = self._endpoint.error or "SIP stack not started"
        peers = tuple(p.health() for p in self._peers)
        running = self._endpoint.running
        return EngineHealth("sip", running, detail or stack.host, len(self._calls), peers)

    def _ringback(self, address: str) -> tuple[RingbackPlayer | None, tp.LocalMedia | None]:
        """A UDP socket the tone leaves from, when the tenant wants ringback."""
        if self._tenant.sip.ringback == "off":
            return None, None
        family = socket.AF_INET6 if ":" in address else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_DGRAM)
        try:
            sock.bind((address, 0))
        except OSError as exc:
            sock.close()
            log.warning("no ringback for this call: cannot bind %s: %s", address, exc)
            return None, None
        sock.setblocking(False)
        cadence = cadence_for(self._tenant.region)
        player = RingbackPlayer(sock, cadence, self._session_ids(), self._ringing)
        return player, tp.LocalMedia(address, sock.getsockname()[1])
