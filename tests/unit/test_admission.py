"""Call limits counted in the database, so they hold across nodes."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import Engine, select
from sqlalchemy.dialects import postgresql

from click2call.calls import CallEvent, CallState, Result
from click2call.errors import RateLimited
from click2call.settings import TenantLimits
from click2call.store import NewCall, Outbox, Store, Subscription, Writes, admission
from click2call.store.admission import KeyRequests
from click2call.store.schema import (
    call_events,
    calls,
    key_rate_buckets,
    webhook_endpoints,
    webhook_outbox,
)

T0 = datetime(2026, 11, 25, 8, 0, tzinfo=UTC)


def simultaneously(attempts: list[Callable[[], object]]) -> list[str]:
    """Each attempt in a thread of its own, all released at once: "ok" or "429" each, sorted."""
    outcomes: list[str] = []
    start = threading.Barrier(len(attempts))

    def run(attempt: Callable[[], object]) -> None:
        start.wait()
        try:
            attempt()
            outcomes.append("ok")
        except RateLimited:
            outcomes.append("429")

    threads = [threading.Thread(target=run, args=(attempt,)) for attempt in attempts]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return sorted(outcomes)


def new(agent: str = "200") -> NewCall:
    return NewCall("default", "extension", "sip", agent, "0502760206", "1", "2", None)


def test_caps_count_the_calls_not_ended_of_every_node(database: Engine) -> None:
    limits = TenantLimits(max_concurrent_calls=3, max_calls_per_agent=2, burst=100)
    a, b = Store(database, "a"), Store(database, "b")
    first = a.create_call(new("200"), T0, limits=limits).call
    b.create_call(new("200"), T0, limits=limits)
    with pytest.raises(RateLimited) as refused:
        a.create_call(new("200"), T0, limits=limits)
    assert refused.value.limit == "max_calls_per_agent"
    b.create_call(new("201"), T0, limits=limits)
    with pytest.raises(RateLimited) as refused:
        b.create_call(new("202"), T0, limits=limits)
    assert refused.value.limit == "max_concurrent_calls"
    a.record(CallEvent(first.uniqueid, CallState.ENDED, T0, Result.CANCELED, "done"))
    a.create_call(new("202"), T0, limits=limits)  # an ended call frees its slot
    assert len(a.find(limit=10)) == 4  # refusals store nothing


def test_the_call_rate_is_one_bucket_for_the_cluster(database: Engine) -> None:
    limits = TenantLimits(calls_per_second=2, burst=3)
    a, b = Store(database, "a"), Store(database, "b")
    for store in (a, b, a):
        store.create_call(new(str(len(store.find(limit=10)) + 300)), T0, limits=limits)
    with pytest.raises(RateLimited) as refused:
        b.create_call(new("399"), T0, limits=limits)
    assert refused.value.limit == "calls_per_second"
    assert refused.value.retry_after == pytest.approx(0.5)
    b.create_call(new("399"), T0 + timedelta(seconds=0.5), limits=limits)


def test_simultaneous_requests_on_several_nodes_admit_exactly_the_cap(database: Engine) -> None:
    if database.dialect.name == "sqlite":
        pytest.skip("a SQLite file serves one process, which admits one call at a time")
    limits = TenantLimits(max_concurrent_calls=5, max_calls_per_agent=10, burst=100)
    nodes = [Store(database, f"n{i}") for i in range(10)]
    places = [lambda store=store: store.create_call(new(), T0, limits=limits) for store in nodes]
    assert simultaneously(places) == ["429"] * 5 + ["ok"] * 5


def test_the_live_call_count_reads_the_live_index_not_the_tenants_history(
    database: Engine,
) -> None:
    """Admission runs for every new call: its count must not grow with the call history."""
    store = Store(database)
    limits = TenantLimits(calls_per_second=1e6, burst=10**6, max_calls_per_agent=10**6)
    for _ in range(300):
        call = store.create_call(new(), T0, limits=limits).call
        store.record(CallEvent(call.uniqueid, CallState.ENDED, T0, Result.CANCELED, "done"))
    with database.begin() as conn:
        if database.dialect.name == "postgresql":
            conn.exec_driver_sql("ANALYZE calls")
            conn.exec_driver_sql("SET LOCAL enable_seqscan = off")  # the planner's choice
            explain = "EXPLAIN"  # among indexes, not a whole table this small
        else:
            explain = "EXPLAIN QUERY PLAN"
        if database.dialect.name == "postgresql":  # a transaction's new calls at once
            sql, values = admission._USAGE_BY_AGENT.postgresql, {"agents": ["200", "201"]}
        else:
            sql, values = admission._USAGE.sqlite, {"agent": "200"}
        values["tenant"] = "default"
        plan = conn.exec_driver_sql(f"{explain} {sql}", values).all()
    assert "ix_calls_live" in " ".join(str(row) for row in plan)


def test_a_keys_requests_per_minute_are_one_budget_for_the_cluster(database: Engine) -> None:
    a = KeyRequests(database)
    b = KeyRequests(database) if database.dialect.name == "postgresql" else a  # two nodes
    a.take(1, 2, T0)
    b.take(1, 2, T0)
    with pytest.raises(RateLimited) as limited:
        a.take(1, 2, T0 + timedelta(seconds=1))
    assert limited.value.limit == "key_requests_per_minute"
    assert limited.value.retry_after == pytest.approx(29)
    assert limited.value.message.endswith("(limit key_requests_per_minute); retry after 29 s")
    b.take(2, 2, T0)  # another key has its own budget
    b.take(1, 2, T0 + timedelta(seconds=30))  # half a minute gives one request back
    with pytest.raises(RateLimited):
        a.take(1, 2, T0 + timedelta(seconds=31))
    a.take(1, 2, T0 + timedelta(hours=1))  # never more than a minute's worth saved up
    a.take(1, 2, T0 + timedelta(hours=1))
    with pytest.raises(RateLimited):
        b.take(1, 2, T0 + timedelta(hours=1))


def test_simultaneous_requests_of_one_key_on_several_nodes_get_exactly_its_budget(
    database: Engine,
) -> None:
    if database.dialect.name == "sqlite":
        pytest.skip("a SQLite file serves one process")
    nodes = [KeyRequests(database) for _ in range(10)]
    requests = [lambda node=node: node.take(7, 4, T0) for node in nodes]
    assert simultaneously(requests) == ["429"] * 6 + ["ok"] * 4


def test_a_node_admits_while_another_nodes_transaction_is_still_storing(database: Engine) -> None:
    """PostgreSQL: a transaction's new calls are admitted as it ends, so the tenant's lock
    is not held while it stores them; the cap still holds: the later to end is refused."""
    if database.dialect.name == "sqlite":
        pytest.skip("a SQLite file serves one process")
    limits = TenantLimits(max_concurrent_calls=1, max_calls_per_agent=5, burst=100)
    a, b = Store(database, "a"), Store(database, "b")
    placed: list[int] = []
    with a.writing() as writes:
        first = writes.create_call(new("200"), T0, limits=limits).call
        other = threading.Thread(
            target=lambda: placed.append(b.create_call(new("201"), T0, limits=limits).call.id)
        )
        other.start()
        other.join(timeout=10)
        assert not other.is_alive(), "node b waited for node a's transaction"
    assert list(writes.refused) == [first.id]
    assert writes.refused[first.id].limit == "max_concurrent_calls"
    assert first.uniqueid not in writes.calls
    assert [call.id for call in a.find(limit=10)] == placed


def test_a_call_refused_as_its_transaction_ends_leaves_nothing_behind(database: Engine) -> None:
    """PostgreSQL: its row, event, deliveries and own webhook go; the others stand."""
    if database.dialect.name == "sqlite":
        pytest.skip("SQLite admits a call before storing it")
    Outbox(database).sync_config({"default": [Subscription("http://127.0.0.1:9/all")]}, T0)
    limits = TenantLimits(max_concurrent_calls=2, max_calls_per_agent=5, burst=100)
    store = Store(database)
    own = Subscription("http://127.0.0.1:9/own")
    with store.writing() as writes:
        kept = [writes.create_call(new(str(n)), T0, own, limits).call for n in (200, 201)]
        unlimited = writes.create_call(new("202"), T0, own).call  # counted, never refused
        refused = writes.create_call(new("203"), T0, own, limits).call
    assert list(writes.refused) == [refused.id]
    assert sorted(writes.calls) == sorted(c.uniqueid for c in [*kept, unlimited])
    with database.connect() as conn:
        for table in (calls, call_events, webhook_outbox, webhook_endpoints):
            column = table.c.id if table is calls else table.c.call_id
            found = {row[0] for row in conn.execute(select(column).where(column.isnot(None)))}
            assert found == {c.id for c in [*kept, unlimited]}, table.name


def test_new_calls_of_one_transaction_are_admitted_in_the_order_stored(database: Engine) -> None:
    """Each as if admitted alone before it was stored: the per-agent cap counts the calls
    stored before it (a call stored without limits too), the rate bucket refills by each
    call's own time."""
    limits = TenantLimits(calls_per_second=1, burst=2, max_calls_per_agent=2)
    store = Store(database)
    placed: list[int | str] = []  # a call's id, or the limit that refused it at once
    with store.writing() as writes:
        for agent, seconds, checked in [
            ("200", 0, None),
            ("200", 0, limits),
            ("200", 0, limits),  # agent 200 has 2 up
            ("201", 0, limits),
            ("202", 0, limits),  # the burst of 2 is spent
            ("202", 1, limits),  # a second later, one more token
        ]:
            at = T0 + timedelta(seconds=seconds)
            try:
                placed.append(writes.create_call(new(agent), at, limits=checked).call.id)
            except RateLimited as exc:  # SQLite: refused before it is stored
                placed.append(exc.limit)
    outcomes = [
        p if isinstance(p, str) else writes.refused[p].limit if p in writes.refused else "ok"
        for p in placed
    ]
    assert outcomes == ["ok", "ok", "max_calls_per_agent", "ok", "calls_per_second", "ok"]
    stored = [call.agent_number for call in store.find(limit=10)[::-1]]
    assert stored == ["200", "200", "201", "202"]


