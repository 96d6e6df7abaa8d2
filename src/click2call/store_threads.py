"""The threads that do the store's work for the event loop, and how long the loop waits.

The event loop carries the SIP signalling and never waits on the database itself. Requests,
the pollers (hang-up relay, node watch) and the webhook deliverer hand their store work to
this pool, which the Runtime owns: not asyncio's default executor, which the SIP engine's
name lookups share (off uvloop), so a database that hangs holds up no DNS; and bounded, so
it holds up at most this many threads.

Each wait is bounded too. A PostgreSQL that hangs without closing its connections (its host
frozen: the kernel still acknowledges, no libpq timeout fires) would otherwise hold a request
until it wakes; after `timeout` seconds the caller gets DatabaseUnavailable, the 503 of any
outage. The thread may stay blocked in the driver; the pool's size keeps their number finite,
and work still queued when its wait ends is dropped, never run late. Work that takes
something once (hang-up requests marked taken, a lost node's calls claimed) is `finish`ed
instead: a result committed after its caller stopped waiting would be lost for good.

The pollers have a small pool of their own (Runtime.poller_threads): a burst of slow
requests filling the request pool must not hold up a node's heartbeat until the others
take its calls over.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextvars
import functools
import logging
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, ParamSpec, TypeVar

from click2call.errors import DatabaseUnavailable

log = logging.getLogger("click2call.store")
P = ParamSpec("P")
T = TypeVar("T")


def no_answer(timeout: float) -> str:
    """The outage's reason when the database took longer than `timeout` seconds."""
    return f"the database did not answer within {timeout:g} s"


class StoreThreads:
    def __init__(self, threads: int, timeout: float) -> None:
        self.timeout = timeout
        self._pool = ThreadPoolExecutor(threads, thread_name_prefix="store")
        self._running: set[concurrent.futures.Future[Any]] = set()

    async def run(self, work: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        """`work(*args, **kwargs)` in one of the threads, with the caller's context (the
        call a log line is about); DatabaseUnavailable when it takes over `timeout`."""
        # asyncio.timeout, not wait_for: Python 3.11's wait_for returns a result that
        # arrives as its task is cancelled and swallows the cancellation (a poller told to
        # stop ran on, and the shutdown waited for it for ever).
        try:
            async with asyncio.timeout(self.timeout):
                return await self._submit(work, *args, **kwargs)
        except TimeoutError:
            raise DatabaseUnavailable(no_answer(self.timeout)) from None

    async def finish(self, work: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        """As `run`, but waiting for as long as the work takes: for a poller's work whose
        result, once committed, exists nowhere else (a take-once read, attempts written).
        A caller cancelled meanwhile stops waiting; the work still runs to its end (queued
        work too), so it is never half done nor done again by a caller that thinks it was
        not: a poller stops between rounds rather than being cancelled in one."""
        return await asyncio.shield(self._submit(work, *args, **kwargs))

    def _submit(self, work: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> asyncio.Future[T]:
        context = contextvars.copy_context()
        call = functools.partial(work, *args, **kwargs)
        future = self._pool.submit(context.run, call)
        self._running.add(future)
        future.add_done_callback(self._running.discard)
        return asyncio.wrap_future(future)

    async def close(self, wait: float = 10.0) -> None:
        """Take no more work and wait (at most `wait` seconds) for the threads still working,
        also those whose caller stopped waiting: disposing of the database under one would
        leave its connection to a pool that is gone."""
        self._pool.shutdown(wait=False, cancel_futures=True)
        # A copy first, taken in one step under the GIL: the worker threads' done callbacks
        # remove futures from the set while this looks at it.
        running = [asyncio.wrap_future(future) for future in tuple(self._running)]
        if not running:
            return
        _, stuck = await asyncio.wait(running, timeout=wait)
        if stuck:
            log.error("%d database operation(s) still blocked at shutdown", len(stuck))
