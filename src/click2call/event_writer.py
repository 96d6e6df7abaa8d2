"""Call writes stored off the event loop, each call's in arrival order, kept through an outage.

The engines report on the event loop and must not wait for the database there, nor must a
request storing a new call hold up signalling. Each write goes to one of a few lanes, chosen
by its call's uniqueid; a lane stores what has queued up in it as one batch (one
transaction) in a thread of a bounded pool, so calls proceed side by side while one call's
writes never overtake each other (their sequence numbers follow arrival). A lane waits a few
milliseconds after a write for the ones that follow it (a SIP answer moves two legs, a burst
of requests brings many new calls), so a batch holds several and the commits per call fall:
the profile of a loaded server showed begin/commit and the thread hop per write as a large
share of its CPU. Writes nobody waits for (engine events, SIP states, audit rows) wait
longer (`linger_seconds`), until a write someone waits for (a new call, the ending a reply
reports) joins their lane: at a steady 100 calls/s a 5 ms window made batches of ~5 writes
and two commits per call, each commit rewriting the same pages of the WAL.

Writes that must not wait out an outage (a new call: its request waits) have a lane of
their own when there are several; with one lane (SQLite: one writer thread, one writer at a
time in the file) they share it, and hurry it: a lane of their own bought nothing there but
a commit of its own for each new call.

A write refused on its own merits (a limit, an illegal move) comes back as its own result,
the batch goes on. A batch that fails otherwise is stored again one write at a time, so one
bad write costs only itself. When the database is unavailable the batch stays at the head
of its lane and is tried again until the database answers: nothing is lost, and that lane's
later writes wait behind it, but those that must not wait, which fail at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import zlib
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Generic, Protocol, TypeVar

from click2call.errors import DatabaseUnavailable

log = logging.getLogger("click2call.tracking")


class _OfCall(Protocol):
    @property
    def uniqueid(self) -> str: ...  # "" for a call not stored yet


Write = TypeVar("Write", bound=_OfCall)  # what is stored: an engine's event, a new call…
Stored = TypeVar("Stored")  # what storing it gave


CLOSING_RETRY = 0.1  # seconds between tries to store through an outage while closing


class EventWriter(Generic[Write, Stored]):
    def __init__(
        self,
        store: Callable[[list[Write]], list[Stored | Exception]],
        then: Callable[[Stored], None],
        lanes: int = 4,  # and as many threads
        retry_max: float = 2.0,
        drain_seconds: float = 5.0,
        batch_max: int = 256,
        gather_seconds: float = 0.005,
        gather_gap: float = 0.001,
        linger_seconds: float = 0.0,
        waits_out_outage: Callable[[Write], bool] = lambda _write: True,
    ) -> None:
        """`store` writes a batch in one transaction (blocking, in a pool thread) and
        returns one result per write, in order: what it stored, or the exception that
        refused it; `then` gets each stored result on the event loop, once committed.
        A lane gathers up to `gather_seconds` after a write someone waits for
        (`put(waited=True)`), while more come at most `gather_gap` apart; and up to
        `linger_seconds` (when longer) while it holds only writes nobody waits for.
        A write for which `waits_out_outage` is false fails at once with the database
        outage instead of waiting for the database (a request someone is waiting on)."""
        self._store = store
        self._then = then
        self._waits_out_outage = waits_out_outage
        self._lanes = lanes
        self._batch_max = batch_max
        self._gather_seconds = gather_seconds
        self._linger_seconds = linger_seconds
        self._gather_gap = gather_gap
        self._retry_max = retry_max
        self._drain_seconds = drain_seconds
        self._queues: list[asyncio.Queue[tuple[Write, asyncio.Future[Stored]]]] = []
        self._hurry: list[asyncio.Event] = []  # per lane: a write in it is waited for
        self._tasks: list[asyncio.Task[None]] = []
        self._pool: ThreadPoolExecutor | None = None
        self._outage: str | None = None
        # Set by close: retries through an outage come quicker (a drain is short), and a
        # lane lingers no more.
        self._closing = asyncio.Event()
        self.waiting = 0  # writes not yet stored

    @property
    def in_outage(self) -> bool:
        """The database is known to be down: a write that must not wait fails at once."""
        return self._outage is not None

    @property
    def running(self) -> bool:
        return bool(self._tasks)

    def start(self) -> None:
        self._pool = ThreadPoolExecutor(self._lanes, thread_name_prefix="event-writer")
        # One more lane for the writes that must not wait out an outage: they never queue
        # behind a batch that waits for the database, and fail at once instead.
        # (With one lane they share it, and _down takes them out of its queue.)
        self._queues = [asyncio.Queue() for _ in range(self._urgent_lane + 1)]
        self._hurry = [asyncio.Event() for _ in self._queues]
        self._tasks = [asyncio.create_task(self._lane(lane)) for lane in range(len(self._queues))]

    @property
    def _urgent_lane(self) -> int:
        """The lane of the writes that must not wait out an outage: one more, or the one."""
        return self._lanes if self._lanes > 1 else 0

    def put(self, write: Write, waited: bool = False) -> asyncio.Future[Stored]:
        """Queue `write` behind its call's earlier writes; call on the event loop. The
        future gives what was stored, or raises what refused it. `waited`: someone awaits
        it (a request's reply), so its lane stops lingering for more."""
        done: asyncio.Future[Stored] = asyncio.get_running_loop().create_future()
        if self._waits_out_outage(write):
            lane = zlib.crc32(write.uniqueid.encode()) % self._lanes
        elif self._outage is not None:  # the other lanes are waiting for the database now
            done.set_exception(DatabaseUnavailable(self._outage))
            return done
        else:
            lane = self._urgent_lane
        self.waiting += 1
        self._queues[lane].put_nowait((write, done))
        if waited:
            self._hurry[lane].set()
        return done

    async def close(self) -> bool:
        """Store what is queued (for at most `drain_seconds`), then stop. Whether all of it
        was stored."""
        if not self._tasks:
            return self.waiting == 0
        self._closing.set()
        stored = True
        try:
            async with asyncio.timeout(self._drain_seconds):
                await asyncio.gather(*(q.join() for q in self._queues))
        except TimeoutError:
            stored = False
            log.error("%d call write(s) could not be stored before shutdown", self.waiting)
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks = []
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None
        return stored

    async def _lane(self, lane: int) -> None:
        queue, hurry = self._queues[lane], self._hurry[lane]
        while True:
            batch = [await queue.get()]
            if queue.empty() and self._gather_seconds:
                await self._gather(queue, hurry)
            hurry.clear()  # before taking the writes: one put after this hurries the next batch
            while len(batch) < self._batch_max and not queue.empty():
                batch.append(queue.get_nowait())
            if not queue.empty():  # past batch_max: a waited write may be among those left
                hurry.set()
            await self._store_batch(batch)
            for _ in batch:
                queue.task_done()

    async def _gather(self, queue: asyncio.Queue[Any], hurry: asyncio.Event) -> None:
        """Let the writes that follow join the batch: at most `linger_seconds` while nobody
        waits for one, then, once a write someone waits for is in the lane, for as long as
        more keep coming (`gather_gap` apart at most), up to `gather_seconds`. A burst of
        requests is gathered whole, and the last of it does not wait out the window: under
        a stream of requests, sleeping 5 ms each time left the writer idle for a third of
        each round (dial.php requests/s, bench.spine)."""
        if self._closing.is_set():  # a drain: store what is there
            return
        if not hurry.is_set() and self._linger_seconds > self._gather_seconds:
            try:
                async with asyncio.timeout(self._linger_seconds):
                    await hurry.wait()
            except TimeoutError:
                return
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._gather_seconds
        while (left := deadline - loop.time()) > 0:
            queued = queue.qsize()
            await asyncio.sleep(min(self._gather_gap, left))
            if queue.qsize() == queued:
                return

    async def _store_batch(self, batch: list[tuple[Write, asyncio.Future[Stored]]]) -> None:
        """Store the batch and settle each write's future: retried through an outage (but
        the writes that must not wait); on any other failure stored one write at a time,
        each failure the result of its own write."""
        loop = asyncio.get_running_loop()
        delay = 0.05
        while True:
            try:
                results = await loop.run_in_executor(
                    self._pool, self._store, [write for write, _ in batch]
                )
                self._up()
                break
            except DatabaseUnavailable as exc:
                self._down(exc)
                for write, done in batch:
                    if not self._waits_out_outage(write):
                        self._settle(done, exc)
                batch = [(w, done) for w, done in batch if self._waits_out_outage(w)]
                if not batch:
                    return
                await self._back_off(delay)
                delay = min(delay * 2, self._retry_max)
            except Exception as exc:
                if len(batch) > 1:
                    for one in batch:
                        await self._store_batch([one])
                    return
                # A bug storing one write must not stop the lane for every later call.
                write = batch[0][0]
                log.exception("storing %r of call %s failed", write, write.uniqueid)
                results = [exc]
                break
        for (_, done), result in zip(batch, results, strict=True):
            self._settle(done, result)

    async def _back_off(self, delay: float) -> None:
        """Wait before trying the database again; once closing, a short while: a database
        back within the drain's seconds is found, not after a back-off past its end."""
        if self._closing.is_set():
            await asyncio.sleep(CLOSING_RETRY)
            return
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(delay):
                await self._closing.wait()

    def _settle(self, done: asyncio.Future[Stored], result: Stored | Exception) -> None:
        self.waiting -= 1
        if isinstance(result, Exception):
            if not done.done():
                done.set_exception(result)
                done.exception()  # a refusal nobody awaits is not an error
            return
        try:
            self._then(result)
        except Exception:
            log.exception("after storing %r", result)
        if not done.done():
            done.set_result(result)

    def _down(self, exc: DatabaseUnavailable) -> None:
        if self._outage is None:
            log.error("database unavailable (%s): call events wait and are retried", exc.reason)
        self._outage = exc.reason
        # Queued before the outage was known, behind a batch that now waits for the database.
        for queue in self._queues:
            queued = [queue.get_nowait() for _ in range(queue.qsize())]
            for write, done in queued:
                if self._waits_out_outage(write):
                    queue.put_nowait((write, done))
                else:
                    self._settle(done, exc)
                queue.task_done()

    def _up(self) -> None:
        if self._outage is not None:
            log.warning("database available again: waiting call events are being stored")
        self._outage = None
