"""EventWriter: engine events stored off the loop, in order per call, held through an outage."""

from __future__ import annotations

import asyncio
import threading
import time
from datetime import UTC, datetime

import pytest

from click2call.calls import CallEvent, CallState, Result
from click2call.errors import DatabaseUnavailable
from click2call.event_writer import EventWriter

T0 = datetime(2026, 11, 25, 8, 0, tzinfo=UTC)
STEPS = list(CallState)


def events(calls: int) -> list[CallEvent]:
    """Each call's steps, the calls interleaved as engines report them."""
    return [
        CallEvent(f"1.{c}", state, T0, Result.COMPLETED if state is CallState.ENDED else None)
        for state in STEPS
        for c in range(calls)
    ]


async def test_each_call_keeps_its_order_while_calls_go_side_by_side() -> None:
    stored: list[CallEvent] = []
    announced: list[CallEvent] = []

    def store(batch: list[CallEvent]) -> list[CallEvent]:
        stored.extend(batch)
        return batch

    writer = EventWriter(store, announced.append, lanes=4)
    writer.start()
    sent = events(30)
    for event in sent:
        writer.put(event)
    await writer.close()
    for c in range(30):
        mine = [e.state for e in announced if e.uniqueid == f"1.{c}"]
        assert mine == STEPS
    assert sorted(map(id, stored)) == sorted(map(id, sent))
    assert writer.waiting == 0


async def test_an_outage_holds_events_and_loses_none() -> None:
    down = {"left": 5}
    announced: list[CallEvent] = []

    def store(batch: list[CallEvent]) -> list[CallEvent]:
        if down["left"]:
            down["left"] -= 1
            raise DatabaseUnavailable("connection refused")
        return batch

    writer = EventWriter(store, announced.append, lanes=2, retry_max=0.01)
    writer.start()
    for event in events(3):
        writer.put(event)
    await asyncio.sleep(0)
    assert writer.waiting > 0
    await writer.close()
    assert [e.state for e in announced if e.uniqueid == "1.0"] == STEPS
    assert len(announced) == 3 * len(STEPS)  # each once, none lost, none twice


async def test_a_failing_event_costs_only_itself_not_its_batch_nor_the_lane() -> None:
    announced: list[CallEvent] = []
    batches: list[int] = []

    def store(batch: list[CallEvent]) -> list[CallEvent]:
        batches.append(len(batch))
        if any(e.state is CallState.QUEUED for e in batch):
            raise RuntimeError("bug")
        return batch

    writer = EventWriter(store, announced.append, lanes=1)
    writer.start()
    for event in events(1):
        writer.put(event)
    await writer.close()
    assert [e.state for e in announced] == STEPS[1:]
    assert batches[0] == len(STEPS)  # all queued at once: one batch, then one at a time
    assert batches[1:] == [1] * len(STEPS)


async def test_events_queued_together_are_stored_in_few_batches() -> None:
    batches: list[list[CallEvent]] = []

    def store(batch: list[CallEvent]) -> list[CallEvent]:
        batches.append(batch)
        return batch

    writer = EventWriter(store, lambda _e: None, lanes=2, batch_max=50)
    writer.start()
    sent = events(40)
    for event in sent:
        writer.put(event)
    await writer.close()
    assert sum(map(len, batches)) == len(sent)
    assert max(map(len, batches)) == 50
    assert len(batches) <= len(sent) // 50 + 2 * 2


async def test_a_failing_listener_does_not_stop_the_lane() -> None:
    seen: list[CallEvent] = []

    def then(event: CallEvent) -> None:
        seen.append(event)
        raise RuntimeError("listener bug")

    writer = EventWriter(lambda batch: batch, then, lanes=1)
    writer.start()
    for event in events(2):
        writer.put(event)
    await writer.close()
    assert len(seen) == 2 * len(STEPS)
    assert writer.waiting == 0


