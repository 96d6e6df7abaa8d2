"""The Asterisk engine: click2call through Asterisk/FreePBX/Issabel/VitalPBX over AMI.

One `AmiClient` per tenant's PBX carries every call of that tenant. Each call is an
`Originate` (Async) whose agent channel id is preset to our uniqueid; a `CallTracker`
per call turns the event stream into call states. If the link drops, calls in flight
end with `error` and a cause saying so: their outcome is on the PBX, not here.
"""

from __future__ import annotations

import asyncio
import logging

from click2call.calls import CallEvent, CallOrder, CallState, Result
from click2call.engines.asterisk import actions
from click2call.engines.asterisk.client import AmiClient, AmiUnavailable
from click2call.engines.asterisk.codec import Message, UnsafeValue
from click2call.engines.asterisk.tracker import CallTracker, Progress
from click2call.engines.base import Clock, EngineHealth, EventSink
from click2call.errors import EngineUnavailable, InvalidInput
from click2call.settings import TenantSettings

log = logging.getLogger("click2call.asterisk")


class _Call:
    __slots__ = ("channel", "deadline", "sink", "tracker")

    def __init__(self, tracker: CallTracker, sink: EventSink) -> None:
        self.tracker = tracker
        self.sink = sink
        self.channel: str | None = None  # the agent channel's name, once Asterisk made it
        self.deadline: asyncio.TimerHandle | None = None


class AsteriskEngine:
    def __init__(self, tenant: TenantSettings, clock: Clock) -> None:
        self._tenant = tenant
        self._settings = tenant.asterisk
        self._clock = clock
        self._calls: dict[str, _Call] = {}  # by our uniqueid (= Linkedid of every channel)
        self._by_action: dict[str, str] = {}  # Originate ActionID → uniqueid
        self._hangups: set[asyncio.Future[None]] = set()  # keeps overdue hangups alive
        self.client = AmiClient(
            self._settings, self._on_event, self._on_link_lost, name=tenant.name
        )

    async def start(self) -> None:
        await self.client.start()

    async def close(self) -> None:
        await self.client.close()

    async def originate(self, order: CallOrder, events: EventSink) -> None:
        if not self.client.connected:
            raise EngineUnavailable(f"PBX not reachable over AMI: {self.client.status}")
        action_id = self.client.next_action_id()
        try:
            action = actions.originate(order, self._settings, action_id)
        except (UnsafeValue, ValueError) as exc:
            raise InvalidInput("request", str(exc)) from exc
        call = _Call(CallTracker(order.uniqueid, action_id), events)
        self._calls[order.uniqueid] = call
        self._by_action[action_id] = order.uniqueid
        try:
            reply = await self.client.send(action)
        except AmiUnavailable as exc:
            self._forget(order.uniqueid)
            raise EngineUnavailable(str(exc)) from exc
        if reply.response != "Success":
            self._forget(order.uniqueid)
            raise EngineUnavailable(f"Asterisk refused the call: {reply.get('Message', '')}")
        self._report(order.uniqueid, call, call.tracker.accepted())
        if order.uniqueid in self._calls:
            # Both ring timeouts and the longest talk: past that, the call is overdue.
            longest = order.agent_ring_timeout + order.destination_ring_timeout
            longest += order.max_call_seconds
            loop = asyncio.get_running_loop()
            call.deadline = loop.call_later(longest, self._overdue, order.uniqueid)

    async def hangup(self, call_uniqueid: str) -> None:
        call = self._calls.get(call_uniqueid)
        if call is None or call.channel is None or not self.client.connected:
            return
        try:
            await self.client.send(actions.hangup(call.channel, self.client.next_action_id()))
        except AmiUnavailable as exc:
            log.warning("hangup of %s not sent: %s", call_uniqueid, exc)

    def health(self) -> EngineHealth:
        return EngineHealth("asterisk", self.client.connected, self.client.status, len(self._calls))

    # --- events ----------------------------------------------------------------------

    def _on_event(self, message: Message) -> None:
        uniqueid = self._owner(message)
        if uniqueid is None:
            return
        call = self._calls[uniqueid]
        if message.event == "Newchannel" and message.get("Uniqueid") == uniqueid:
            call.channel = message.get("Channel")
        self._report(uniqueid, call, call.tracker.handle(message))

    def _owner(self, message: Message) -> str | None:
        for key in ("Linkedid", "DestLinkedid", "Uniqueid"):
            value = message.get(key)
            if value is not None and value in self._calls:
                return value
        action_id = message.action_id
        return self._by_action.get(action_id) if action_id is not None else None

    def _report(self, uniqueid: str, call: _Call, steps: list[Progress]) -> None:
        for step in steps:
            call.sink(CallEvent(uniqueid, step.state, self._clock(), step.result, step.cause))
        if call.tracker.ended:
            self._forget(uniqueid)

    def _overdue(self, uniqueid: str) -> None:
        """Past its longest possible life: hang it up; if no Hangup event follows, end it.

        This also keeps a call from staying "ringing" forever when the AMI account cannot
        read call events (manager.conf `read = call` missing).
        """
        call = self._calls.get(uniqueid)
        if call is None:
            return
        self._hangups.add(asyncio.ensure_future(self.hangup(uniqueid)))
        self._hangups = {task for task in self._hangups if not task.done()}
        grace = self._settings.end_grace
        call.deadline = asyncio.get_running_loop().call_later(grace, self._give_up, uniqueid)

    def _give_up(self, uniqueid: str) -> None:
        self._end_in_error(
            uniqueid, "the PBX reported no end for this call in time (are call events readable?)"
        )

    def _on_link_lost(self, reason: str) -> None:
        for uniqueid in list(self._calls):
            cause = f"AMI link to the PBX lost ({reason}); the call's outcome is unknown"
            self._end_in_error(uniqueid, cause)

    def _end_in_error(self, uniqueid: str, cause: str) -> None:
        """End a call we can no longer follow on the PBX."""
        call = self._calls.get(uniqueid)
        if call is None:
            return
        call.sink(CallEvent(uniqueid, CallState.ENDED, self._clock(), Result.ERROR, cause))
        self._forget(uniqueid)

    def _forget(self, uniqueid: str) -> None:
        call = self._calls.pop(uniqueid, None)
        if call is not None:
            self._by_action.pop(call.tracker.action_id, None)
            if call.deadline is not None:
                call.deadline.cancel()
