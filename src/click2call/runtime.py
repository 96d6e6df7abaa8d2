"""The composition root: builds the store, the engines and the service from the settings."""

from __future__ import annotations

import asyncio
import logging
import socket
import time
from datetime import UTC, datetime, timedelta

from click2call import logs
from click2call.auth import needs_setup
from click2call.calls import Result
from click2call.engines.asterisk.engine import AsteriskEngine
from click2call.engines.base import Clock, Engine
from click2call.engines.sip import SipEndpoint, SipEngine
from click2call.errors import DatabaseUnavailable, EngineUnavailable
from click2call.hangup_relay import HangupRelay
from click2call.metrics import Metrics
from click2call.policy import Limits
from click2call.service import CallService
from click2call.settings import Settings
from click2call.store import (
    Change,
    KeyStore,
    Outbox,
    SessionStore,
    Store,
    StoredCall,
    Subscription,
    open_database,
    outage,
)
from click2call.store.admission import KeyRequests
from click2call.store.hangup_requests import HangupRequests
from click2call.store.nodes import NodeRegistry
from click2call.store_threads import StoreThreads
from click2call.takeover import NodeWatch
from click2call.tracking import Tracking
from click2call.webhooks.delivery import Deliverer

log = logging.getLogger("click2call")


def utc_now() -> datetime:
    return datetime.now(UTC)


