from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import Engine

from click2call.calls import CallEvent, CallState, Result
from click2call.errors import DatabaseUnavailable, RateLimited
from click2call.policy import Limits
from click2call.settings import TenantLimits
from click2call.store import AuditEntry, Change, KeyStore, NewCall, Store, Writes, outbox
from click2call.tracking import Tracking

T0 = datetime(2026, 11, 25, 8, 0, tzinfo=UTC)
NEW = NewCall("default", "extension", "sip", "200", "0502760206", "036411111", "0502760206", None)


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> datetime:
        self.now += timedelta(seconds=1)
        return self.now


@pytest.fixture
def tracking(database: Engine) -> Tracking:
    store = Store(database)
    return Tracking(store, Limits(lambda: 0.0), Clock())


async def test_every_stored_change_is_announced_queued_included(tracking: Tracking) -> None:
    heard: list[Change] = []
    tracking.subscribe(heard.append)
    call = (await tracking.create(NEW)).call
    tracking.on_event(CallEvent(call.uniqueid, CallState.AGENT_DIALING, T0))
    tracking.on_event(CallEvent(call.uniqueid, CallState.AGENT_DIALING, T0))  # illegal: refused
    tracking.end(call.uniqueid, Result.AGENT_BUSY, "SIP 486 Busy Here")
    assert [(c.event.sequence, c.event.type) for c in heard] == [
        (1, "call.queued"),
        (2, "call.agent_dialing"),
        (3, "call.ended"),
    ]
    assert heard[-1].call.cause == "SIP 486 Busy Here"


def test_events_for_unknown_calls_are_refused_not_raised(tracking: Tracking) -> None:
    assert tracking.record(CallEvent("1.999", CallState.AGENT_DIALING, T0)) is None


async def test_a_failing_listener_neither_undoes_the_change_nor_silences_the_others(
    tracking: Tracking,
) -> None:
    def broken(_change: Change) -> None:
        raise RuntimeError("listener bug")

    heard: list[Change] = []
    tracking.subscribe(broken)
    unsubscribe = tracking.subscribe(heard.append)
    change = await tracking.create(NEW)
    assert [c.event.id for c in heard] == [change.event.id]
    unsubscribe()
    tracking.end(change.call.uniqueid, Result.CANCELED, "by test")
    assert len(heard) == 1


async def test_an_ended_call_frees_its_agent_slot(database: Engine) -> None:
    store = Store(database)
    limits = Limits(lambda: 0.0)
    tracking = Tracking(store, limits, Clock())
    one = TenantLimits(max_calls_per_agent=1)
    call = (await tracking.create(NEW)).call
    limits.started("default", "200", call.uniqueid)
    with pytest.raises(Exception, match="200"):
        limits.admit_call("default", "200", one)
    tracking.end(call.uniqueid, Result.COMPLETED, "done")
    limits.admit_call("default", "200", one)


async def test_recover_ends_what_a_previous_run_left_in_flight(tracking: Tracking) -> None:
    left = (await tracking.create(NEW)).call
    tracking.on_event(CallEvent(left.uniqueid, CallState.AGENT_DIALING, T0))
    done = (await tracking.create(NEW)).call
    tracking.end(done.uniqueid, Result.COMPLETED, "done")
    heard: list[Change] = []
    tracking.subscribe(heard.append)
    assert tracking.recover() == 1
    [change] = heard
    assert (change.call.id, change.call.result) == (left.id, Result.ERROR)
    assert change.call.cause == "server stopped while the call was in progress"


async def test_recover_leaves_the_calls_an_engine_goes_on_with(tracking: Tracking) -> None:
    resumed = (await tracking.create(NEW)).call
    tracking.on_event(CallEvent(resumed.uniqueid, CallState.AGENT_DIALING, T0))
    lost = (await tracking.create(NEW)).call
    assert tracking.recover(resumed={resumed.uniqueid}) == 1
    assert tracking.record(CallEvent(resumed.uniqueid, CallState.AGENT_RINGING, T0)) is not None
    assert tracking.record(CallEvent(lost.uniqueid, CallState.AGENT_RINGING, T0)) is None


async def test_sip_state_is_stored_in_line_with_the_calls_events(database: Engine) -> None:
    store = Store(database)
    tracking = Tracking(store, Limits(lambda: 0.0), Clock())
    call = (await tracking.create(NEW)).call
    tracking.start()
    tracking.on_event(CallEvent(call.uniqueid, CallState.AGENT_DIALING, T0))
    tracking.save_sip_state(call.uniqueid, '{"legs": 1}')
    assert store.sip_states() == {}  # not written on the event loop
    tracking.end(call.uniqueid, Result.COMPLETED, "agent hung up")
    tracking.save_sip_state(call.uniqueid, '{"legs": 2}')  # after the end: kept nowhere
    await tracking.close()
    assert store.sip_states() == {}
    ended = store.get(call.id)
    assert ended is not None and ended.state is CallState.ENDED


