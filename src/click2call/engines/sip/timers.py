"""Timers by the thousand for the SIP shell: one loop timer per distinct duration.

Every connected call holds its maximum-length timer for as long as it lasts, and each
set-up transaction a 32 s one; as event loop timers (uvloop) they cost about 550 bytes
each. Timers of one duration expire in the order they were armed, so one FIFO queue per
duration, with a single loop timer for its head, keeps each for the price of a small
object. A cancelled timer lets go of its callback at once and leaves its queue when
a quarter of the queue is cancelled (a day's ended calls must not linger until their
hour; and each call's INVITEs cancel a 32 s timer B at their first answer, in the queue
of the 32 s timers that are not cancelled: at a half, a stub of ~90 bytes stayed for
each of those).

Each wake-up of the loop costs far more than the few lines a timer runs (at 100 calls/s
the interpreter's caches are cold again at each one), so the loop is woken only for
timers that will run: the loop timer of a queue follows its first timer still armed,
never a cancelled one (each INVITE's retransmission timer A is cancelled by its 1xx).
And the long timers, `coarse_from` seconds or more (the transactions' waits for
stragglers and time-outs, T4 and 64*T1 — D, H, I, J, K, M, B, F — and the calls' ring
and maximum-length timers), run on a grid of `grain` seconds, up to that much late, so
those of all the calls due in one grain run in one wake-up: at 100 calls/s about five
of them a call ran, each waking the loop on its own (retransmissions keep their time).
"""

from __future__ import annotations

import asyncio
import math
from collections import deque
from collections.abc import Callable
from typing import Any

COARSE_FROM = 5.0  # seconds: T4, below which timers (retransmissions) keep their time
GRAIN = 0.1  # seconds the long timers may run late, on a grid of loop time
# uvloop counts its timers in whole milliseconds and runs most of them up to half of one
# before the time asked: a timer due that soon runs then, as asyncio's own loop does
# within its clock's resolution (else the loop woke, ran nothing and woke again).
_RESOLUTION = 0.001


class Timer:
    __slots__ = ("args", "callback", "deadline", "seconds")

    def __init__(
        self, seconds: float, deadline: float, callback: Callable[..., None], args: tuple[Any, ...]
    ) -> None:
        self.seconds = seconds
        self.deadline = deadline
        self.callback: Callable[..., None] | None = callback
        self.args = args


class Timers:
    def __init__(self, coarse_from: float = COARSE_FROM, grain: float = GRAIN) -> None:
        self._coarse_from = coarse_from
        self._grain = grain
        self._queues: dict[float, deque[Timer]] = {}
        self._cancelled: dict[float, int] = {}  # per queue, still in it
        # Per duration, the loop timer of its queue and the deadline it was armed for.
        self._wakers: dict[float, tuple[asyncio.TimerHandle, float]] = {}
        # One float per duration, shared by its timers: a duration computed by the caller
        # (64 * T1) is a new float each time, 24 bytes kept by each of thousands of timers.
        self._durations: dict[float, float] = {}

    def call_later(self, seconds: float, callback: Callable[..., None], *args: Any) -> Timer:
        """`callback(*args)` in `seconds`, on the running loop; `cancel()` may stop it."""
        loop = asyncio.get_running_loop()
        seconds = self._durations.setdefault(seconds, seconds)
        deadline = loop.time() + seconds
        if seconds >= self._coarse_from:  # still in arming order: the grid only rounds up
            deadline = math.ceil(deadline / self._grain) * self._grain
        timer = Timer(seconds, deadline, callback, args)
        queue = self._queues.get(seconds)
        if queue is None:
            queue = self._queues[seconds] = deque()
            self._cancelled[seconds] = 0
        queue.append(timer)
        if seconds not in self._wakers:
            self._wake(seconds, queue[0].deadline)
        return timer

    def _wake(self, seconds: float, deadline: float) -> None:
        """Arm the loop timer of a queue (none is armed) for `deadline`."""
        handle = asyncio.get_running_loop().call_at(deadline, self._expire, seconds)
        self._wakers[seconds] = handle, deadline

    def cancel(self, timer: Timer) -> None:
        if timer.callback is None:
            return  # ran or cancelled already
        timer.callback, timer.args = None, ()
        queue = self._queues[timer.seconds]
        cancelled = self._cancelled[timer.seconds] = self._cancelled[timer.seconds] + 1
        if queue[0] is timer and timer.seconds in self._wakers:  # (not while it expires)
            self._follow_head(timer)
        elif cancelled * 4 > len(queue) and len(queue) > 16:
            self._queues[timer.seconds] = deque(t for t in queue if t.callback is not None)
            self._cancelled[timer.seconds] = 0

    def _follow_head(self, cancelled: Timer) -> None:
        """The first timer of a queue was cancelled: its loop timer moves on to the next
        one still armed, or goes with the queue."""
        seconds = cancelled.seconds
        queue = self._queues[seconds]
        while queue and queue[0].callback is None:
            queue.popleft()
            self._cancelled[seconds] -= 1
        if queue and queue[0].deadline == cancelled.deadline:
            return  # due at the same time (the grid): the loop timer stays
        self._wakers.pop(seconds)[0].cancel()
        if queue:
            self._wake(seconds, queue[0].deadline)
        else:
            self._forget(seconds)

    def _forget(self, seconds: float) -> None:
        if (waker := self._wakers.pop(seconds, None)) is not None:
            waker[0].cancel()
        del self._queues[seconds]
        del self._cancelled[seconds]
        del self._durations[seconds]

    def _expire(self, seconds: float) -> None:
        del self._wakers[seconds]
        loop = asyncio.get_running_loop()
        queue = self._queues.get(seconds)
        if queue is None:
            return
        due_by = loop.time() + _RESOLUTION
        while queue and queue[0].deadline <= due_by:
            timer = queue.popleft()
            callback = timer.callback
            if callback is None:
                self._cancelled[seconds] -= 1
                continue
            timer.callback = None
            try:
                callback(*timer.args)
            except Exception as exc:  # as the loop does for its own timers: say, go on
                loop.call_exception_handler(
                    {"message": "exception in a SIP timer callback", "exception": exc}
                )
            # A cancel inside the callback may have compacted the queue, or emptied and
            # forgotten it (a timer the callback armed, then cancelled).
            found = self._queues.get(seconds)
            if found is None:
                return
            queue = found
        while queue and queue[0].callback is None:  # no wake-up for a cancelled one
            queue.popleft()
            self._cancelled[seconds] -= 1
        waker = self._wakers.get(seconds)  # a callback may have armed one already
        if not queue:
            self._forget(seconds)
        elif waker is None:
            self._wake(seconds, queue[0].deadline)
        elif waker[1] != queue[0].deadline:  # armed for a timer since run or cancelled
            waker[0].cancel()
            self._wake(seconds, queue[0].deadline)

    def __len__(self) -> int:
        """Timers armed and neither run nor cancelled."""
        return sum(len(q) - self._cancelled[s] for s, q in self._queues.items())
