"""Timers kept in one FIFO queue per duration (timers.py), on a real event loop."""

from __future__ import annotations

import asyncio
import itertools

import pytest

from click2call.engines.sip.timers import Timers


def test_timers_run_once_in_deadline_order_across_durations() -> None:
    async def scenario() -> list[str]:
        timers, fired = Timers(), []
        timers.call_later(0.03, fired.append, "late")
        timers.call_later(0.01, fired.append, "first")
        timers.call_later(0.01, fired.append, "second")
        timers.call_later(0.02, fired.append, "middle")
        await asyncio.sleep(0.08)
        assert len(timers) == 0
        return fired

    assert asyncio.run(scenario()) == ["first", "second", "middle", "late"]


def test_a_cancelled_timer_never_runs_and_lets_go_of_its_callback_at_once() -> None:
    async def scenario() -> None:
        timers, fired = Timers(), []
        kept = timers.call_later(0.01, fired.append, "kept")
        gone = timers.call_later(0.01, fired.append, "gone")
        timers.cancel(gone)
        timers.cancel(gone)  # twice: nothing more
        assert (gone.callback, gone.args) == (None, ())
        assert len(timers) == 1
        await asyncio.sleep(0.03)
        timers.cancel(kept)  # after it ran: nothing
        assert fired == ["kept"]

    asyncio.run(scenario())


def test_a_queue_mostly_cancelled_is_compacted_and_the_rest_still_runs() -> None:
    async def scenario() -> None:
        timers, fired = Timers(), []
        armed = [timers.call_later(0.02, fired.append, i) for i in range(100)]
        for timer in armed[:90]:
            timers.cancel(timer)
        assert len(timers._queues[0.02]) < 100  # ended calls do not wait out their hour
        await asyncio.sleep(0.05)
        assert fired == list(range(90, 100))

    asyncio.run(scenario())


def test_a_timer_armed_from_a_callback_and_a_failing_callback_leave_the_rest_running() -> None:
    async def scenario() -> list[str]:
        timers, fired = Timers(), []

        def again() -> None:
            fired.append("again")
            timers.call_later(0.01, fired.append, "re-armed")

        def broken() -> None:
            raise RuntimeError("boom")

        loop = asyncio.get_running_loop()
        errors: list[object] = []
        loop.set_exception_handler(lambda _loop, context: errors.append(context["exception"]))
        timers.call_later(0.01, again)
        timers.call_later(0.01, broken)
        timers.call_later(0.01, fired.append, "after")
        await asyncio.sleep(0.05)
        assert [str(e) for e in errors] == ["boom"]
        return fired

    assert asyncio.run(scenario()) == ["again", "after", "re-armed"]


@pytest.mark.parametrize("seconds", [0.0, 0.001])
def test_a_short_or_zero_delay_runs_on_a_later_loop_turn(seconds: float) -> None:
    async def scenario() -> None:
        timers, fired = Timers(), []
        timers.call_later(seconds, fired.append, "now")
        assert fired == []
        await asyncio.sleep(0.01)
        assert fired == ["now"]

    asyncio.run(scenario())


def test_a_timer_armed_and_cancelled_by_the_last_callback_of_its_queue_leaves_nothing() -> None:
    async def scenario() -> None:
        timers, fired = Timers(), []

        def last() -> None:
            fired.append("last")
            timers.cancel(timers.call_later(0.01, fired.append, "never"))

        timers.call_later(0.01, last)
        await asyncio.sleep(0.03)
        assert fired == ["last"]
        assert (timers._queues, timers._wakers) == ({}, {})
        timers.call_later(0.01, fired.append, "again")  # the duration works as before
        await asyncio.sleep(0.03)
        assert fired == ["last", "again"]

    asyncio.run(scenario())


