"""webhooks/delivery.py: when the deliverer looks at the outbox, and how it writes what it
sent when the database hangs."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any, cast

from click2call.settings import Settings
from click2call.store import Outbox
from click2call.store.outbox import Settled
from click2call.store_threads import StoreThreads
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
