from __future__ import annotations

import dataclasses
import json
import threading
import time
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import Engine, delete, update

from click2call.calls import CallEvent, CallState, Result
from click2call.errors import IllegalTransition
from click2call.store import CallTimeouts, NewCall, Store, open_database
from click2call.store.repository import UnknownCall
from click2call.store.schema import call_events, calls
from click2call.store.sessions import SessionStore

T0 = datetime(2026, 11, 24, 8, 0, tzinfo=UTC)
NEW = NewCall(
    tenant="default",
    agent_kind="extension",
    agent_tech="sip",
    agent_number="200",
    destination="0502760206",
    destination_caller_id="036411111",
    agent_caller_id="0502760206",
    foreignid="crm-1",
)


@pytest.fixture
def store(database: Engine) -> Store:
    return Store(database)


def step(
    uniqueid: str, state: CallState, seconds: float, result: Result | None = None
) -> CallEvent:
    return CallEvent(
        uniqueid, state, T0 + timedelta(seconds=seconds), result, "why" if result else None
    )


def test_a_call_exists_queued_with_a_pbx_style_uniqueid(store: Store) -> None:
    call = store.create_call(NEW, T0).call
    assert call.state is CallState.QUEUED
    assert call.uniqueid == f"{int(T0.timestamp())}.{call.id}"
    assert call.created_at == T0
    # The row's uniqueid is written by the INSERT itself (SQL), the returned one built in
    # Python (uniqueid_for): they must be the same text.
    assert store.get_by_uniqueid(call.uniqueid) == call
    assert [e.state for e in store.events(call)] == [CallState.QUEUED]
    assert store.create_call(NEW, T0).call.uniqueid != call.uniqueid  # same second, new sequence


def test_a_call_keeps_the_timeouts_it_was_placed_with(store: Store) -> None:
    placed = CallTimeouts(agent_ring_timeout=20, destination_ring_timeout=40, max_call_seconds=900)
    call = store.create_call(replace(NEW, timeouts=placed), T0).call
    moved = store.record(step(call.uniqueid, CallState.AGENT_DIALING, 1))
    assert moved is not None and moved.call.timeouts == placed
    assert store.get(call.id) == moved.call  # read back from the row
    assert store.create_call(NEW, T0).call.timeouts is None  # none given: none kept


def test_each_change_updates_the_row_and_appends_an_event(store: Store) -> None:
    call = store.create_call(NEW, T0).call
    for seconds, state in enumerate(list(CallState)[1:-1], start=1):
        store.record(step(call.uniqueid, state, seconds))
    change = store.record(step(call.uniqueid, CallState.ENDED, 10, Result.COMPLETED))
    assert change is not None
    ended = change.call
    assert (ended.state, ended.result, ended.cause) == (CallState.ENDED, Result.COMPLETED, "why")
    assert ended.agent_answered_at == T0 + timedelta(seconds=3)
    assert ended.connected_at == T0 + timedelta(seconds=6)
    assert ended.ended_at == T0 + timedelta(seconds=10)
    events = store.events(call)
    assert [e.sequence for e in events] == list(range(1, len(CallState) + 1))
    assert [e.type for e in events] == [f"call.{state}" for state in CallState]
    assert ended.last_sequence == len(CallState)
    body = json.loads(events[-1].payload)
    assert (body["type"], body["sequence"]) == ("call.ended", len(CallState))
    assert body["call"]["result"] == "completed"
    assert (body["call"]["ring_seconds"], body["call"]["talk_seconds"]) == (6.0, 4.0)
    assert body["call"]["total_seconds"] == 10.0
    # Each event's body is the call as it stood then, not as it stands now.
    assert json.loads(events[0].payload)["call"]["state"] == "queued"


def test_a_repeated_ringing_changes_nothing_and_takes_no_sequence(store: Store) -> None:
    call = store.create_call(NEW, T0).call
    store.record(step(call.uniqueid, CallState.AGENT_DIALING, 1))
    assert store.record(step(call.uniqueid, CallState.AGENT_RINGING, 2)) is not None
    assert store.record(step(call.uniqueid, CallState.AGENT_RINGING, 3)) is None
    assert [e.sequence for e in store.events(call)] == [1, 2, 3]


def test_a_rejected_call_ends_as_call_rejected(store: Store) -> None:
    call = store.create_call(NEW, T0).call
    store.record(step(call.uniqueid, CallState.ENDED, 0, Result.REJECTED))
    assert [e.type for e in store.events(call)] == ["call.queued", "call.rejected"]


def test_illegal_moves_and_unknown_calls_are_refused_and_change_nothing(store: Store) -> None:
    call = store.create_call(NEW, T0).call
    with pytest.raises(IllegalTransition):
        store.record(step(call.uniqueid, CallState.CONNECTED, 1))
    with pytest.raises(LookupError):
        store.record(step("1.999", CallState.AGENT_DIALING, 1))
    assert store.get(call.id).state is CallState.QUEUED  # type: ignore[union-attr]
    assert len(store.events(call)) == 1


