"""The store's own threads: each wait bounded, the pool bounded, shutdown waits for them."""

from __future__ import annotations

import asyncio
import contextvars
import threading
import time

import pytest

from click2call.errors import DatabaseUnavailable
from click2call.store_threads import StoreThreads

ABOUT = contextvars.ContextVar("about", default="nothing")


async def test_work_runs_in_a_thread_with_the_callers_context() -> None:
    threads = StoreThreads(2, timeout=5)
    ABOUT.set("call 7")
    seen = await threads.run(lambda: (ABOUT.get(), threading.current_thread().name))
    assert seen[0] == "call 7"
    assert seen[1].startswith("store") and seen[1] != threading.current_thread().name
    await threads.close()


async def test_a_database_that_does_not_answer_is_an_outage_after_the_timeout() -> None:
    threads = StoreThreads(1, timeout=0.2)
    hung = threading.Event()
    started = time.monotonic()
    with pytest.raises(DatabaseUnavailable) as caught:
        await threads.run(hung.wait, 10)
    assert 0.2 <= time.monotonic() - started < 5  # the work itself would take 10 s
    assert caught.value.reason == "the database did not answer within 0.2 s"
    # The one thread is still blocked: work queued behind it waits its own timeout and is
    # dropped, never run once the thread is free.
    ran = []
    with pytest.raises(DatabaseUnavailable):
        await threads.run(ran.append, "late")
    hung.set()
    await threads.close()
    assert ran == []


async def test_close_waits_for_work_whose_caller_stopped_waiting() -> None:
    threads = StoreThreads(2, timeout=5)
    release, finished = threading.Event(), threading.Event()

    def holding_a_connection() -> None:
        release.wait(5)
        finished.set()

    waiting = asyncio.create_task(threads.run(holding_a_connection))
    await asyncio.sleep(0.05)
    waiting.cancel()  # a poller stopped as the runtime closes
    closing = asyncio.create_task(threads.close())
    await asyncio.sleep(0.2)
    assert not closing.done()
    release.set()
    await asyncio.wait_for(closing, 5)
    assert finished.is_set()


async def test_close_gives_up_on_a_thread_that_stays_blocked() -> None:
    threads = StoreThreads(1, timeout=0.1)
    hung = threading.Event()
    with pytest.raises(DatabaseUnavailable):
        await threads.run(hung.wait, 10)
    started = time.monotonic()
    await threads.close(wait=0.2)
    assert time.monotonic() - started < 5  # the thread stays blocked for 10 s
    hung.set()


async def test_finished_work_is_awaited_past_the_timeout() -> None:
    """A take-once read (hang-up requests, a node's claim) commits even when the database
    answers late: its result is waited for, not dropped."""
    threads = StoreThreads(1, timeout=0.05)
    assert await threads.finish(lambda: time.sleep(0.2) or "taken") == "taken"
    await threads.close()


async def test_a_waiter_cancelled_as_its_work_finishes_is_cancelled() -> None:
    """A poller stopped (cancelled) just as its store work came back must stop: Python
    3.11's asyncio.wait_for returned the result instead and swallowed the cancellation,
    so the poller ran on and the server's shutdown waited for it for ever."""
    threads = StoreThreads(1, timeout=5)
    finished = threading.Event()

    def work() -> int:
        finished.set()
        return 1

    waiting = asyncio.create_task(threads.run(work))
    await asyncio.sleep(0)  # submitted
    finished.wait(5)  # the loop must not run meanwhile
    time.sleep(0.05)  # noqa: ASYNC251 - blocking the loop on purpose: the result is handed over first
    waiting.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiting
    await threads.close()