class Runtime:
    def __init__(self, settings: Settings, clock: Clock = utc_now) -> None:
        self.settings = settings
        database = open_database(settings.server.database)
        self.database = database
        self.clock = clock
        self.node = settings.server.node_id or f"{socket.gethostname()}:{settings.server.port}"
        self.store = Store(database, self.node)
        # Room in the PostgreSQL pool (store/database.py: 40) beside the writer threads;
        # the pollers' own, so requests filling theirs never hold up a heartbeat.
        self.store_threads = StoreThreads(32, settings.server.database_timeout)
        self.poller_threads = StoreThreads(4, settings.server.database_timeout)
        self.keys = KeyStore(database)
        self.key_requests = KeyRequests(database)  # key_requests_per_minute, cluster-wide
        hooks = settings.webhooks
        # Longer than any one attempt can last: a live node's lease never runs out under it.
        lease = timedelta(seconds=2 * (hooks.connect_timeout + hooks.read_timeout) + 10)
        self.outbox = Outbox(database, self.node, lease)
        self.sessions = SessionStore(database)
        self.sip_endpoint = SipEndpoint(settings.sip)
        self.engines: dict[str, Engine] = {
            tenant.name: AsteriskEngine(tenant, clock)
            if tenant.engine == "asterisk"
            else SipEngine(tenant, self.sip_endpoint, clock, save=self._save_sip_state)
            for tenant in settings.tenants
        }
        self.limits = Limits(time.monotonic)
        self.tracking = Tracking(self.store, self.limits, clock, self.store_threads.timeout)
        self.hangups = HangupRelay(
            HangupRequests(database, self.node), self.node, self.engines, clock, self.poller_threads
        )
        server = settings.server
        self.watch = NodeWatch(
            NodeRegistry(database, self.node),
            self.node,
            self.engines,
            self.tracking.end,
            clock,
            server.heartbeat_interval,
            server.node_lease,
            self.poller_threads,
        )
        self.service = CallService(
            settings,
            self.store,
            self.engines,
            self.tracking,
            self.limits,
            self.store_threads,
            self.hangups,
        )
        self.metrics = Metrics(
            self.service.health, self.outbox.backlog, lambda: self.tracking.audit_dropped
        )
        self.tracking.subscribe(self.metrics.on_change)
        self.tracking.subscribe(logs.log_change)
        self.deliverer = Deliverer(
            settings, self.outbox, clock, self.poller_threads, observe=self.metrics.delivery
        )
        # Only a change that queued a delivery: waking the deliverer for every stored change
        # read the outbox (two thread hops and a transaction) up to 200 times a second in
        # each worker under load, with nothing to send; retries come with its poll.
        self.tracking.subscribe(self._wake_deliverer)

    def _wake_deliverer(self, change: Change) -> None:
        if change.deliveries:
            self.deliverer.wake()

    async def database_problem(self) -> str | None:
        """None when the database answers; else why not (for the health check), also when
        it does not answer at all."""
        try:
            return await self.store_threads.run(outage.check, self.database)
        except DatabaseUnavailable as exc:
            return exc.reason

    async def start(self) -> None:
        self._warn_about_access()
        self.outbox.sync_config(
            {
                tenant.name: [
                    Subscription(w.url, frozenset(w.events) or None) for w in tenant.webhooks
                ]
                for tenant in self.settings.tenants
            },
            self.clock(),
        )
        self.outbox.release_own()
        self.watch.join()  # before looking at our calls: nobody takes them over from here
        resumable = self.store.sip_states()
        on_the_pbx = self._asterisk_calls_in_flight()
        recovered = self.tracking.recover(resumed=resumable.keys() | on_the_pbx.keys())
        self.tracking.start()
        self.hangups.start()
        self.deliverer.start()
        if recovered:
            log.warning("marked %d call(s) left in flight by the previous run as ended", recovered)
        for call in on_the_pbx.values():
            engine = self.engines[call.tenant]
            assert isinstance(engine, AsteriskEngine)
            # The timeouts it was placed with, whatever the configuration says now; the
            # tenant's for a call stored before calls kept theirs.
            placed = call.timeouts or self.settings.tenant(call.tenant)
            assert placed is not None
            engine.resume(
                call.uniqueid, call.state, call.created_at, self.tracking.on_event, placed
            )
        if on_the_pbx:
            log.warning("looking for %d Asterisk call(s) of the previous run", len(on_the_pbx))
        for engine in self.engines.values():
            await engine.start()
        self._resume_sip_calls(resumable)
        self.watch.start()  # engines up first: a takeover ends calls through them

    def _asterisk_calls_in_flight(self) -> dict[str, StoredCall]:
        """The calls a previous run left in flight on an Asterisk tenant's PBX, where they
        go on without us: the engine looks for them again once logged in."""
        found = {}
        for uniqueid in self.store.active_uniqueids():
            call = self.store.get_by_uniqueid(uniqueid)
            if call is not None and isinstance(self.engines.get(call.tenant), AsteriskEngine):
                found[uniqueid] = call
        return found

    def _save_sip_state(self, uniqueid: str, state: str) -> None:
        self.tracking.save_sip_state(uniqueid, state)

    def _resume_sip_calls(self, stored: dict[str, str]) -> None:
        """Go on with the SIP calls a previous run of this node left in flight, from their
        stored dialogs: connected ones continue, the others end cleanly."""
        for uniqueid, state in stored.items():
            call = self.store.get_by_uniqueid(uniqueid)
            engine = self.engines.get(call.tenant) if call is not None else None
            try:
                if call is None or not isinstance(engine, SipEngine):
                    raise ValueError("its tenant no longer uses the SIP engine")
                since = call.connected_at
                connected = (self.clock() - since).total_seconds() if since else 0.0
                engine.resume(uniqueid, state, connected, self.tracking.on_event)
            except (ValueError, EngineUnavailable) as exc:
                log.error("call %s left by the previous run cannot go on: %s", uniqueid, exc)
                cause = "server stopped while the call was in progress"
                self.tracking.end(uniqueid, Result.ERROR, cause)
        if stored:
            log.warning("took back %d SIP call(s) left in flight by the previous run", len(stored))

    def _warn_about_access(self) -> None:
        for tenant in self.settings.tenants:
            if tenant.auth.allow_unauthenticated:
                log.warning(
                    "tenant %s accepts calls from anyone who can reach this server "
                    "(allow_unauthenticated = true)",
                    tenant.name,
                )
            elif needs_setup(
                tenant, any(k.revoked_at is None for k in self.keys.listing(tenant.name))
            ):
                log.warning(
                    "tenant %s refuses every call: create a key (click2call keys create "
                    "--tenant %s), or set link_secret or allowed_ips",
                    tenant.name,
                    tenant.name,
                )

    async def close(self) -> None:
        await self.watch.stop()
        await self.hangups.close()
        for engine in self.engines.values():
            await engine.close()
        await asyncio.sleep(0)  # events the engines handed over as they closed reach tracking
        if await self.tracking.close():
            await self.watch.leave()  # its calls' endings are stored: nothing to take over
        else:  # a survivor ends them from the store once the lease has run out
            log.error("node %s keeps its row: not every call's ending was stored", self.node)
        await self.deliverer.close()
        self.sip_endpoint.stop()
        # The pollers are stopped, but a thread of theirs may still hold a connection.
        await self.store_threads.close()
        await self.poller_threads.close()
        self.store.close()
