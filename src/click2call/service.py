"""CallService: the one path every request takes, from any endpoint.

A thin conductor: `numbers` checks and formats, `policy` decides, `tracking` records,
the engine dials. It places and hangs up calls; their progress is tracking.py's.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from click2call import logs
from click2call.calls import (
    Agent,
    CallOrder,
    CallState,
    Destination,
    Extension,
    External,
    Result,
    Tech,
)
from click2call.engines.base import Engine, EngineHealth
from click2call.errors import CallNotFound, Click2CallError, Rejected, UnknownTenant
from click2call.hangup_relay import HangupRelay
from click2call.numbers import PhoneNumber, parse_caller_id, parse_extension, parse_phone
from click2call.policy import Limits, check_call, check_callback
from click2call.settings import Settings, TenantSettings
from click2call.store import (
    CallTimeouts,
    NewCall,
    Store,
    StoredCall,
    StoredEvent,
    Subscription,
)
from click2call.store_threads import StoreThreads
from click2call.tracking import Tracking


@dataclass(frozen=True, slots=True)
class _Plan:
    """A request interpreted for its tenant: the row to store and the legs to dial."""

    record: NewCall
    agent: Agent
    destination: Destination
    dialled: PhoneNumber  # the destination as phonenumbers read it, for the policy
    agent_phone: PhoneNumber | None  # a mobile agent's number, which also goes out


@dataclass(frozen=True, slots=True)
class CallRequest:
    """A call as an endpoint received it: field grammar checked, numbers not yet interpreted."""

    tenant: str
    destination: str
    extension: str | None = None
    tech: Tech | None = None
    phone: str | None = None
    outboundcid: str | None = None
    foreignid: str | None = None
    callback_url: str | None = None  # grammar checked; the tenant's hosts not yet
    widget_token: str | None = None  # the widget token placing it (its id)


class CallService:
    def __init__(
        self,
        settings: Settings,
        store: Store,
        engines: Mapping[str, Engine],
        tracking: Tracking,
        limits: Limits,
        threads: StoreThreads,
        hangups: HangupRelay | None = None,
    ) -> None:
        """`hangups`: how a hang-up reaches the node that owns the call (several nodes)."""
        self._settings = settings
        self._store = store
        self._engines = engines
        self._tracking = tracking
        # Bound once: an engine keeps the sink of each live call, thousands at once.
        self._on_event = tracking.on_event
        self._limits = limits
        self._threads = threads
        self._hangups = hangups

    async def place(self, request: CallRequest) -> StoredCall:
        """Check the call against the tenant's rules and limits, store it, hand it on.

        Raises InvalidInput, UnknownTenant or RateLimited before anything is stored;
        Rejected (policy) and engine errors with the stored, ended call's ids attached.
        """
        tenant = self._tenant(request.tenant)
        plan = self._interpret(request, tenant)
        callback = self._callback(request.callback_url, tenant)
        policy, region = tenant.policy, tenant.region
        try:
            check_call(request.outboundcid, plan.dialled, plan.agent_phone, policy, region)
        except Rejected as exc:
            # A refused call is kept, with the rule that refused it.
            call = (await self._tracking.create(plan.record, callback)).call
            exc.left_call(call.id, call.uniqueid)
            await self._tracking.end_now(call.uniqueid, Result.REJECTED, exc.message)
            raise
        # This node's limits first (no database work for a refusal), then the cluster's,
        # counted in the database as the call is stored.
        self._limits.admit_call(tenant.name, plan.agent.number, tenant.limits)
        call = (await self._tracking.create(plan.record, callback, tenant.limits)).call
        logs.set_call(call.id, call.uniqueid)  # the engine's lines about it say so
        self._limits.started(tenant.name, plan.agent.number, call.uniqueid)
        order = self._order(call, tenant, plan)
        try:
            await self._engines[tenant.name].originate(order, self._on_event)
        except Click2CallError as exc:
            exc.left_call(call.id, call.uniqueid)
            await self._tracking.end_now(call.uniqueid, Result.ERROR, exc.message)
            raise
        return call

    async def hangup(self, key: str, tenant: str | None = None) -> StoredCall:
        # The store in a thread: the event loop carries the engines' signalling.
        call = await self._threads.run(self.get, key, tenant)
        if call.state is CallState.ENDED:
            return call
        if self._hangups is not None and self._hangups.owned_elsewhere(call):
            await self._threads.run(self._hangups.forward, call)
        else:
            await self._engines[call.tenant].hangup(call.uniqueid)
        return call

    def get(self, key: str, tenant: str | None = None) -> StoredCall:
        """A call by integer id or by `epoch.seq` uniqueid, optionally within one tenant."""
        call = (
            self._store.get(int(key))
            if key.isdigit() and len(key) < 18
            else self._store.get_by_uniqueid(key)
        )
        if call is None or (tenant is not None and call.tenant != tenant):
            raise CallNotFound(key)
        return call

    def history(self, call: StoredCall) -> list[StoredEvent]:
        return self._store.events(call)

    def health(self) -> dict[str, EngineHealth]:
        return {name: engine.health() for name, engine in self._engines.items()}

    # --- steps -------------------------------------------------------------------------

    def _tenant(self, name: str) -> TenantSettings:
        tenant = self._settings.tenant(name)
        if tenant is None:
            raise UnknownTenant(name)
        return tenant

    def _callback(self, url: str | None, tenant: TenantSettings) -> Subscription | None:
        if url is None:
            return None
        check_callback(url, tenant.callbacks)
        events = frozenset(tenant.callbacks.events) or None
        return Subscription(url, events)

    def _interpret(self, request: CallRequest, tenant: TenantSettings) -> _Plan:
        number_format = tenant.trunk_number_format
        dialled = parse_phone(
            "destination", request.destination, tenant.region, allow_internal=True
        )
        destination = Destination(
            dialled.for_trunk(number_format), via_trunk=not dialled.is_internal
        )
        agent: Agent
        phone = None
        if request.extension is not None:
            agent = Extension(
                request.tech or Tech.SIP, parse_extension("extension", request.extension)
            )
            configured = tenant.extensions.get(agent.number)
            agent_default_cid = configured.outbound_cid if configured else None
        else:
            phone = parse_phone("phone", request.phone or "", tenant.region, allow_internal=False)
            agent = External(phone.for_trunk(number_format))
            agent_default_cid = None
        outboundcid = (
            parse_caller_id("outboundcid", request.outboundcid) if request.outboundcid else None
        )
        record = NewCall(
            tenant=tenant.name,
            agent_kind=agent.kind.value,
            agent_tech=agent.tech.value if isinstance(agent, Extension) else None,
            agent_number=agent.number,
            destination=destination.number,
            # Shown to the destination: the request's caller ID, else the extension's, else
            # the tenant's; with none configured, the agent's own number (the PBX maps it).
            destination_caller_id=outboundcid
            or agent_default_cid
            or tenant.default_outbound_cid
            or agent.number,
            agent_caller_id=dialled.digits,  # the agent sees whom they are about to call
            foreignid=request.foreignid,
            widget_token=request.widget_token,
            timeouts=CallTimeouts(
                tenant.agent_ring_timeout, tenant.destination_ring_timeout, tenant.max_call_seconds
            ),
        )
        return _Plan(record, agent, destination, dialled, phone)

    def _order(self, call: StoredCall, tenant: TenantSettings, plan: _Plan) -> CallOrder:
        timeouts = plan.record.timeouts
        assert timeouts is not None  # _interpret sets them
        return CallOrder(
            call_id=call.id,
            uniqueid=call.uniqueid,
            tenant=tenant.name,
            agent=plan.agent,
            destination=plan.destination,
            destination_caller_id=plan.record.destination_caller_id,
            agent_caller_id=plan.record.agent_caller_id,
            # As stored with the call: a resumed call is bound by the same (runtime.py).
            agent_ring_timeout=timeouts.agent_ring_timeout,
            destination_ring_timeout=timeouts.destination_ring_timeout,
            max_call_seconds=timeouts.max_call_seconds,
            variables={"FOREIGNID": plan.record.foreignid} if plan.record.foreignid else {},
        )
