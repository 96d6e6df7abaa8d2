"""The delivery worker: sends what the outbox says is due, and records every attempt.

Woken when a call event is stored (and every `poll_interval` for retries), it sends
each due delivery at most once at a time, never more than `max_in_flight` requests in
all, `max_in_flight_per_tenant` per tenant and `max_in_flight_per_endpoint` per endpoint,
so one slow receiver holds only its own deliveries back, and one tenant's many slow ones
(a caller may name a callback_url per call) only that tenant's. Redirects are not
followed and only a short excerpt of a reply is kept. What is sent and when is decided
in schedule.py; the bytes signed in signing.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

import httpx

from click2call.engines.base import Clock
from click2call.errors import DatabaseUnavailable
from click2call.settings import Settings
from click2call.store import Attempt, Delivery, Outbox
from click2call.store.outbox import DELIVERED, FAILED, PENDING, Settled
from click2call.store_threads import StoreThreads
from click2call.webhooks import signing
from click2call.webhooks.pinning import Refused, Resolve, Target, pinned_targets, resolve
from click2call.webhooks.schedule import Outcome, decide, parse_retry_after
from click2call.webhooks.urls import is_public, listed

log = logging.getLogger("click2call.webhooks")
EXCERPT_BYTES = 256
# After a wake-up, gather what else arrives this long, then read the outbox once: under
# load one query and one transaction serve many events instead of one each.
BATCH_WINDOW = 0.005


class Deliverer:
    def __init__(
        self,
        settings: Settings,
        outbox: Outbox,
        clock: Clock,
        threads: StoreThreads,
        random_fraction: Callable[[], float] = random.random,
        observe: Callable[[str], None] = lambda _outcome: None,
        resolver: Resolve = resolve,
        address_allowed: Callable[[str], bool] = is_public,
    ) -> None:
        self._settings = settings
        self._delivery = settings.webhooks
        self._outbox = outbox
        self._clock = clock
        self._threads = threads
        self._random = random_fraction
        self._observe = observe  # told each attempt's outcome (metrics)
        self._resolve = resolver
        self._address_allowed = address_allowed  # for a callback_url's addresses
        self._wake = asyncio.Event()
        self._in_flight: dict[int, asyncio.Task[None]] = {}  # outbox id → its request
        self._per_endpoint: dict[int, int] = {}
        self._per_tenant: dict[str, int] = {}
        self._settled: list[Settled] = []  # attempts made, not yet written
        self._gone: list[tuple[int, datetime]] = []  # endpoints that answered 410
        self._client: httpx.AsyncClient | None = None
        # Callbacks pinned to an address: no connection kept for another request, which
        # could be for another name at that address whose certificate was never checked.
        self._pinned_client: httpx.AsyncClient | None = None
        self._runner: asyncio.Task[None] | None = None

    def wake(self) -> None:
        """Something was queued: look at the outbox now rather than at the next poll."""
        self._wake.set()

    def start(self) -> None:
        timeout = httpx.Timeout(self._delivery.read_timeout, connect=self._delivery.connect_timeout)
        self._client = _client(timeout)
        self._pinned_client = _client(timeout, httpx.Limits(max_keepalive_connections=0))
        self._runner = asyncio.create_task(self._run(), name="webhook-delivery")

    async def close(self) -> None:
        """Stop sending; what is still pending stays in the outbox for the next start."""
        if self._runner is not None:
            self._runner.cancel()
            await asyncio.gather(self._runner, return_exceptions=True)
        tasks = list(self._in_flight.values())
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        try:
            # Bounded here: no later round would write them twice, and a database that
            # hangs must not hold up the shutdown.
            async with asyncio.timeout(self._threads.timeout):
                await self._write_settled()
        except TimeoutError:
            log.error("webhook attempts not written at shutdown: the database did not answer")
        except Exception:
            # Unwritten attempts are sent again after a restart, with the same webhook-id.
            log.exception("webhook attempts could not be written at shutdown")
        for client in (self._client, self._pinned_client):
            if client is not None:
                await client.aclose()

    async def _run(self) -> None:
        while True:
            self._wake.clear()
            # Each on its own: attempts the database will not take yet must not stop the
            # sending (the ones unwritten are in `busy`, never claimed twice).
            for step in (self._write_settled, self._dispatch):
                try:
                    await step()
                except DatabaseUnavailable as exc:
                    # Health reports the outage; one line per poll is enough here.
                    log.warning("webhook outbox unreadable, database unavailable: %s", exc.reason)
                except Exception:
                    # A database hiccup must not end delivery for the life of the process.
                    log.exception("webhook outbox could not be read or written; trying again")
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self._delivery.poll_interval):
                    await self._wake.wait()
            await asyncio.sleep(BATCH_WINDOW)

    async def _write_settled(self) -> None:
        """Write finished attempts before the outbox is read again: a delivered row must
        not look due. In a thread (the database must not hold up the event loop), while
        the attempts finishing meanwhile gather for the next round; kept for the next
        round if the database refuses them."""
        settled, gone = self._settled, self._gone
        if not settled and not gone:  # no thread hop for nothing (most rounds)
            return
        self._settled, self._gone = [], []
        try:
            # Waited for however long it takes, and carried to its end even if this round
            # is cancelled (close): given up on, it could still commit, and written again
            # its attempts would be stored twice.
            await self._threads.finish(self._outbox.settle, settled)
        except asyncio.CancelledError:
            self._gone[:0] = gone  # the attempts are being written; the 410s are not yet
            raise
        except BaseException:
            self._settled[:0], self._gone[:0] = settled, gone
            raise
        for i, (endpoint_id, at) in enumerate(gone):
            why = "the receiver answered 410 Gone"
            try:
                await self._threads.run(self._outbox.disable_endpoint, endpoint_id, why, at)
            except BaseException:
                self._gone[:0] = gone[i:]
                raise

    async def _dispatch(self) -> None:
        room = self._delivery.max_in_flight - len(self._in_flight)
        if room <= 0:
            return
        cap = self._delivery.max_in_flight_per_endpoint
        tenant_cap = self._delivery.max_in_flight_per_tenant
        full = {endpoint for endpoint, taken in self._per_endpoint.items() if taken >= cap}
        full_tenants = {tenant for tenant, taken in self._per_tenant.items() if taken >= tenant_cap}
        left_over = []
        # Sent but not yet written as such (finished while the last write ran): not due.
        busy = set(self._in_flight) | {s.delivery.outbox_id for s in self._settled}
        due = await self._threads.run(
            self._outbox.claim, self._clock(), room, busy, full, full_tenants
        )
        for delivery in due:
            taken = self._per_endpoint.get(delivery.endpoint_id, 0)
            if taken >= cap or self._per_tenant.get(delivery.tenant, 0) >= tenant_cap:
                left_over.append(delivery.outbox_id)
                continue
            self._per_endpoint[delivery.endpoint_id] = taken + 1
            self._per_tenant[delivery.tenant] = self._per_tenant.get(delivery.tenant, 0) + 1
            task = asyncio.create_task(self._deliver(delivery))
            self._in_flight[delivery.outbox_id] = task
            task.add_done_callback(self._finished_callback(delivery))
        if left_over:  # claimed, not sent now: free them at once, not when the lease ends
            await self._threads.run(self._outbox.release, left_over)

    def _finished_callback(self, delivery: Delivery) -> Callable[[asyncio.Task[None]], None]:
        return lambda _task: self._finished(delivery)

    def _finished(self, delivery: Delivery) -> None:
        self._in_flight.pop(delivery.outbox_id, None)
        _release(self._per_endpoint, delivery.endpoint_id)
        _release(self._per_tenant, delivery.tenant)
        self._wake.set()  # the call's next event may be due now

    def _secret(self, delivery: Delivery) -> str | None:
        tenant = self._settings.tenant(delivery.tenant)
        if tenant is None:
            return None
        if delivery.for_call:
            secret = tenant.callbacks.secret.get_secret_value()
            return secret or None
        for webhook in tenant.webhooks:
            if webhook.url == delivery.url:
                return webhook.secret.get_secret_value()
        return None

    async def _deliver(self, delivery: Delivery) -> None:
        started_at = self._clock()
        secret = self._secret(delivery)
        if secret is None:
            attempt = Attempt(started_at, None, "no secret configured for this endpoint", None, 0)
            self._settled.append(Settled(delivery, attempt, FAILED))
            self._observe("no_secret")
            return
        body = delivery.payload.encode()
        headers = signing.headers(secret, delivery.message_id, int(started_at.timestamp()), body)
        started = time.perf_counter()
        status: int | None = None
        error: str | None = None
        excerpt: str | None = None
        retry_after: float | None = None
        deadline = self._delivery.connect_timeout + self._delivery.read_timeout
        try:
            # One deadline for the whole attempt: a receiver dribbling a byte now and then
            # must not hold a slot (per-read timeouts alone would let it).
            async with asyncio.timeout(deadline):
                targets = await self._targets(delivery)
                for i, target in enumerate(targets):
                    try:
                        status, excerpt, retry_after = await self._post(
                            target, body, headers, started_at
                        )
                        break
                    except httpx.ConnectError:
                        if i == len(targets) - 1:  # the host's other addresses first
                            raise
                if status is not None and not 200 <= status < 300:
                    error = f"HTTP {status}"
        except Refused as exc:
            error = str(exc)
        except TimeoutError:
            error = f"no complete reply within {deadline:g} s"
        except Exception as exc:
            # Any failure is an attempt that failed (retried), never a delivery stuck pending.
            error = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
        attempt = Attempt(started_at, status, error, excerpt, time.perf_counter() - started)
        self._settle(delivery, attempt, retry_after)

    async def _post(
        self, target: Target, body: bytes, headers: dict[str, str], started_at: datetime
    ) -> tuple[int, str | None, float | None]:
        """One POST: the reply's status, the start of its body, its Retry-After in seconds."""
        client = self._pinned_client if target.pinned else self._client
        assert client is not None
        async with client.stream(
            "POST",
            target.url,
            content=body,
            headers=headers | target.headers,
            extensions=target.extensions,
        ) as reply:
            retry_after = parse_retry_after(reply.headers.get("retry-after"), started_at)
            return reply.status_code, await _excerpt(reply), retry_after

    async def _targets(self, delivery: Delivery) -> list[Target]:
        """Where to send: a call's own callback_url only to the public addresses its host
        resolved to, checked and pinned (SSRF, DNS rebinding: pinning.py), unless the tenant
        listed the host. Tenant webhooks come from the operator's configuration and are
        trusted: httpx resolves them itself."""
        if delivery.for_call:
            tenant = self._settings.tenant(delivery.tenant)
            allowed = tenant.callbacks.allowed_hosts if tenant else []
            if not listed(delivery.url, allowed):
                return await pinned_targets(delivery.url, self._resolve, self._address_allowed)
        return [Target(httpx.URL(delivery.url))]

    def _settle(self, delivery: Delivery, attempt: Attempt, retry_after: float | None) -> None:
        decision = decide(
            attempt.status,
            delivery.attempts + 1,
            self._delivery.retry_schedule,
            retry_after,
            self._delivery.jitter,
            self._random,
        )
        self._observe(decision.outcome.value)
        if decision.outcome is Outcome.DELIVERED:
            self._settled.append(Settled(delivery, attempt, DELIVERED))
        elif decision.outcome is Outcome.RETRY:
            assert decision.wait is not None
            next_at: datetime = self._clock() + timedelta(seconds=decision.wait)
            self._settled.append(Settled(delivery, attempt, PENDING, next_at))
            log.info(
                "webhook %s to %s failed (%s); retry in %.0f s",
                delivery.message_id,
                delivery.url,
                attempt.error,
                decision.wait,
            )
        elif decision.outcome is Outcome.ENDPOINT_GONE:
            self._settled.append(Settled(delivery, attempt, FAILED))
            self._gone.append((delivery.endpoint_id, attempt.at))
            log.warning("webhook endpoint %s answered 410 Gone: disabled", delivery.url)
        else:
            self._settled.append(Settled(delivery, attempt, FAILED))
            log.warning(
                "webhook %s to %s given up after %d attempts (%s)",
                delivery.message_id,
                delivery.url,
                delivery.attempts + 1,
                attempt.error,
            )


def _release(taken: dict[Any, int], key: object) -> None:
    """One request fewer in flight for `key`; forgotten at none."""
    left = taken.get(key, 1) - 1
    if left:
        taken[key] = left
    else:
        taken.pop(key, None)


def _client(timeout: httpx.Timeout, limits: httpx.Limits | None = None) -> httpx.AsyncClient:
    return httpx.AsyncClient(
        timeout=timeout,
        follow_redirects=False,
        trust_env=False,
        # The excerpt kept of a reply is its raw bytes: ask for them uncompressed.
        headers={"Accept-Encoding": "identity"},
        limits=limits or httpx.Limits(max_connections=100, max_keepalive_connections=20),
    )


async def _excerpt(reply: httpx.Response) -> str | None:
    """The first bytes of the reply body, for the delivery log; the rest is not read."""
    data = b""
    async for chunk in reply.aiter_raw():
        data += chunk
        if len(data) >= EXCERPT_BYTES:
            break
    return data[:EXCERPT_BYTES].decode("utf-8", "replace") or None