async def test_a_batch_keeps_each_calls_newest_sip_state_and_every_event(database: Engine) -> None:
    store = Store(database)
    tracking = Tracking(store, Limits(lambda: 0.0), Clock())
    heard: list[Change] = []
    tracking.subscribe(heard.append)
    first, second = (await tracking.create(NEW)).call, (await tracking.create(NEW)).call
    tracking.start()
    for call in (first, second):
        tracking.on_event(CallEvent(call.uniqueid, CallState.AGENT_DIALING, T0))
        tracking.save_sip_state(call.uniqueid, '{"legs": 1}')
        tracking.on_event(CallEvent(call.uniqueid, CallState.AGENT_RINGING, T0))
        tracking.save_sip_state(call.uniqueid, '{"legs": 2}')
    tracking.on_event(CallEvent(first.uniqueid, CallState.CONNECTED, T0))  # illegal: refused
    await tracking.close()
    assert store.sip_states() == {first.uniqueid: '{"legs": 2}', second.uniqueid: '{"legs": 2}'}
    stored = [(c.call.id, c.event.type) for c in heard[2:]]
    for call in (first, second):
        mine = [type_ for call_id, type_ in stored if call_id == call.id]
        assert mine == ["call.agent_dialing", "call.agent_ringing"]


async def test_new_calls_stored_side_by_side_hold_the_limits_exactly(database: Engine) -> None:
    tracking = Tracking(Store(database), Limits(lambda: 0.0), Clock())
    tracking.start()
    limits = TenantLimits(max_concurrent_calls=5, max_calls_per_agent=10, burst=100)
    results = await asyncio.gather(
        *(tracking.create(NEW, None, limits) for _ in range(10)), return_exceptions=True
    )
    await tracking.close()
    refused = [r for r in results if isinstance(r, RateLimited)]
    assert len(refused) == 5, results  # no other error: the first token bucket made once
    assert all(r.limit == "max_concurrent_calls" for r in refused)


