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
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable
from typing import Any


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
    def __init__(self) -> None:
        self._queues: dict[float, deque[Timer]] = {}
        self._cancelled: dict[float, int] = {}  # per queue, still in it
        self._wakers: dict[float, asyncio.TimerHandle] = {}
        # One float per duration, shared by its timers: a duration computed by the caller
        # (64 * T1) is a new float each time, 24 bytes kept by each of thousands of timers.
        self._durations: dict[float, float] = {}

    def call_later(self, seconds: float, callback: Callable[..., None], *args: Any) -> Timer:
        """`callback(*args)` in `seconds`, on the running loop; `cancel()` may stop it."""
        loop = asyncio.get_running_loop()
        seconds = self._durations.setdefault(seconds, seconds)
        timer = Timer(seconds, loop.time() + seconds, callback, args)
        queue = self._queues.get(seconds)
        if queue is None:
            queue = self._queues[seconds] = deque()
            self._cancelled[seconds] = 0
        queue.append(timer)
        if seconds not in self._wakers:
            self._wakers[seconds] = loop.call_at(queue[0].deadline, self._expire, seconds)
        return timer

    def cancel(self, timer: Timer) -> None:
        if timer.callback is None:
            return  # ran or cancelled already
        timer.callback, timer.args = None, ()
        queue = self._queues[timer.seconds]
        cancelled = self._cancelled[timer.seconds] = self._cancelled[timer.seconds] + 1
        if cancelled * 4 > len(queue) and len(queue) > 16:
            self._queues[timer.seconds] = deque(t for t in queue if t.callback is not None)
            self._cancelled[timer.seconds] = 0

    def _expire(self, seconds: float) -> None:
        del self._wakers[seconds]
        loop = asyncio.get_running_loop()
        queue = self._queues.get(seconds)
        if queue is None:
            return
        now = loop.time()
        while queue and queue[0].deadline <= now:
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
            queue = self._queues[seconds]  # a cancel inside the callback may compact it
        if queue:
            if seconds not in self._wakers:  # a callback may have armed one already
                self._wakers[seconds] = loop.call_at(queue[0].deadline, self._expire, seconds)
        else:  # a callback may have armed and cancelled one: its waker goes too
            if (waker := self._wakers.pop(seconds, None)) is not None:
                waker.cancel()
            del self._queues[seconds]
            del self._cancelled[seconds]
            del self._durations[seconds]

    def __len__(self) -> int:
        """Timers armed and neither run nor cancelled."""
        return sum(len(q) - self._cancelled[s] for s, q in self._queues.items())
