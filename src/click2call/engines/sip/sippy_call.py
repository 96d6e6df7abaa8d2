"""One click-to-call on sippy: two UAs driven by the pure `ThirdPartyCall` controller.

Runs only on the sippy thread (see stack.py). This module translates both ways:
sippy's CCEvents into `LegEvent`s, and the controller's actions into UA events and
timers. It makes no decision of its own.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from sippy.CCEvents import (
    CCEventConnect,
    CCEventDisconnect,
    CCEventFail,
    CCEventPreConnect,
    CCEventRedirect,
    CCEventRing,
    CCEventTry,
    CCEventUpdate,
)
from sippy.MsgBody import MsgBody
from sippy.SipCallId import SipCallId
from sippy.SipContact import SipContact
from sippy.SipHeader import SipHeader
from sippy.Time.Timeout import Timeout
from sippy.UA import UA

from click2call.engines.sip import third_party as tp
from click2call.engines.sip.ringback_player import RingbackPlayer
from click2call.engines.sip.targets import LegTarget


class SippyCall:
    def __init__(
        self,
        global_config: dict[str, Any],
        controller: tp.ThirdPartyCall,
        agent: LegTarget,
        destination: LegTarget,
        correlation_id: str,
        report: Callable[[tp.Report], None],
        on_ended: Callable[[], None],
        ringback: RingbackPlayer | None = None,
    ) -> None:
        self._config = global_config
        self._controller = controller
        self._targets = {tp.Leg.AGENT: agent, tp.Leg.DESTINATION: destination}
        self._headers = (SipHeader(name="X-Click2Call-Id", bodys=correlation_id),)
        self._report = report
        self._on_ended = on_ended
        self._uas: dict[tp.Leg, Any] = {}
        self._timers: dict[tp.Timer, Any] = {}
        self._finished = False
        self._ringback = ringback

    def start(self) -> None:
        self._run(self._controller.start())

    def hangup(self, by: str) -> None:
        self._run(self._controller.handle(tp.HangupRequested(by)))

    # --- controller outputs → sippy --------------------------------------------------

    def _run(self, outputs: list[tp.Output]) -> None:
        for output in outputs:
            match output:
                case tp.DialAgent():
                    self._dial(tp.Leg.AGENT, None)
                case tp.DialDestination(sdp=sdp):
                    self._dial(tp.Leg.DESTINATION, sdp)
                case tp.AckAgent(sdp=sdp):
                    self._uas[tp.Leg.AGENT].recvEvent(CCEventConnect((200, "OK", MsgBody(sdp))))
                case tp.ReinviteAgent(sdp=sdp):
                    self._uas[tp.Leg.AGENT].recvEvent(CCEventUpdate(MsgBody(sdp)))
                case tp.Hangup(leg=leg):
                    if (ua := self._uas.get(leg)) is not None:
                        ua.recvEvent(CCEventDisconnect())
                case tp.StartTimer(timer=timer, seconds=seconds):
                    self._timers[timer] = Timeout(self._timer_fired, seconds, 1, timer)
                case tp.CancelTimer(timer=timer):
                    if (pending := self._timers.pop(timer, None)) is not None:
                        pending.cancel()
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
                    self._report(output)
        if self._controller.ended and not self._finished:
            self._finished = True
            if self._ringback is not None:
                self._ringback.close()
            self._on_ended()

    def _dial(self, leg: tp.Leg, sdp: str | None) -> None:
        target = self._targets[leg]
        ua = UA(
            self._config,
            event_cb=self._agent_event if leg is tp.Leg.AGENT else self._destination_event,
            nh_address=(target.address.host, target.address.port),
            username=target.username,
            password=target.password,
        )
        # A bare Contact: sippy's default carries the display name "Anonymous", which some
        # peers (SIPp's [next_url] among them) copy into the Request-URI of their BYE.
        ua.lContact = SipContact()
        ua.lContact.getUri().name = None
        self._uas[leg] = ua
        body = None if sdp is None else MsgBody(sdp)
        event = CCEventTry((SipCallId(), target.caller_id, target.user, body, None, None))
        event.extra_headers = self._headers
        ua.recvEvent(event)

    def _timer_fired(self, timer: tp.Timer) -> None:
        self._timers.pop(timer, None)
        self._run(self._controller.handle(tp.TimerFired(timer)))

    # --- sippy events → controller ---------------------------------------------------

    def _agent_event(self, event: Any, _ua: Any) -> None:
        self._leg_event(tp.Leg.AGENT, event)

    def _destination_event(self, event: Any, _ua: Any) -> None:
        self._leg_event(tp.Leg.DESTINATION, event)

    def _leg_event(self, leg: tp.Leg, event: Any) -> None:
        translated = translate(leg, event)
        if translated is not None:
            self._run(self._controller.handle(translated))


def translate(leg: tp.Leg, event: Any) -> tp.LegEvent | None:
    """The controller's view of a sippy CCEvent; None for what it need not see."""
    if isinstance(event, CCEventRing):
        code = event.getData()[0]
        return tp.Ringing(leg, code) if code > 100 else None
    if isinstance(event, CCEventPreConnect | CCEventConnect):
        body = event.getData()[2]
        return tp.Answered(leg, None if body is None else str(body))
    if isinstance(event, CCEventFail | CCEventRedirect):
        code, reason = event.getData()[:2]
        return tp.Failed(leg, code, reason)
    if isinstance(event, CCEventDisconnect):
        return tp.HungUp(leg)
    return None
