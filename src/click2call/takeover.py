"""Nodes watch each other through the database, and take over a lost node's calls.

Every node writes a heartbeat each `[server] heartbeat_interval` and, at the same pace,
claims the nodes silent for longer than `[server] node_lease` (store/nodes.py: each lost
node is claimed by one survivor). The survivor ends each claimed call the way its
engine can without the lost process: SIP calls with the CANCEL/BYE their stored
dialogs give, Asterisk calls with a Hangup over the survivor's own AMI link, and calls
with nothing to end on the wire only in the store; every one is stored ended (`error`)
with a cause naming both nodes. A node restarted within the lease beats again before
anyone claims it, and keeps its calls (runtime.py resumes them).

`ending_for`, `may_take_over` and `takeover_cause` are the decisions, pure; `NodeWatch`
is the loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import logging
from collections.abc import Callable, Mapping
from datetime import datetime, timedelta

from click2call.calls import CallState, Result
from click2call.engines.asterisk.engine import AsteriskEngine
from click2call.engines.base import Clock, Engine
from click2call.engines.sip import SipEngine
from click2call.errors import DatabaseUnavailable
from click2call.store.nodes import Claim, NodeRegistry, OrphanCall
from click2call.store_threads import StoreThreads

log = logging.getLogger("click2call.nodes")
Ender = Callable[[str, Result, str], None]  # tracking.end: uniqueid, result, cause


class Ending(enum.Enum):
    SIP_DIALOGS = "sip"  # CANCEL/BYE from the stored dialogs
    AMI_HANGUP = "ami"  # Hangup over this node's AMI link
    STORE_ONLY = "store"  # nothing to reach on the wire: only the row ends


def ending_for(call: OrphanCall, engine: Engine | None) -> Ending:
    """How a survivor ends a lost node's call: a queued call never reached the wire; a
    SIP call needs its stored dialogs (none: its INVITE had not left, or it predates
    them); an Asterisk call runs on the PBX, which any node's link reaches."""
    if call.state is CallState.QUEUED:
        return Ending.STORE_ONLY
    if isinstance(engine, SipEngine) and call.sip_state is not None:
        return Ending.SIP_DIALOGS
    if isinstance(engine, AsteriskEngine):
        return Ending.AMI_HANGUP
    return Ending.STORE_ONLY


def may_take_over(beating_since: datetime | None, now: datetime, lease: timedelta) -> bool:
    """Only a node that has itself beaten without a break for a whole lease judges others:
    after a database outage every node's heartbeat is old, and the others need that long
    to be seen beating again before any of them looks lost."""
    return beating_since is not None and now - beating_since >= lease


def takeover_cause(lost: str, survivor: str) -> str:
    return f"node {lost} stopped heartbeating; ended by node {survivor}"


TAKEOVER_HANGUPS = 32  # a lost node's calls hung up at once: its PBX answers each in turn


class NodeWatch:
    def __init__(
        self,
        registry: NodeRegistry,
        node: str,
        engines: Mapping[str, Engine],
        end: Ender,
        clock: Clock,
        interval: float,
        lease: float,
        threads: StoreThreads,
    ) -> None:
        self._registry = registry
        self._node = node
        self._engines = engines
        self._end = end
        self._clock = clock
        self._interval = interval
        self._lease = timedelta(seconds=lease)
        self._threads = threads
        self._runner: asyncio.Task[None] | None = None
        self._stopping = asyncio.Event()
        self._beating_since: datetime | None = None  # None: the last beat failed
        # Take-overs run beside the heartbeat: hanging up waits on PBXs (an unanswered AMI
        # Hangup, 5 s each), and a survivor silent past the lease would be judged lost.
        self._takeovers: set[asyncio.Task[None]] = set()

    def join(self) -> None:
        """The first heartbeat, before this node looks at its own calls: from now on no
        survivor claims them (a restart within the lease keeps them)."""
        now = self._clock()
        self._registry.beat(now)
        self._beating_since = now

    def start(self) -> None:
        self._runner = asyncio.create_task(self._run())

    async def stop(self) -> None:
        """Stop beating and taking over, as a stop begins: a node ending its own calls
        takes on no more. Its row stays (a stop cut short is still taken over).

        A round under way is let finish: calls it claimed are this node's alone, and
        would stay in flight for ever if the claim committed and nobody ended them. Only a
        database that hangs past its timeout twice gets the round cancelled."""
        if self._runner is None:
            return
        self._stopping.set()
        try:
            async with asyncio.timeout(2 * self._threads.timeout + 1):
                await self._runner
        except TimeoutError:
            log.error("node watch stopped in the middle of a round: the database hangs")
        except asyncio.CancelledError:  # the stop itself was cancelled
            self._runner.cancel()
            raise
        # Claimed calls are this node's alone: their take-over ends (each hang-up is
        # bounded by its engine's own timeout).
        await asyncio.gather(*self._takeovers, return_exceptions=True)

    async def leave(self) -> None:
        """The node ended its calls itself: its row goes, nobody is to take over."""
        with contextlib.suppress(DatabaseUnavailable):
            await self._threads.run(self._registry.leave)

    async def _run(self) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self._interval):
                    await self._stopping.wait()
            if self._stopping.is_set():
                return
            try:
                await self._beat_and_sweep()
            except DatabaseUnavailable as exc:
                self._beating_since = None
                log.warning("node heartbeat not written, database unavailable: %s", exc.reason)
            except Exception:
                self._beating_since = None
                log.exception("node heartbeat or takeover failed; trying again")

    async def _beat_and_sweep(self) -> None:
        now = self._clock()
        if not await self._threads.run(self._registry.beat, now):
            log.error(
                "node %s had stopped heartbeating for longer than the lease: another node "
                "may have taken over its calls",
                self._node,
            )
        self._beating_since = self._beating_since or now
        if not may_take_over(self._beating_since, now, self._lease):
            return
        claims = await self._threads.finish(self._registry.claim_lost, self._clock(), self._lease)
        for claim in claims:
            task = asyncio.create_task(self._take_over(claim), name=f"takeover-{claim.node}")
            self._takeovers.add(task)
            task.add_done_callback(self._takeovers.discard)

    async def _take_over(self, claim: Claim) -> None:
        log.warning(
            "node %s silent since %s: taking over its %d live call(s)",
            claim.node,
            claim.silent_since.isoformat(),
            len(claim.calls),
        )
        cause = takeover_cause(claim.node, self._node)
        room = asyncio.Semaphore(TAKEOVER_HANGUPS)

        async def end(call: OrphanCall) -> None:
            try:
                async with room:
                    await self._hang_up(call)
            except Exception as exc:  # the row ends all the same: nothing stays in flight
                log.error("call %s of lost node %s not hung up: %s", call.uniqueid, claim.node, exc)
            self._end(call.uniqueid, Result.ERROR, cause)

        await asyncio.gather(*(end(call) for call in claim.calls))

    async def _hang_up(self, call: OrphanCall) -> None:
        engine = self._engines.get(call.tenant)
        match ending_for(call, engine):
            case Ending.SIP_DIALOGS:
                assert isinstance(engine, SipEngine)
                assert call.sip_state is not None
                sent = engine.end_orphan(call.uniqueid, call.sip_state)
                log.info("call %s taken over: sent %s", call.uniqueid, ", ".join(sent))
            case Ending.AMI_HANGUP:
                assert isinstance(engine, AsteriskEngine)
                await engine.end_orphan(call.uniqueid)
            case Ending.STORE_ONLY:
                pass