async def test_an_event_failing_halfway_leaves_its_call_as_it_was_and_the_others_stored(
    database: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A bug raising a LookupError after the call's row moved is not a refusal: the batch is
    rolled back and stored again one event at a time, and that event alone is lost."""
    store = Store(database)
    tracking = Tracking(store, Limits(lambda: 0.0), Clock())
    broken, fine = (await tracking.create(NEW)).call, (await tracking.create(NEW)).call
    queue = outbox.queue

    def failing_for_one_call(driver: Any, call_id: int, *rest: Any) -> int:
        if call_id == broken.id:
            raise KeyError("a bug")
        return queue(driver, call_id, *rest)

    monkeypatch.setattr("click2call.store.outbox.queue", failing_for_one_call)
    tracking.start()
    for call in (broken, fine):
        tracking.on_event(CallEvent(call.uniqueid, CallState.AGENT_DIALING, T0))
    await tracking.close()
    assert store.get(broken.id).state is CallState.QUEUED  # type: ignore[union-attr]
    assert [e.type for e in store.events(broken)] == ["call.queued"]
    assert store.get(fine.id).state is CallState.AGENT_DIALING  # type: ignore[union-attr]


async def test_a_new_call_whose_request_is_cancelled_is_ended_not_left_queued(
    database: Engine,
) -> None:
    store = Store(database)
    tracking = Tracking(store, Limits(lambda: 0.0), Clock())
    tracking.start()
    placing = asyncio.ensure_future(tracking.create(NEW))
    await asyncio.sleep(0)  # queued for the writer
    placing.cancel()
    with pytest.raises(asyncio.CancelledError):
        await placing
    await asyncio.sleep(0.2)  # stored, then ended behind it
    await tracking.close()
    [call] = store.find()
    assert (call.state, call.result) == (CallState.ENDED, Result.ERROR)
    assert call.cause is not None and "cancelled" in call.cause


class Outage:
    """The store's writes fail as in a database outage while `down`, or block while
    `hung` is clear (a database that accepts and never answers)."""

    def __init__(self, store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
        self.down = False
        self.hung = threading.Event()
        self.hung.set()
        writing = store.writing

        @contextlib.contextmanager
        def failing() -> Iterator[Writes]:
            self.hung.wait(10)
            if self.down:
                raise DatabaseUnavailable("connection refused")
            with writing() as writes:
                yield writes

        monkeypatch.setattr(store, "writing", failing)


def _audit_row(n: int) -> AuditEntry:
    return AuditEntry(T0, "default", None, "127.0.0.1", "dial.php", False, f"refusal {n}")


async def test_audit_rows_waiting_for_the_database_are_bounded_and_the_rest_counted(
    database: Engine, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    store = Store(database)
    outage = Outage(store, monkeypatch)
    tracking = Tracking(store, Limits(lambda: 0.0), Clock(), audit_backlog=5)
    tracking.start()
    outage.down = True
    for n in range(8):
        tracking.audit(_audit_row(n))
    await asyncio.sleep(0.1)
    assert tracking.audit_dropped == 3
    assert "5 audit rows wait for the database: newer ones are dropped" in caplog.text
    outage.down = False
    await asyncio.sleep(0.3)  # the writer's retry finds the database again
    tracking.audit(_audit_row(8))  # room again
    await tracking.close()
    stored = KeyStore(database).audit_entries()
    assert sorted(e.reason or "" for e in stored) == [f"refusal {n}" for n in (0, 1, 2, 3, 4, 8)]
    assert "3 audit row(s) dropped while the database did not answer" in caplog.text
    assert tracking.audit_dropped == 3


async def test_a_new_call_waits_for_a_hung_database_only_so_long(
    database: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The request gets the outage's 503 after the timeout; the row stored once the
    database wakes up is ended, never left queued."""
    store = Store(database)
    outage = Outage(store, monkeypatch)
    tracking = Tracking(store, Limits(lambda: 0.0), Clock(), timeout=0.2)
    tracking.start()
    outage.hung.clear()
    with pytest.raises(DatabaseUnavailable) as caught:
        await tracking.create(NEW)
    assert caught.value.reason == "the database did not answer within 0.2 s"
    outage.hung.set()
    await asyncio.sleep(0.3)
    await tracking.close()
    [call] = store.find()
    assert (call.state, call.result) == (CallState.ENDED, Result.ERROR)


@pytest.mark.parametrize("writer", [False, True])
async def test_a_call_another_node_ended_first_frees_its_slot_here(
    database: Engine, writer: bool
) -> None:
    """Node a was cut off from the database past the lease; node b took its call over and
    ended it. a's own ending is then refused (ended cannot go to ended), and a counted the
    call for ever: every later call of that agent got 429 there."""
    one = TenantLimits(max_calls_per_agent=1, max_concurrent_calls=1)
    limits = Limits(lambda: 0.0)
    a = Tracking(Store(database, "a"), limits, Clock())
    b = Tracking(Store(database, "b"), Limits(lambda: 0.0), Clock())
    call = (await a.create(NEW, limits=one)).call
    limits.started("default", "200", call.uniqueid)
    b.end(call.uniqueid, Result.ERROR, "node a stopped heartbeating; ended by node b")
    if writer:
        a.start()
    a.end(call.uniqueid, Result.COMPLETED, "BYE")
    if writer:
        await a.close()
    limits.admit_call("default", "200", one)  # the slot is free again


async def test_a_new_call_committed_with_its_answer_lost_is_not_left_queued(
    database: Engine,
) -> None:
    """The commit reached the database, the connection broke before its answer: the
    request got 503, and the row stayed queued, an agent's slot taken cluster-wide until
    the node restarted. Once the database answers, it is found and ended."""
    store = Store(database, "a")
    writing = store.writing
    lost = [True]

    @contextlib.contextmanager
    def commit_then_lose_the_answer() -> Iterator[Writes]:
        with writing() as writes:
            yield writes
        if lost and lost.pop():
            raise DatabaseUnavailable("server closed the connection unexpectedly")

    store.writing = commit_then_lose_the_answer  # type: ignore[method-assign]
    tracking = Tracking(store, Limits(lambda: 0.0), Clock())
    tracking.start()
    one = TenantLimits(max_calls_per_agent=1)
    with pytest.raises(DatabaseUnavailable):
        await tracking.create(NEW, limits=one)
    for _ in range(100):
        call = store.get(1)
        if call is not None and call.state is CallState.ENDED:
            break
        await asyncio.sleep(0.02)
    assert call is not None and call.state is CallState.ENDED and call.result is Result.ERROR
    assert call.cause is not None and "connection broke" in call.cause
    again = (await tracking.create(NEW, limits=one)).call  # the CRM's retry is admitted
    assert again.id != call.id
    await tracking.close()


async def test_calls_refused_during_a_known_outage_are_not_kept_as_in_doubt(
    database: Engine,
) -> None:
    """Only a new call whose commit was tried can be in doubt; those refused at once while
    the database is known down were never sent (a stream of them must not pile up)."""
    store = Store(database, "a")
    writing = store.writing

    @contextlib.contextmanager
    def down() -> Iterator[Writes]:
        raise DatabaseUnavailable("connection refused")
        yield  # pragma: no cover

    store.writing = down  # type: ignore[method-assign]
    tracking = Tracking(store, Limits(lambda: 0.0), Clock())
    tracking.start()
    for _ in range(5):
        with pytest.raises(DatabaseUnavailable):
            await tracking.create(NEW)
    assert tracking._in_doubt == 1  # the first, whose transaction was tried
    store.writing = writing  # type: ignore[method-assign]  # back: it is looked for
    await tracking.close()
    assert tracking._in_doubt == 0
