"""webhooks/delivery.py: when the deliverer looks at the outbox, and how it writes what it
sent when the database hangs."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any, cast

import httpx

from click2call.settings import Settings
from click2call.store import Attempt, Delivery, Outbox
from click2call.store.outbox import Settled
from click2call.store_threads import StoreThreads
from click2call.webhooks import delivery
from click2call.webhooks.delivery import Deliverer


class HungOutbox:
    """An outbox whose database answers only once `answer` is set."""

    def __init__(self) -> None:
        self.answer = threading.Event()
        self.settled: list[Sequence[Settled]] = []

    def settle(self, results: Sequence[Settled]) -> None:
        self.answer.wait(5)
        self.settled.append(results)


def _deliverer(outbox: HungOutbox, threads: StoreThreads) -> Deliverer:
    settings = Settings(tenants=[{"name": "default"}])
    deliverer = Deliverer(settings, cast(Outbox, outbox), lambda: datetime.now(UTC), threads)
    deliverer._settled = [cast(Any, "an attempt")]
    return deliverer


async def test_attempts_written_late_are_written_once() -> None:
    """Past database_timeout the write is still awaited: given up on, it could commit and
    then be written again in the next round."""
    outbox, threads = HungOutbox(), StoreThreads(2, timeout=0.05)
    deliverer = _deliverer(outbox, threads)
    writing = asyncio.create_task(deliverer._write_settled())
    await asyncio.sleep(0.2)
    assert not writing.done()
    outbox.answer.set()
    await asyncio.wait_for(writing, 5)
    assert deliverer._settled == []
    assert len(outbox.settled) == 1  # once
    await threads.close()


async def test_shutdown_does_not_wait_on_a_hung_database() -> None:
    outbox, threads = HungOutbox(), StoreThreads(2, timeout=0.1)
    deliverer = _deliverer(outbox, threads)
    started = time.monotonic()
    await deliverer.close()
    assert time.monotonic() - started < 3  # the database would answer after 5 s
    outbox.answer.set()
    await threads.close()


async def test_a_close_during_a_rounds_write_writes_the_attempts_once() -> None:
    """close() cancels the round while its write of attempts is in the database: the write
    goes on to its end, and the attempts are not written a second time by close()."""
    outbox, threads = HungOutbox(), StoreThreads(2, timeout=5)
    deliverer = _deliverer(outbox, threads)
    writing = asyncio.create_task(deliverer._write_settled())
    await asyncio.sleep(0.1)
    writing.cancel()  # as close() cancels the runner
    closing = asyncio.create_task(deliverer.close())
    await asyncio.sleep(0.1)
    outbox.answer.set()  # the database answers: the round's write commits
    await closing
    await threads.close()
    assert [list(written) for written in outbox.settled].count(["an attempt"]) == 1


class CountingOutbox:
    """An outbox that counts how often the deliverer reads or writes it."""

    def __init__(self) -> None:
        self.claims = 0
        self.settles = 0

    def claim(self, *_args: object) -> list[object]:
        self.claims += 1
        return []

    def settle(self, _results: Sequence[Settled]) -> None:
        self.settles += 1


async def test_a_round_with_no_attempt_to_write_takes_no_thread() -> None:
    """Each wake-up reads the outbox; one with no finished attempt writes nothing, and does
    not hand an empty write to a store thread."""
    outbox, threads = CountingOutbox(), StoreThreads(2, timeout=5)
    settings = Settings(tenants=[{"name": "default"}], webhooks={"poll_interval": 60})  # type: ignore[arg-type]
    deliverer = Deliverer(settings, cast(Outbox, outbox), lambda: datetime.now(UTC), threads)
    deliverer.start()
    await asyncio.sleep(0.1)
    deliverer.wake()
    await asyncio.sleep(0.1)
    assert (outbox.claims, outbox.settles) == (2, 0)
    await deliverer.close()
    await threads.close()


class Receiver:
    """A local HTTP server that answers 204 and keeps each request's head."""

    def __init__(self) -> None:
        self.heads: list[bytes] = []

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.heads.append(await reader.readuntil(b"\r\n\r\n"))
        writer.write(b"HTTP/1.1 204 No Content\r\nConnection: close\r\n\r\n")
        await writer.drain()
        writer.close()

    async def __aenter__(self) -> int:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        return int(self._server.sockets[0].getsockname()[1])

    async def __aexit__(self, *_exc: object) -> None:
        self._server.close()
        await self._server.wait_closed()


SECRET = "whsec_" + "A" * 40