async def test_a_refused_write_fails_its_own_future_and_the_batch_goes_on() -> None:
    announced: list[CallEvent] = []

    def store(batch: list[CallEvent]) -> list[CallEvent | Exception]:
        return [ValueError("refused") if e.uniqueid == "1.1" else e for e in batch]

    writer = EventWriter(store, announced.append, lanes=1)
    writer.start()
    futures = [writer.put(event) for event in events(3)]
    await writer.close()
    for event, future in zip(events(3), futures, strict=True):
        if event.uniqueid == "1.1":
            assert isinstance(future.exception(), ValueError)
        else:
            assert future.result().uniqueid == event.uniqueid
    assert {e.uniqueid for e in announced} == {"1.0", "1.2"}


async def test_an_outage_fails_at_once_the_writes_that_must_not_wait_and_keeps_the_rest() -> None:
    down = {"left": 3}

    def store(batch: list[CallEvent]) -> list[CallEvent]:
        if down["left"]:
            down["left"] -= 1
            raise DatabaseUnavailable("connection refused")
        return batch

    urgent = CallEvent("1.9", CallState.QUEUED, T0)
    writer = EventWriter(
        store, lambda _e: None, lanes=1, retry_max=0.01, waits_out_outage=lambda e: e is not urgent
    )
    writer.start()
    kept = [writer.put(event) for event in events(2)]
    refused = writer.put(urgent)
    with pytest.raises(DatabaseUnavailable):
        await refused
    assert not any(f.done() for f in kept)  # still waiting for the database
    await writer.close()
    assert all(f.result() is not None for f in kept)


async def test_during_an_outage_a_write_that_must_not_wait_fails_before_queueing() -> None:
    def store(batch: list[CallEvent]) -> list[CallEvent]:
        raise DatabaseUnavailable("connection refused")

    urgent = CallEvent("1.9", CallState.QUEUED, T0)
    writer = EventWriter(
        store, lambda _e: None, lanes=1, retry_max=0.01, waits_out_outage=lambda e: e is not urgent
    )
    writer.start()
    writer.put(events(1)[0])
    await asyncio.sleep(0.05)  # its lane has met the outage and is retrying
    refused = writer.put(urgent)
    assert refused.done()  # at once: not behind the retries, not even in a queue
    with pytest.raises(DatabaseUnavailable):
        refused.result()
    writer._drain_seconds = 0.1  # the kept event cannot be stored: give up on it quickly
    await writer.close()


async def test_writes_nobody_waits_for_linger_into_one_batch() -> None:
    """At a low rate, writes a few milliseconds apart still share a transaction."""
    batches: list[list[CallEvent]] = []

    def store(batch: list[CallEvent]) -> list[CallEvent]:
        batches.append(batch)
        return batch

    writer = EventWriter(store, lambda _e: None, lanes=1, linger_seconds=0.3)
    writer.start()
    first, second = events(1)[:2]
    writer.put(first)
    await asyncio.sleep(0.05)  # ten times the gathering window
    await writer.put(second)
    assert batches == [[first, second]]
    await writer.close()


async def test_a_waited_write_hurries_a_lingering_lane_and_shares_its_batch() -> None:
    """A new call's request waits: its lane stops lingering, and with one lane the call is
    stored in the same transaction as the events that lingered there."""
    batches: list[list[CallEvent]] = []

    def store(batch: list[CallEvent]) -> list[CallEvent]:
        batches.append(batch)
        return batch

    new_call = CallEvent("", CallState.QUEUED, T0)
    writer = EventWriter(
        store,
        lambda _e: None,
        lanes=1,
        linger_seconds=30,
        waits_out_outage=lambda e: e is not new_call,
    )
    writer.start()
    event = events(1)[0]
    writer.put(event)
    await asyncio.sleep(0.02)
    await asyncio.wait_for(writer.put(new_call, waited=True), 1)
    assert batches == [[event, new_call]]
    await writer.close()


