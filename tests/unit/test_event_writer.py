"""EventWriter: engine events stored off the loop, in order per call, held through an outage."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

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

    def store(event: CallEvent) -> CallEvent:
        stored.append(event)
        return event

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

    def store(event: CallEvent) -> CallEvent:
        if down["left"]:
            down["left"] -= 1
            raise DatabaseUnavailable("connection refused")
        return event

    writer = EventWriter(store, announced.append, lanes=2, retry_max=0.01)
    writer.start()
    for event in events(3):
        writer.put(event)
    await asyncio.sleep(0)
    assert writer.waiting > 0
    await writer.close()
    assert [e.state for e in announced if e.uniqueid == "1.0"] == STEPS
    assert len(announced) == 3 * len(STEPS)  # each once, none lost, none twice


async def test_a_failing_event_does_not_stop_its_lane() -> None:
    announced: list[CallEvent] = []

    def store(event: CallEvent) -> CallEvent:
        if event.state is CallState.QUEUED:
            raise RuntimeError("bug")
        return event

    writer = EventWriter(store, announced.append, lanes=1)
    writer.start()
    for event in events(1):
        writer.put(event)
    await writer.close()
    assert [e.state for e in announced] == STEPS[1:]
