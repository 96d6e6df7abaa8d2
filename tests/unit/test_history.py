"""store/history.py on a real SQLite file: filters, keyset pages, events after an id."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta

import pytest
from sqlalchemy import Connection, Engine, insert

from click2call.calls import CallEvent, CallState, Result
from click2call.store import Store
from click2call.store.history import CallFilter, History
from click2call.store.schema import call_events
from tests.unit import test_store
from tests.unit.test_store import T0

NEW = replace(test_store.NEW, foreignid=None)


@pytest.fixture
def store(database: Engine) -> Store:
    return Store(database)


def place(store: Store, minute: int, **changes: str) -> int:
    call = store.create_call(replace(NEW, **changes), T0 + timedelta(minutes=minute)).call
    return call.id


def end(store: Store, call_id: int, result: Result) -> None:
    call = store.get(call_id)
    assert call is not None
    store.record(CallEvent(call.uniqueid, CallState.ENDED, call.created_at, result, "why"))


def ids(history: History, where: CallFilter) -> list[int]:
    return [c.id for c in history.all(where, batch=2)]


def test_filters_each_narrow_the_tenant_s_calls(store: Store) -> None:
    first = place(store, 0, foreignid="crm-1")
    second = place(store, 10, agent_number="201", destination="0541234567")
    third = place(store, 20)
    other = place(store, 30, tenant="other")
    end(store, first, Result.COMPLETED)
    end(store, second, Result.AGENT_BUSY)
    history = History(store.engine)
    tenant = CallFilter(tenant="default")

    assert ids(history, tenant) == [third, second, first]
    assert ids(history, CallFilter(tenant=None)) == [other, third, second, first]
    assert ids(history, replace(tenant, foreignid="crm-1")) == [first]
    assert ids(history, replace(tenant, agent_number="201")) == [second]
    assert ids(history, replace(tenant, destination="0541234567")) == [second]
    assert ids(history, replace(tenant, state=CallState.QUEUED)) == [third]
    assert ids(history, replace(tenant, result=Result.AGENT_BUSY)) == [second]
    window = replace(tenant, since=T0 + timedelta(minutes=10), until=T0 + timedelta(minutes=20))
    assert ids(history, window) == [second]  # since inclusive, until exclusive


def test_pages_are_stable_while_calls_are_placed(store: Store) -> None:
    placed = [place(store, minute) for minute in range(5)]
    history = History(store.engine)
    where = CallFilter(tenant="default")
    page, before = history.page(where, 2)
    assert [c.id for c in page] == placed[:2:-1]
    newer = place(store, 9)  # arrives between two pages
    rest, after_rest = history.page(where, 2, before)
    last, end_ = history.page(where, 2, after_rest)
    assert [c.id for c in rest + last] == placed[2::-1]
    assert end_ is None
    assert newer not in [c.id for c in rest + last]


def test_a_full_last_page_says_it_is_the_last(store: Store) -> None:
    for minute in range(2):
        place(store, minute)
    page, before = History(store.engine).page(CallFilter(tenant="default"), 2)
    assert len(page) == 2
    assert before is None


def test_events_after_an_id_are_the_tenant_s_in_order(store: Store) -> None:
    mine = place(store, 0)
    place(store, 1, tenant="other")
    end(store, mine, Result.COMPLETED)
    history = History(store.engine)
    events = history.events_after("default", 0, 100)
    assert [(e.call_id, e.sequence, e.type) for e in events] == [
        (mine, 1, "call.queued"),
        (mine, 2, "call.ended"),
    ]
    assert history.events_after("default", events[0].id, 100) == events[1:]
    assert history.events_after("default", 0, 1) == events[:1]
    assert history.last_event_id() >= events[-1].id


def _event(conn: Connection, call_id: int, sequence: int) -> int:
    row = {"call_id": call_id, "state": "queued", "at": T0, "sequence": sequence}
    values = {**row, "type": "call.queued", "payload": "{}"}
    return int(conn.execute(insert(call_events).values(**values)).inserted_primary_key[0])


def test_the_feed_waits_for_an_event_committed_after_a_later_one(store: Store) -> None:
    """PostgreSQL: event n is inserted by one writer, n+1 by another that commits first.
    The feed sends nothing past n while n's transaction is open, then both in order."""
    if store.engine.dialect.name != "postgresql":
        pytest.skip("SQLite has one writer: its ids are seen in the order they are drawn")
    a, b = place(store, 0), place(store, 1)
    history = History(store.engine)
    start = history.last_event_id()
    with store.engine.connect() as slow:
        open_ = slow.begin()
        first = _event(slow, a, 2)  # drawn, not committed
        with store.engine.begin() as other:
            second = _event(other, b, 2)
        held = history.feed("default", start, 100, None)
        assert held.events == [] and held.after_id == start and held.unsettled is not None
        open_.commit()
    read = history.feed("default", held.after_id, 100, held.unsettled)
    assert [e.id for e in read.events] == [first, second]
    assert (read.after_id, read.unsettled) == (second, None)


def test_the_feed_skips_an_id_that_will_never_come_once_its_writers_are_done(
    store: Store,
) -> None:
    """A rolled-back insert (or a refused call's deleted row) leaves a hole for good: held
    while a transaction that was open may still fill it, then passed over."""
    if store.engine.dialect.name != "postgresql":
        pytest.skip("SQLite has one writer: its ids are seen in the order they are drawn")
    a = place(store, 0)
    history = History(store.engine)
    start = history.last_event_id()
    with store.engine.connect() as slow:
        open_ = slow.begin()
        _event(slow, a, 2)
        with store.engine.begin() as other:
            kept = _event(other, a, 3)
        held = history.feed("default", start, 100, None)
        assert held.events == []
        open_.rollback()
    read = history.feed("default", held.after_id, 100, held.unsettled)
    assert [e.id for e in read.events] == [kept]
    assert read.unsettled is None


def test_the_feed_reads_straight_through_when_nothing_is_missing(store: Store) -> None:
    mine = place(store, 0)
    end(store, mine, Result.COMPLETED)
    history = History(store.engine)
    read = history.feed("default", 0, 100, None)
    assert [e.sequence for e in read.events] == [1, 2]
    assert (read.after_id, read.unsettled) == (read.events[-1].id, None)
    assert history.feed("default", read.after_id, 100, None).events == []
