"""Engine events stored off the event loop, each call's in arrival order, kept through an outage.

The engines report on the event loop and must not wait for the database there. Each event
goes to one of a few lanes, chosen by its call's uniqueid; a lane stores what has queued up
in it as one batch (one transaction) in a thread of a bounded pool, so calls proceed side by
side while one call's events never overtake each other (their sequence numbers follow
arrival). Under load a batch holds many events, and the commits per call fall: the profile
of a loaded server showed begin/commit and the thread hop per event as a large share of its
CPU. A batch that fails for any reason but an outage is stored again one event at a time,
so one bad event costs only itself. When the database is unavailable the batch stays at the
head of its lane and is tried again until the database answers: nothing is lost, and that
lane's later events wait behind it.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import zlib
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Generic, ParamSpec, Protocol, TypeVar

from click2call.errors import DatabaseUnavailable

log = logging.getLogger("click2call.tracking")


class _OfCall(Protocol):
    @property
    def uniqueid(self) -> str: ...


Event = TypeVar("Event", bound=_OfCall)  # what is stored: an engine's CallEvent, or SIP state
Stored = TypeVar("Stored")
P = ParamSpec("P")
R = TypeVar("R")


class EventWriter(Generic[Event, Stored]):
    def __init__(
        self,
        store: Callable[[list[Event]], list[Stored]],
        then: Callable[[Stored], None],
        lanes: int = 4,
        retry_max: float = 2.0,
        drain_seconds: float = 5.0,
        batch_max: int = 256,
    ) -> None:
        """`store` writes a batch of events in one transaction (blocking, in a pool thread)
        and returns one result per event, in order; `then` gets each result on the event
        loop, once the batch is committed."""
        self._store = store
        self._then = then
        self._lanes = lanes
        self._batch_max = batch_max
        self._retry_max = retry_max
        self._drain_seconds = drain_seconds
        self._queues: list[asyncio.Queue[tuple[Event, asyncio.Future[None]]]] = []
        self._tasks: list[asyncio.Task[None]] = []
        self._pool: ThreadPoolExecutor | None = None
        self._outage: str | None = None
        self.waiting = 0  # events not yet stored

    @property
    def running(self) -> bool:
        return bool(self._tasks)

    def start(self) -> None:
        self._pool = ThreadPoolExecutor(self._lanes, thread_name_prefix="event-writer")
        self._queues = [asyncio.Queue() for _ in range(self._lanes)]
        self._tasks = [asyncio.create_task(self._lane(q)) for q in self._queues]

    async def call(self, work: Callable[P, R], *args: P.args, **kwargs: P.kwargs) -> R:
        """`work(*args)` in the writers' pool once started (at once before): for a write
        that is not an event of a known call, such as storing a new call."""
        if self._pool is None:
            return work(*args, **kwargs)
        bound = functools.partial(work, *args, **kwargs)
        return await asyncio.get_running_loop().run_in_executor(self._pool, bound)

    def put(self, event: Event) -> asyncio.Future[None]:
        """Queue `event` behind its call's earlier events; call on the event loop. The
        future is done once the event is stored (or refused)."""
        lane = zlib.crc32(event.uniqueid.encode()) % len(self._queues)
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.waiting += 1
        self._queues[lane].put_nowait((event, done))
        return done

    async def close(self) -> None:
        """Store what is queued (for at most `drain_seconds`), then stop."""
        if not self._tasks:
            return
        try:
            async with asyncio.timeout(self._drain_seconds):
                await asyncio.gather(*(q.join() for q in self._queues))
        except TimeoutError:
            log.error("%d call event(s) could not be stored before shutdown", self.waiting)
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks = []
        if self._pool is not None:
            self._pool.shutdown(wait=True)

    async def _lane(self, queue: asyncio.Queue[tuple[Event, asyncio.Future[None]]]) -> None:
        while True:
            batch = [await queue.get()]
            while len(batch) < self._batch_max and not queue.empty():
                batch.append(queue.get_nowait())
            for stored in await self._stored_batch([event for event, _ in batch]):
                try:
                    self._then(stored)
                except Exception:
                    log.exception("after storing %r", stored)
            for _, done in batch:
                self.waiting -= 1
                if not done.done():
                    done.set_result(None)
                queue.task_done()

    async def _stored_batch(self, events: list[Event]) -> list[Stored]:
        """The batch's results, once stored: retried through an outage; on any other
        failure stored one event at a time, skipping (and logging) those that fail."""
        loop = asyncio.get_running_loop()
        delay = 0.05
        while True:
            try:
                results = await loop.run_in_executor(self._pool, self._store, events)
                self._up()
                return results
            except DatabaseUnavailable as exc:
                self._down(exc.reason)
                await asyncio.sleep(delay)
                delay = min(delay * 2, self._retry_max)
            except Exception:
                if len(events) == 1:
                    # A bug storing one event must not stop the lane for every later call.
                    log.exception("storing %r of call %s failed", events[0], events[0].uniqueid)
                    return []
                results = []
                for event in events:
                    results += await self._stored_batch([event])
                return results

    def _down(self, reason: str) -> None:
        if self._outage is None:
            log.error("database unavailable (%s): call events wait and are retried", reason)
        self._outage = reason

    def _up(self) -> None:
        if self._outage is not None:
            log.warning("database available again: waiting call events are being stored")
        self._outage = None