def test_timers_of_one_duration_share_one_float_for_it() -> None:
    # A duration computed by the caller (64 * T1) is a new float each time; thousands of
    # timers kept at once each held their own.
    async def scenario() -> None:
        timers, base = Timers(), 0.01
        first = timers.call_later(base * 3, lambda: None)
        second = timers.call_later(base * 3, lambda: None)
        assert first.seconds is second.seconds
        await asyncio.sleep(0.05)
        assert timers._durations == {}  # gone with the queue

    asyncio.run(scenario())


def test_a_queue_a_quarter_cancelled_is_compacted() -> None:
    # Each call's INVITEs cancel their timer B among as many live 32 s timers M.
    async def scenario() -> None:
        timers = Timers()
        armed = [timers.call_later(0.02, lambda: None) for _ in range(100)]
        for timer in armed[:30]:
            timers.cancel(timer)
        assert len(timers._queues[0.02]) < 100

    asyncio.run(scenario())


def _counting_wakeups(timers: Timers) -> list[float]:
    """The loop times at which the loop ran a queue's expiry."""
    woken: list[float] = []
    expire = timers._expire

    def counted(seconds: float) -> None:
        woken.append(asyncio.get_running_loop().time())
        expire(seconds)

    timers._expire = counted  # type: ignore[method-assign]
    return woken


def test_timers_cancelled_before_they_are_due_wake_the_loop_for_none_of_them() -> None:
    # Each INVITE's retransmission timer A is cancelled by its 1xx, a few ms later.
    async def scenario() -> None:
        timers, fired = Timers(), []
        woken = _counting_wakeups(timers)
        for i in range(20):
            armed = timers.call_later(0.03, fired.append, i)
            await asyncio.sleep(0.002)
            if i != 10:
                timers.cancel(armed)
        await asyncio.sleep(0.06)
        assert fired == [10]
        assert len(woken) == 1  # for the one that ran
        assert (timers._queues, timers._wakers) == ({}, {})

    asyncio.run(scenario())


def test_long_timers_run_together_on_the_grid_never_early_and_short_ones_on_time() -> None:
    async def scenario() -> None:
        loop = asyncio.get_running_loop()
        timers = Timers(coarse_from=0.05, grain=0.05)
        woken = _counting_wakeups(timers)
        ran: dict[str, tuple[float, float]] = {}  # name: (due, ran at)

        def arm(name: str, seconds: float) -> None:
            due = loop.time() + seconds
            timers.call_later(seconds, lambda: ran.setdefault(name, (due, loop.time())))

        arm("short", 0.02)
        arm("long", 0.06)
        await asyncio.sleep(0.004)
        arm("longer", 0.07)
        arm("long again", 0.06)
        await asyncio.sleep(0.2)
        assert set(ran) == {"short", "long", "longer", "long again"}
        for due, at in ran.values():
            assert at >= due - 0.0015  # never before its time (the loop's clock resolution)
        short_due, short_at = ran.pop("short")
        assert short_at - short_due < 0.01
        for _due, at in ran.values():
            assert at - _due < 0.05 + 0.01  # at most a grain late
        # Wake-ups: expiries more than a millisecond apart (two queues due at one grid
        # point expire in the same loop turn).
        wakeups = 1 + sum(1 for a, b in itertools.pairwise(woken) if b - a > 0.001)
        if len({round(at / 0.05) for _due, at in ran.values()}) == 1:
            assert wakeups == 2  # the short one, then the long ones at one grid point
        else:  # the two arming times fell either side of a grid point
            assert wakeups == 3

    asyncio.run(scenario())


def test_a_timer_under_uvloop_wakes_the_loop_once() -> None:
    # uvloop runs a timer up to half a millisecond before its time: the queue's timer was
    # then not due yet, and the loop woke a second time a millisecond later to run it.
    uvloop = pytest.importorskip("uvloop")

    async def scenario() -> None:
        timers, fired = Timers(), []
        woken = _counting_wakeups(timers)
        for i in range(20):
            timers.call_later(0.003 + i * 0.0017, fired.append, i)
        await asyncio.sleep(0.06)
        assert fired == list(range(20))
        assert len(woken) == 20

    uvloop.run(scenario())
