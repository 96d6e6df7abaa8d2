"""The Asterisk engine: click2call through Asterisk/FreePBX/Issabel/VitalPBX over AMI.

One `AmiClient` per tenant's PBX carries every call of that tenant. Each call is an
`Originate` (Async) whose agent channel id is preset to one derived from our uniqueid
(`actions.channel_id`); a `CallTracker` per call turns the event stream into call states.

Calls outlive the AMI link and this process: they run on the PBX. When the link drops,
calls in flight are kept; after a restart, the runtime hands back the calls the previous
run left in flight (`resume`). Once logged in, the engine lists the PBX's channels
(CoreShowChannels; Status where the account may not run it) and re-finds each call by
its Linkedid. A call still listed goes on being followed (its Hangup ends it with the
real result); a call not listed ended while we were away, and says so. If the link stays
down past the call's longest possible life, the call ends as `error`.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine
from datetime import datetime
from typing import Protocol

from click2call.calls import CallEvent, CallOrder, CallState, Result
from click2call.engines.asterisk import actions
from click2call.engines.asterisk.client import AmiClient, AmiUnavailable
from click2call.engines.asterisk.codec import Message, UnsafeValue
from click2call.engines.asterisk.replies import Reply
from click2call.engines.asterisk.tracker import LINK_DOWN, CallTracker, Progress, worth_parsing
from click2call.engines.base import Clock, EngineHealth, EventSink
from click2call.errors import EngineUnavailable, InvalidInput
from click2call.settings import TenantSettings

log = logging.getLogger("click2call.asterisk")


class Timeouts(Protocol):
    """What bounds a call's life: a `CallOrder`'s, or the tenant settings it came from."""

    @property
    def agent_ring_timeout(self) -> float: ...
    @property
    def destination_ring_timeout(self) -> float: ...
    @property
    def max_call_seconds(self) -> float: ...


def longest_life(timeouts: Timeouts) -> float:
    """Both ring timeouts and the longest talk: past that, a call is overdue."""
    return (
        timeouts.agent_ring_timeout + timeouts.destination_ring_timeout + timeouts.max_call_seconds
    )


class _Call:
    __slots__ = (
        "away",
        "channel",
        "deadline",
        "hangup_pending",
        "link_lost",
        "sink",
        "tracker",
        "uniqueid",
    )

    def __init__(self, uniqueid: str, tracker: CallTracker, sink: EventSink) -> None:
        self.uniqueid = uniqueid
        self.tracker = tracker
        self.sink = sink
        self.channel: str | None = None  # the agent channel's name, once Asterisk made it
        self.deadline: asyncio.TimerHandle | None = None
        self.link_lost: str | None = None  # why we lost sight of the call, until re-found
        self.away = LINK_DOWN  # what happened meanwhile, for the cause of an unseen end
        self.hangup_pending = False  # asked before the channel had a name: send it then


class AsteriskEngine:
    def __init__(self, tenant: TenantSettings, clock: Clock) -> None:
        self._settings = tenant.asterisk
        self._clock = clock
        self._calls: dict[str, _Call] = {}  # by channel id (= Linkedid of every channel)
        self._by_action: dict[str, str] = {}  # Originate ActionID → channel id
        self._tasks: set[asyncio.Future[None]] = set()  # keeps background sends alive
        self.client = AmiClient(
            self._settings,
            self._on_message,
            self._on_link_lost,
            self._on_connected,
            name=tenant.name,
            keep=lambda block: worth_parsing(block, self._calls),
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
        key = actions.channel_id(order.uniqueid)
        call = _Call(order.uniqueid, CallTracker(key, action_id), events)
        self._calls[key] = call
        self._by_action[action_id] = key
        try:
            reply = await self.client.send(action)
        except AmiUnavailable as exc:
            self._forget(key)
            raise EngineUnavailable(str(exc)) from exc
        if reply.response != "Success":
            self._forget(key)
            raise EngineUnavailable(f"Asterisk refused the call: {reply.get('Message', '')}")
        # The tracker saw the reply in the stream, in order with the events that follow.
        if key in self._calls:
            loop = asyncio.get_running_loop()
            call.deadline = loop.call_later(longest_life(order), self._overdue, key)

    def resume(
        self,
        uniqueid: str,
        state: CallState,
        created_at: datetime,
        events: EventSink,
        placed: Timeouts,
    ) -> None:
        """Follow again a call a previous run of this node placed and left in flight (call
        before `start`): the first login re-finds it in the PBX's channel list. `placed`:
        the timeouts the call was placed with, which bound its life as they did then."""
        key = actions.channel_id(uniqueid)
        call = _Call(uniqueid, CallTracker(key, None, state), events)
        call.link_lost, call.away = "click2call restarted", "click2call was restarting"
        self._calls[key] = call
        left = longest_life(placed) - (self._clock() - created_at).total_seconds()
        call.deadline = asyncio.get_running_loop().call_later(max(left, 0), self._overdue, key)

    async def hangup(self, call_uniqueid: str) -> None:
        key = actions.channel_id(call_uniqueid)
        call = self._calls.get(key)
        if call is None:
            return
        call.tracker.hangup_requested()
        await self._send_hangup(key, call)

    async def end_orphan(self, uniqueid: str) -> None:
        """Hang up a call a lost node placed on this PBX, over this node's link: its agent
        channel's id derives from the call's uniqueid, and Hangup accepts an id in place
        of a name. AmiUnavailable when the link is down."""
        channel = actions.channel_id(uniqueid)
        reply = await self.client.send(actions.hangup(channel, self.client.next_action_id()))
        if reply.response != "Success":  # "No such channel": the call is gone already
            log.info("hangup of %s: Asterisk said %s", uniqueid, reply.get("Message"))

    async def _send_hangup(self, key: str, call: _Call) -> None:
        """Hang up the agent channel: Asterisk then ends the whole call (its Hangup events
        end it here). Sent once the channel has a name and the link is up."""
        if call.channel is None or not self.client.connected:
            call.hangup_pending = True
            return
        call.hangup_pending = False
        try:
            reply = await self.client.send(
                actions.hangup(call.channel, self.client.next_action_id())
            )
        except AmiUnavailable as exc:
            call.hangup_pending = True
            log.warning("hangup of %s not sent: %s", call.uniqueid, exc)
            return
        if reply.response != "Success":
            # "No such channel": it is gone already, and its Hangup event ends the call.
            log.info("hangup of %s: Asterisk said %s", call.uniqueid, reply.get("Message"))

    def _in_background(self, work: Coroutine[object, object, None]) -> None:
        self._tasks.add(asyncio.ensure_future(work))
        self._tasks = {task for task in self._tasks if not task.done()}

    def health(self) -> EngineHealth:
        return EngineHealth("asterisk", self.client.connected, self.client.status, len(self._calls))

    # --- events ----------------------------------------------------------------------

    def _on_message(self, message: Message) -> None:
        key = self._owner(message)
        if key is None:
            return
        call = self._calls[key]
        if message.event == "Newchannel" and message.get("Uniqueid") == key:
            self._named(key, call, message.get("Channel"))
        self._report(key, call, call.tracker.handle(message))

    def _named(self, key: str, call: _Call, channel: str | None) -> None:
        call.channel = channel
        if call.hangup_pending:
            self._in_background(self._send_hangup(key, call))

    def _owner(self, message: Message) -> str | None:
        for header in ("Linkedid", "DestLinkedid", "Uniqueid"):
            value = message.get(header)
            if value is not None and value in self._calls:
                return value
        action_id = message.action_id
        return self._by_action.get(action_id) if action_id is not None else None

    def _report(self, key: str, call: _Call, steps: list[Progress]) -> None:
        for step in steps:
            call.sink(CallEvent(call.uniqueid, step.state, self._clock(), step.result, step.cause))
        if call.tracker.ended:
            self._forget(key)

    def _overdue(self, key: str) -> None:
        """Past its longest possible life: hang it up; if no Hangup event follows, end it.

        This also keeps a call from staying "ringing" forever when the AMI account cannot
        read call events (manager.conf `read = call` missing).
        """
        call = self._calls.get(key)
        if call is None:
            return
        call.tracker.hangup_requested("click2call (maximum call length)")
        self._in_background(self._send_hangup(key, call))
        grace = self._settings.end_grace
        call.deadline = asyncio.get_running_loop().call_later(grace, self._give_up, key)

    def _give_up(self, key: str) -> None:
        call = self._calls.get(key)
        if call is not None and call.link_lost is not None:
            cause = f"AMI link to the PBX lost ({call.link_lost}) and not back in time"
        else:
            cause = "the PBX reported no end for this call in time (are call events readable?)"
        self._end_in_error(key, cause)

    # --- a lost link, and the reconciliation after it ---------------------------------

    def _on_link_lost(self, reason: str) -> None:
        for call in self._calls.values():
            call.link_lost = call.link_lost or reason
        if self._calls:
            log.warning("%d call(s) in flight while the AMI link is down", len(self._calls))

    def _on_connected(self) -> None:
        if any(call.link_lost is not None for call in self._calls.values()):
            self._in_background(self._reconcile())

    async def _reconcile(self) -> None:
        """Re-find the calls we lost sight of in the PBX's channel list."""
        try:
            action = actions.core_show_channels(self.client.next_action_id())
            listing = await self.client.request(action, in_order=self._listed)
            if not listing.ok:  # e.g. "Permission denied": no system/reporting class
                action = actions.status(self.client.next_action_id())
                await self.client.request(action, in_order=self._reconciled)
        except AmiUnavailable as exc:
            log.warning("channel list not read (%s); trying again", exc)
            if self.client.connected:  # it timed out on a live link: ask again later
                loop = asyncio.get_running_loop()
                loop.call_later(self._settings.action_timeout, self._on_connected)
            # else the next login asks again

    def _listed(self, reply: Reply) -> None:
        if reply.ok:  # else Status is asked next
            self._reconciled(reply)

    def _reconciled(self, reply: Reply) -> None:
        # Called in stream order: a Hangup after the list finds the call reconciled.
        for key, call in list(self._calls.items()):
            if call.link_lost is None:
                continue  # placed after the link came back
            if not reply.ok:
                refused = reply.response.get("Message", "refused")
                self._end_in_error(
                    key,
                    f"AMI link to the PBX lost ({call.link_lost}); the call's outcome is "
                    f"unknown (Status: {refused})",
                )
                continue
            call.link_lost = None
            for item in reply.items:
                if item.get("Uniqueid") == key:
                    call.channel = call.channel or item.get("Channel")
            self._report(key, call, call.tracker.reconcile(reply.items, call.away))
            if call.hangup_pending and key in self._calls:
                self._in_background(self._send_hangup(key, call))

    def _end_in_error(self, key: str, cause: str) -> None:
        """End a call we can no longer follow on the PBX."""
        call = self._calls.get(key)
        if call is None:
            return
        call.sink(CallEvent(call.uniqueid, CallState.ENDED, self._clock(), Result.ERROR, cause))
        self._forget(key)

    def _forget(self, key: str) -> None:
        call = self._calls.pop(key, None)
        if call is not None:
            if call.tracker.action_id is not None:
                self._by_action.pop(call.tracker.action_id, None)
            if call.deadline is not None:
                call.deadline.cancel()