async def test_a_write_that_must_not_wait_queued_behind_a_batch_meeting_an_outage_fails() -> None:
    """Sharing the lane, it was queued before the outage was known: it fails as the outage
    is met, not after the database comes back."""
    storing = threading.Event()
    release = threading.Event()

    def store(batch: list[CallEvent]) -> list[CallEvent]:
        storing.set()
        release.wait(5)
        raise DatabaseUnavailable("connection refused")

    urgent = CallEvent("", CallState.QUEUED, T0)
    writer = EventWriter(
        store, lambda _e: None, lanes=1, retry_max=10, waits_out_outage=lambda e: e is not urgent
    )
    writer.start()
    kept = writer.put(events(1)[0])
    assert await asyncio.to_thread(storing.wait, 5)
    refused = writer.put(urgent, waited=True)
    release.set()
    with pytest.raises(DatabaseUnavailable):
        await asyncio.wait_for(refused, 1)
    assert not kept.done()
    writer._drain_seconds = 0.1
    await writer.close()


async def test_a_burst_of_waited_writes_is_gathered_whole_and_the_last_does_not_wait_long() -> None:
    """Requests arriving close together share one transaction; once they stop coming the
    batch goes at once, not when the whole gathering window has passed."""
    batches: list[list[CallEvent]] = []

    def store(batch: list[CallEvent]) -> list[CallEvent]:
        batches.append(batch)
        return batch

    writer = EventWriter(store, lambda _e: None, lanes=1, gather_seconds=2, gather_gap=0.05)
    writer.start()
    burst = events(1)
    stored = []
    for event in burst:
        stored.append(writer.put(event, waited=True))
        await asyncio.sleep(0.005)
    started = asyncio.get_running_loop().time()
    await asyncio.wait_for(asyncio.gather(*stored), 1)
    assert asyncio.get_running_loop().time() - started < 0.5  # not the 2 s window
    assert batches == [burst]
    await writer.close()


async def test_a_waited_write_left_past_a_full_batch_does_not_linger() -> None:
    """Four writes nobody waits for fill a batch; the waited one after them is left for the
    next batch, which must not linger for more (30 s here) as if nobody waited."""
    batches: list[list[CallEvent]] = []

    def store(batch: list[CallEvent]) -> list[CallEvent]:
        batches.append(batch)
        return batch

    writer = EventWriter(
        store, lambda _e: None, lanes=1, batch_max=4, gather_seconds=0.01, linger_seconds=30
    )
    writer.start()
    for event in events(1)[:4]:
        writer.put(event)
    waited = writer.put(CallEvent("2.1", CallState.QUEUED, T0), waited=True)
    async with asyncio.timeout(10):  # it would wait the whole linger: 30 s
        await waited
    assert [len(batch) for batch in batches] == [4, 1]
    await writer.close()


async def test_a_drain_stores_what_waits_once_the_database_is_back_before_its_end() -> None:
    """A stop during a short failover: the lane's back-off had grown (tries at 0.75, 1.55,
    then 3.15 s) and slept past the drain's end (2.4 s) although the database answered
    again at 1.7 s."""
    stored: list[CallEvent] = []
    back_at = time.monotonic() + 1.7

    def store(batch: list[CallEvent]) -> list[CallEvent | Exception]:
        if time.monotonic() < back_at:
            raise DatabaseUnavailable("connection refused")
        stored.extend(batch)
        return list(batch)

    writer: EventWriter[CallEvent, CallEvent] = EventWriter(
        store, lambda _e: None, lanes=2, retry_max=2.0, drain_seconds=1.5
    )
    writer.start()
    writer.put(CallEvent("1.1", CallState.ENDED, T0, Result.COMPLETED, "server stopping"))
    await asyncio.sleep(0.9)  # the back-off has grown: 0.05, 0.1, 0.2, 0.4, then 0.8 s
    assert await writer.close() is True
    assert len(stored) == 1


async def test_a_drain_cut_short_says_so() -> None:
    def down(batch: list[CallEvent]) -> list[CallEvent | Exception]:
        raise DatabaseUnavailable("connection refused")

    writer: EventWriter[CallEvent, CallEvent] = EventWriter(
        down, lambda _e: None, drain_seconds=0.3
    )
    writer.start()
    writer.put(CallEvent("1.1", CallState.ENDED, T0, Result.COMPLETED, "server stopping"))
    assert await writer.close() is False