def test_find_by_foreignid_and_tenant_newest_first(store: Store) -> None:
    first = store.create_call(NEW, T0).call
    second = store.create_call(NEW, T0).call
    store.create_call(NEW, T0)
    found = store.find(foreignid="crm-1", limit=2)
    assert [c.id for c in found] == [second.id + 1, second.id]
    assert store.find(tenant="nobody") == []
    assert store.get_by_uniqueid(first.uniqueid) == first


def test_the_data_survives_a_restart(database_url: str) -> None:
    store = Store(open_database(database_url, migrate=True))
    call = store.create_call(NEW, T0).call
    store.close()
    reopened = Store(open_database(database_url, migrate=True))  # migrating again keeps data
    assert reopened.get(call.id) == call
    assert reopened.active_uniqueids() == [call.uniqueid]
    reopened.close()


def test_each_node_follows_its_own_calls_and_the_unnamed_ones(database: Engine) -> None:
    a, b, unnamed = Store(database, "a:8080"), Store(database, "b:8080"), Store(database)
    mine = a.create_call(NEW, T0).call
    theirs = b.create_call(NEW, T0).call
    old = unnamed.create_call(NEW, T0).call  # stored before nodes had names
    assert (mine.node, theirs.node, old.node) == ("a:8080", "b:8080", None)
    assert a.get(mine.id) == mine
    assert sorted(a.active_uniqueids()) == sorted([mine.uniqueid, old.uniqueid])
    assert sorted(b.active_uniqueids()) == sorted([theirs.uniqueid, old.uniqueid])
    assert len(unnamed.active_uniqueids()) == 3


def test_a_live_calls_sip_state_is_kept_replaced_and_dropped_with_its_end(
    database: Engine,
) -> None:
    a, b = Store(database, "a:8080"), Store(database, "b:8080")
    mine, theirs = a.create_call(NEW, T0).call, b.create_call(NEW, T0).call
    assert a.save_sip_state(mine.uniqueid, '{"v": 1}', T0)
    assert a.save_sip_state(mine.uniqueid, '{"v": 2}', T0)  # replaced, not a second row
    assert b.save_sip_state(theirs.uniqueid, '{"v": 9}', T0)
    assert a.sip_states() == {mine.uniqueid: '{"v": 2}'}  # each node reads its own

    a.record(step(mine.uniqueid, CallState.ENDED, 5, Result.ERROR))
    assert a.sip_states() == {}
    assert not a.save_sip_state(mine.uniqueid, '{"v": 3}', T0)  # a late write keeps nothing
    assert not a.save_sip_state("1.999", "{}", T0)
    assert a.sip_states() == {}


def test_a_call_moved_several_times_in_one_transaction_is_stored_as_it_last_stands(
    store: Store,
) -> None:
    """A batch brings a call's events together: its row is written once, at the end, and
    an ending in the batch is seen at once by the statements after it."""
    with store.writing() as writes:
        created = writes.create_call(NEW, T0).call
        for seconds, state in enumerate(list(CallState)[1:-1], start=1):
            change = writes.record(step(created.uniqueid, state, seconds))
            assert change is not None
        assert writes.save_sip_state(created.uniqueid, '{"v": 1}', T0)
        connected = change.call
    assert connected.state is CallState.CONNECTED
    assert store.get_by_uniqueid(created.uniqueid) == connected
    assert store.sip_states() == {created.uniqueid: '{"v": 1}'}
    with store.writing() as writes:
        assert writes.save_sip_state(created.uniqueid, '{"v": 2}', T0)
        ended = writes.record(step(created.uniqueid, CallState.ENDED, 9, Result.COMPLETED))
        assert not writes.save_sip_state(created.uniqueid, '{"v": 3}', T0)  # ended already
    assert ended is not None
    assert store.get_by_uniqueid(created.uniqueid) == ended.call
    assert ended.call.connected_at == connected.connected_at
    assert store.sip_states() == {}
    assert [e.sequence for e in store.events(ended.call)] == list(range(1, len(CallState) + 1))
    with store.writing() as writes:  # placed and refused in one transaction
        short = writes.create_call(NEW, T0).call
        writes.record(step(short.uniqueid, CallState.AGENT_DIALING, 1))
        assert writes.save_sip_state(short.uniqueid, '{"v": 1}', T0)
        gone = writes.record(step(short.uniqueid, CallState.ENDED, 2, Result.AGENT_BUSY))
        assert not writes.save_sip_state(short.uniqueid, '{"v": 2}', T0)
    assert gone is not None and gone.call.state is CallState.ENDED
    assert store.get_by_uniqueid(short.uniqueid) == gone.call
    assert store.sip_states() == {}