def test_a_new_call_ended_in_its_own_transaction_counts_until_it_ends(database: Engine) -> None:
    """A call stored and ended in one transaction is up for the calls stored between the
    two, and not after: the cap holds exactly as if each call were admitted alone."""
    limits = TenantLimits(max_concurrent_calls=2, max_calls_per_agent=5, burst=100)
    store = Store(database)
    store.create_call(new("100"), T0, limits=limits)  # up, and committed
    placed: list[int | str] = []

    def place(writes: Writes, agent: str) -> str:
        try:
            call = writes.create_call(new(agent), T0, limits=limits).call
        except RateLimited as exc:  # SQLite: refused before it is stored
            placed.append(exc.limit)
            return ""
        placed.append(call.id)
        return call.uniqueid

    with store.writing() as writes:
        first = place(writes, "200")
        place(writes, "201")  # 100 and 200 are up
        ended = CallEvent(first, CallState.ENDED, T0, Result.CANCELED, "done")
        assert writes.record(ended) is not None  # 200 ends
        place(writes, "202")
    outcomes = [
        p if isinstance(p, str) else writes.refused[p].limit if p in writes.refused else "ok"
        for p in placed
    ]
    assert outcomes == ["ok", "max_concurrent_calls", "ok"]


def test_a_keys_first_requests_on_two_nodes_at_once_are_both_served(database: Engine) -> None:
    """Node 1 is inserting the key's first bucket (not committed yet) when node 2's first
    request comes: node 2's INSERT waits, then does nothing; it takes from the row node 1
    made instead of refusing with a negative Retry-After."""
    if database.dialect.name != "postgresql":
        pytest.skip("a SQLite file serves one process")
    now = T0
    outcome: list[object] = []

    def node2() -> None:
        try:
            KeyRequests(database).take(7, 120, now)
            outcome.append("served")
        except RateLimited as exc:
            outcome.append(exc)

    with database.connect() as node1:
        inserting = node1.begin()
        first = postgresql.insert(key_rate_buckets).on_conflict_do_nothing()
        node1.execute(first, {"key_id": 7, "tokens": 119.0, "at": now.timestamp()})
        thread = threading.Thread(target=node2)
        thread.start()
        time.sleep(0.3)  # node 2's INSERT now waits on node 1's row
        inserting.commit()
    thread.join(10)
    assert outcome == ["served"]
    with database.connect() as conn:
        tokens = conn.execute(select(key_rate_buckets.c.tokens)).scalar_one()
    assert tokens == pytest.approx(118)
