"""Call limits counted in the database, so they hold across nodes."""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import Engine

from click2call.calls import CallEvent, CallState, Result
from click2call.errors import RateLimited
from click2call.settings import TenantLimits
from click2call.store import NewCall, Store, admission
from click2call.store.admission import KeyRequests

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
        postgres = database.dialect.name == "postgresql"
        sql = admission._USAGE.postgresql if postgres else admission._USAGE.sqlite
        plan = conn.exec_driver_sql(f"{explain} {sql}", {"tenant": "default", "agent": "200"}).all()
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