def test_a_call_another_node_moved_is_read_again_before_this_node_moves_it(
    database: Engine,
) -> None:
    """A node keeps each call as its last write left it, to spare a read per event; a row
    another writer moved meanwhile is read again, so no sequence is taken twice."""
    a, b = Store(database, "a:8080"), Store(database, "b:8080")
    call = a.create_call(NEW, T0).call
    b.record(step(call.uniqueid, CallState.AGENT_DIALING, 1))
    change = a.record(step(call.uniqueid, CallState.AGENT_RINGING, 2))
    assert change is not None
    assert (change.call.state, change.event.sequence) == (CallState.AGENT_RINGING, 3)
    assert [e.state for e in a.events(call)] == [
        CallState.QUEUED,
        CallState.AGENT_DIALING,
        CallState.AGENT_RINGING,
    ]


def test_a_call_ended_by_another_node_refuses_what_this_node_remembers_as_legal(
    database: Engine,
) -> None:
    a, b = Store(database, "a:8080"), Store(database, "b:8080")
    call = a.create_call(NEW, T0).call
    b.record(step(call.uniqueid, CallState.ENDED, 1, Result.ERROR))
    with pytest.raises(IllegalTransition):
        a.record(step(call.uniqueid, CallState.AGENT_DIALING, 2))
    assert len(a.events(call)) == 2


@pytest.mark.parametrize("elsewhere", ["ended", "pruned"])
def test_a_call_found_moved_elsewhere_is_no_longer_kept(database: Engine, elsewhere: str) -> None:
    """What this node kept of a call another node ended (or `db prune` then removed) is
    dropped when found out, not kept until the cache is full."""
    a, b = Store(database, "a:8080"), Store(database, "b:8080")
    call = a.create_call(NEW, T0).call
    assert call.uniqueid in a._known
    b.record(step(call.uniqueid, CallState.ENDED, 1, Result.ERROR))
    if elsewhere == "pruned":
        with database.begin() as conn:
            conn.execute(delete(call_events).where(call_events.c.call_id == call.id))
            conn.execute(delete(calls).where(calls.c.id == call.id))
    with pytest.raises((IllegalTransition, UnknownCall)):
        a.record(step(call.uniqueid, CallState.AGENT_DIALING, 2))
    assert call.uniqueid not in a._known


def test_a_call_taken_over_by_another_node_is_reported_with_its_new_owner(
    database: Engine,
) -> None:
    a = Store(database, "a:8080")
    call = a.create_call(NEW, T0).call
    with database.begin() as conn:  # what store/nodes.py does to a lost node's calls
        conn.execute(update(calls).where(calls.c.id == call.id).values(node="b:8080"))
    change = a.record(step(call.uniqueid, CallState.AGENT_DIALING, 1))
    assert change is not None and change.call.node == "b:8080"


def test_two_writers_of_one_call_take_turns_and_never_take_one_sequence_twice(
    database: Engine,
) -> None:
    a, b = Store(database, "a:8080"), Store(database, "a:8080")  # two workers of one node
    call = a.create_call(NEW, T0).call
    a.record(step(call.uniqueid, CallState.AGENT_DIALING, 1))  # a remembers it dialling
    moved = threading.Event()
    results: list[object] = []

    def a_moves() -> None:
        moved.set()
        results.append(a.record(step(call.uniqueid, CallState.AGENT_RINGING, 3)))

    with b.writing() as writes:  # b holds the row (the file, on SQLite) while a tries
        writes.record(step(call.uniqueid, CallState.AGENT_RINGING, 2))
        other = threading.Thread(target=a_moves)
        other.start()
        moved.wait()
        time.sleep(0.2)
    other.join()
    assert results == [None]  # a found it ringing already: nothing to change
    assert [e.sequence for e in a.events(call)] == [1, 2, 3]


def test_a_widget_token_is_linked_to_its_call_in_the_calls_own_transaction(
    store: Store, database: Engine
) -> None:
    sessions = SessionStore(database)
    placed = store.create_call(dataclasses.replace(NEW, widget_token="tok-1"), T0).call
    assert sessions.placed_by(placed.id, "tok-1")
    assert not sessions.placed_by(placed.id, "tok-2")
    ids: list[int] = []

    def fails_after_the_call() -> None:
        with store.writing() as writes:
            ids.append(
                writes.create_call(dataclasses.replace(NEW, widget_token="tok-3"), T0).call.id
            )
            raise RuntimeError("the transaction fails after the call")

    with pytest.raises(RuntimeError):
        fails_after_the_call()
    unwritten = ids[0]
    assert not sessions.placed_by(unwritten, "tok-3")  # neither the call nor its link
    assert store.get(unwritten) is None