async def test_a_callback_goes_to_the_address_that_was_checked_not_a_second_lookup() -> None:
    """DNS rebinding: a name that answers a public address to the check and a private one
    to the connection. The host is resolved once and the request sent to that address
    (`.invalid` cannot resolve anywhere else), with the URL's own Host header."""
    asked: list[str] = []

    async def rebinding(host: str, port: int) -> list[str]:
        asked.append(host)
        return ["127.0.0.1"] if len(asked) == 1 else ["169.254.169.254"]

    settings = Settings(tenants=[{"name": "default", "callbacks": {"secret": SECRET}}])
    threads = StoreThreads(2, timeout=1)
    deliverer = Deliverer(
        settings,
        cast(Outbox, HungOutbox()),
        lambda: datetime.now(UTC),
        threads,
        resolver=rebinding,
        address_allowed=lambda address: address == "127.0.0.1",  # "public" for this test
    )
    deliverer._pinned_client = delivery._client(httpx.Timeout(5))  # as start() makes it
    receiver = Receiver()
    async with receiver as port:
        url = f"http://crm.invalid:{port}/hook"
        await deliverer._deliver(Delivery(1, 1, "default", url, True, 7, 9, "{}", 0))
    attempt = deliverer._settled[0].attempt
    assert (attempt.status, attempt.error) == (204, None)
    assert asked == ["crm.invalid"]
    assert f"\r\nhost: crm.invalid:{port}\r\n" in receiver.heads[0].decode().lower()
    # the excerpt kept is the reply's raw bytes: asked for uncompressed
    assert "\r\naccept-encoding: identity\r\n" in receiver.heads[0].decode().lower()
    await deliverer._pinned_client.aclose()
    await threads.close()


async def test_a_callback_resolving_to_a_private_address_is_not_sent() -> None:
    async def private(host: str, port: int) -> list[str]:
        return ["127.0.0.1"]

    settings = Settings(tenants=[{"name": "default", "callbacks": {"secret": SECRET}}])
    threads = StoreThreads(2, timeout=1)
    outbox = cast(Outbox, HungOutbox())
    deliverer = Deliverer(settings, outbox, lambda: datetime.now(UTC), threads, resolver=private)
    deliverer._pinned_client = httpx.AsyncClient(trust_env=False)
    async with Receiver() as port:
        url = f"http://crm.example.com:{port}/hook"
        await deliverer._deliver(Delivery(1, 1, "default", url, True, 7, 9, "{}", 0))
    attempt = deliverer._settled[0].attempt
    assert attempt.status is None
    assert attempt.error == "callback host resolves to a private or local address (127.0.0.1)"
    await deliverer._pinned_client.aclose()
    await threads.close()


class ClaimingOutbox:
    """An outbox that hands out `due` once and records what each claim skipped."""

    def __init__(self, due: list[Delivery]) -> None:
        self.due = due
        self.skipped: list[tuple[set[int], set[str]]] = []

    def claim(
        self, now: datetime, room: int, busy: set[int], full: set[int], full_tenants: set[str]
    ) -> list[Delivery]:
        self.skipped.append((full, full_tenants))
        due, self.due = self.due, []
        return due

    def release(self, ids: list[int]) -> None:
        self.released = ids


async def test_a_tenant_with_every_slot_taken_is_skipped_until_one_frees() -> None:
    hold = asyncio.Event()

    async def stalled(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        await hold.wait()
        writer.write(b"HTTP/1.1 204 No Content\r\nConnection: close\r\n\r\n")
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(stalled, "127.0.0.1", 0)
    url = f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}/hook"
    settings = Settings(
        tenants=[{"name": "default", "webhooks": [{"url": url, "secret": SECRET}]}],
        webhooks={"max_in_flight_per_tenant": 2},
    )
    # three endpoints of one tenant: the third is over the tenant's cap, not an endpoint's
    outbox = ClaimingOutbox(
        [Delivery(i, i, "default", url, False, i, i, "{}", 0) for i in (1, 2, 3)]
    )
    threads = StoreThreads(2, timeout=1)
    deliverer = Deliverer(settings, cast(Outbox, outbox), lambda: datetime.now(UTC), threads)
    deliverer._client = httpx.AsyncClient(trust_env=False)
    await deliverer._dispatch()
    assert sorted(deliverer._in_flight) == [1, 2]
    assert outbox.released == [3]  # given back at once for the next round
    await deliverer._dispatch()
    assert outbox.skipped[-1] == (set(), {"default"})
    hold.set()
    await asyncio.wait_for(asyncio.gather(*deliverer._in_flight.values()), 5)
    await deliverer._dispatch()
    assert outbox.skipped[-1] == (set(), set())
    assert [s.attempt.status for s in deliverer._settled] == [204, 204]
    await deliverer._client.aclose()
    server.close()
    await threads.close()


class RefusingOutbox(ClaimingOutbox):
    """Takes no attempt (a constraint the database enforces, not an outage)."""

    def settle(self, results: Sequence[Settled]) -> None:
        raise ValueError("the database refused the batch")


async def test_attempts_the_database_refuses_do_not_stop_the_sending() -> None:
    settings = Settings(tenants=[{"name": "default"}], webhooks={"poll_interval": 0.05})
    outbox, threads = RefusingOutbox([]), StoreThreads(2, timeout=1)
    deliverer = Deliverer(settings, cast(Outbox, outbox), lambda: datetime.now(UTC), threads)
    sent = Delivery(1, 1, "default", "http://127.0.0.1:9/h", False, 1, 1, "{}", 0)
    deliverer._settled = [
        Settled(sent, Attempt(datetime.now(UTC), 200, None, None, 0), "delivered")
    ]
    deliverer.start()
    await asyncio.sleep(0.3)
    await deliverer.close()
    await threads.close()
    assert len(outbox.skipped) >= 2  # the outbox was still read, round after round
