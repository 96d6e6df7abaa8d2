from __future__ import annotations

import dataclasses
import threading
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import Engine, select

from click2call.calls import CallEvent, CallState, Result
from click2call.store import Attempt, NewCall, Outbox, Store, Subscription
from click2call.store.outbox import DELIVERED, FAILED, PENDING, Settled
from click2call.store.schema import webhook_outbox

T0 = datetime(2026, 11, 25, 8, 0, tzinfo=UTC)
NEW = NewCall("default", "extension", "sip", "200", "0502760206", "036411111", "0502760206", None)


@pytest.fixture
def stores(database: Engine) -> tuple[Store, Outbox]:
    return Store(database), Outbox(database)


def step(uniqueid: str, state: CallState, seconds: float = 1) -> CallEvent:
    result = Result.COMPLETED if state is CallState.ENDED else None
    return CallEvent(uniqueid, state, T0 + timedelta(seconds=seconds), result)


def test_each_event_queues_one_delivery_per_endpoint_that_wants_it(
    stores: tuple[Store, Outbox],
) -> None:
    store, outbox = stores
    outbox.sync_config(
        {
            "default": [
                Subscription("http://127.0.0.1:9/all"),
                Subscription("http://127.0.0.1:9/ends", frozenset({"call.ended"})),
            ],
            "other": [Subscription("http://127.0.0.1:9/other")],
        },
        T0,
    )
    created = store.create_call(NEW, T0, Subscription("http://127.0.0.1:9/mine"))
    call = created.call
    ended = store.record(step(call.uniqueid, CallState.ENDED))
    # Each change says how many it queued: the delivery worker wakes only for those.
    assert created.deliveries == 2
    assert ended is not None and ended.deliveries == 3
    states = outbox.for_call(call.id)
    by_url: dict[str, list[str]] = {}
    for d in states:
        by_url.setdefault(d.url, []).append(d.type)
    assert by_url == {
        "http://127.0.0.1:9/all": ["call.queued", "call.ended"],
        "http://127.0.0.1:9/ends": ["call.ended"],
        "http://127.0.0.1:9/mine": ["call.queued", "call.ended"],
    }
    assert {d.state for d in states} == {PENDING}
    assert outbox.backlog() == 5


def test_a_change_without_webhooks_queues_no_delivery(stores: tuple[Store, Outbox]) -> None:
    store, outbox = stores
    outbox.sync_config({"other": [Subscription("http://127.0.0.1:9/other")]}, T0)
    created = store.create_call(NEW, T0)
    ended = store.record(step(created.call.uniqueid, CallState.ENDED))
    assert created.deliveries == 0
    assert ended is not None and ended.deliveries == 0
    assert outbox.backlog() == 0


def test_only_the_oldest_pending_event_of_a_call_is_due(stores: tuple[Store, Outbox]) -> None:
    store, outbox = stores
    outbox.sync_config({"default": [Subscription("http://127.0.0.1:9/a")]}, T0)
    first = store.create_call(NEW, T0).call
    store.record(step(first.uniqueid, CallState.AGENT_DIALING))
    second = store.create_call(NEW, T0).call
    due = outbox.due(T0 + timedelta(seconds=5), 10, set())
    # One per call (its queued event); the calls do not wait for each other.
    assert sorted(d.call_id for d in due) == [first.id, second.id]
    head = next(d for d in due if d.call_id == first.id)
    assert outbox.due(T0 + timedelta(seconds=5), 10, {head.outbox_id}) == [
        d for d in due if d.call_id == second.id
    ]
    outbox.attempted(head, Attempt(T0, 200, None, "ok", 0.01), state=DELIVERED)
    later = outbox.due(T0 + timedelta(seconds=5), 10, set())
    assert [
        (d.call_id, d.payload.count('"call.agent_dialing"')) for d in later if d.call_id == first.id
    ] == [(first.id, 1)]


def test_a_retry_is_not_due_before_its_time(stores: tuple[Store, Outbox]) -> None:
    store, outbox = stores
    outbox.sync_config({"default": [Subscription("http://127.0.0.1:9/a")]}, T0)
    store.create_call(NEW, T0)
    [delivery] = outbox.due(T0, 10, set())
    retry_at = T0 + timedelta(seconds=30)
    outbox.attempted(
        delivery, Attempt(T0, 500, "HTTP 500", None, 0.01), state=PENDING, next_attempt_at=retry_at
    )
    assert outbox.due(T0 + timedelta(seconds=29), 10, set()) == []
    [again] = outbox.due(retry_at, 10, set())
    assert (again.outbox_id, again.message_id, again.attempts) == (
        delivery.outbox_id,
        delivery.message_id,
        1,
    )
    assert [a.status for a in outbox.attempts(delivery.outbox_id)] == [500]


def test_a_disabled_endpoint_fails_its_backlog_and_gets_nothing_new(
    stores: tuple[Store, Outbox],
) -> None:
    store, outbox = stores
    outbox.sync_config({"default": [Subscription("http://127.0.0.1:9/a")]}, T0)
    call = store.create_call(NEW, T0).call
    [delivery] = outbox.due(T0, 10, set())
    outbox.disable_endpoint(delivery.endpoint_id, "the receiver answered 410 Gone", T0)
    store.record(step(call.uniqueid, CallState.AGENT_DIALING))
    assert [(d.type, d.state) for d in outbox.for_call(call.id)] == [("call.queued", FAILED)]
    assert outbox.failed()[0].last_error == "endpoint disabled: the receiver answered 410 Gone"
    # An operator's retry sends it again and re-enables the endpoint.
    assert outbox.retry_failed(T0) == 1
    assert [d.call_id for d in outbox.due(T0, 10, set())] == [call.id]


def test_the_configuration_decides_which_tenant_endpoints_live(
    stores: tuple[Store, Outbox],
) -> None:
    store, outbox = stores
    outbox.sync_config({"default": [Subscription("http://127.0.0.1:9/a")]}, T0)
    outbox.sync_config({"default": [Subscription("http://127.0.0.1:9/b")]}, T0)
    call = store.create_call(NEW, T0).call
    assert [d.url for d in outbox.for_call(call.id)] == ["http://127.0.0.1:9/b"]
    outbox.sync_config(
        {"default": [Subscription("http://127.0.0.1:9/a"), Subscription("http://127.0.0.1:9/b")]},
        T0,
    )  # back in the configuration: live again
    call = store.create_call(NEW, T0).call
    assert sorted(d.url for d in outbox.for_call(call.id)) == [
        "http://127.0.0.1:9/a",
        "http://127.0.0.1:9/b",
    ]


def test_the_event_and_its_deliveries_are_one_transaction(
    stores: tuple[Store, Outbox], monkeypatch: pytest.MonkeyPatch
) -> None:
    store, outbox = stores
    outbox.sync_config({"default": [Subscription("http://127.0.0.1:9/a")]}, T0)
    call = store.create_call(NEW, T0).call

    def broken(*_args: object, **_kwargs: object) -> int:
        raise RuntimeError("disk full")

    monkeypatch.setattr("click2call.store.outbox.queue", broken)
    with pytest.raises(RuntimeError):
        store.record(step(call.uniqueid, CallState.AGENT_DIALING))
    # Neither the state change nor its history row survived the failed delivery insert.
    assert store.get(call.id).state is CallState.QUEUED  # type: ignore[union-attr]
    assert [e.type for e in store.events(call)] == ["call.queued"]
    with store.engine.connect() as conn:
        assert len(conn.execute(select(webhook_outbox)).all()) == 1


def test_counts_by_state_stay_within_a_tenant(stores: tuple[Store, Outbox]) -> None:
    store, outbox = stores
    outbox.sync_config(
        {
            "default": [Subscription("http://127.0.0.1:9/a")],
            "other": [Subscription("http://127.0.0.1:9/b")],
        },
        T0,
    )
    call = store.create_call(NEW, T0).call
    store.record(step(call.uniqueid, CallState.ENDED))
    assert outbox.tenant_counts("default") == {PENDING: 2, DELIVERED: 0, FAILED: 0}
    assert outbox.tenant_counts("other") == {PENDING: 0, DELIVERED: 0, FAILED: 0}


def test_a_claimed_delivery_is_no_other_nodes_until_settled_or_its_lease_ends(
    database: Engine,
) -> None:
    store = Store(database)
    a = Outbox(database, "a", timedelta(seconds=60))
    b = Outbox(database, "b", timedelta(seconds=60))
    a.sync_config({"default": [Subscription("http://127.0.0.1:9/a")]}, T0)
    call = store.create_call(NEW, T0).call
    store.record(step(call.uniqueid, CallState.AGENT_DIALING))
    [head] = a.claim(T0, 10, set())
    assert head.payload.count('"call.queued"') == 1
    assert b.claim(T0, 10, set()) == []  # leased to a; the next event waits behind it
    assert b.due(T0, 10, set()) == []
    a.release([head.outbox_id])  # claimed, then not sent after all: free at once
    assert [d.outbox_id for d in b.claim(T0, 10, set())] == [head.outbox_id]
    [taken_over] = b.claim(T0 + timedelta(seconds=61), 10, set())  # a died while sending
    assert taken_over.outbox_id == head.outbox_id
    b.attempted(taken_over, Attempt(T0, 200, None, "ok", 0.01), state=DELIVERED)
    [after] = a.claim(T0 + timedelta(seconds=61), 10, set())
    assert after.payload.count('"call.agent_dialing"') == 1


def test_a_restarted_node_takes_back_at_once_what_its_previous_run_had_leased(
    database: Engine,
) -> None:
    store = Store(database)
    before = Outbox(database, "a", timedelta(seconds=60))
    before.sync_config({"default": [Subscription("http://127.0.0.1:9/a")]}, T0)
    store.create_call(NEW, T0)
    [head] = before.claim(T0, 10, set())  # then SIGKILL, mid-attempt
    assert Outbox(database, "b").release_own() == 0  # another node's lease stays
    again = Outbox(database, "a", timedelta(seconds=60))
    assert again.release_own() == 1
    assert [d.outbox_id for d in again.claim(T0, 10, set())] == [head.outbox_id]


def test_nodes_claiming_at_once_never_take_the_same_delivery(database: Engine) -> None:
    if database.dialect.name == "sqlite":
        pytest.skip("a SQLite file serves one process, whose one deliverer claims alone")
    store = Store(database)
    Outbox(database).sync_config({"default": [Subscription("http://127.0.0.1:9/a")]}, T0)
    for _ in range(60):
        store.create_call(NEW, T0)
    nodes = [Outbox(database, f"n{i}") for i in range(4)]
    claimed: list[list[int]] = [[] for _ in nodes]
    start = threading.Barrier(len(nodes))

    def claim(i: int) -> None:
        start.wait()
        while batch := nodes[i].claim(T0, 5, set()):
            claimed[i].extend(d.outbox_id for d in batch)

    threads = [threading.Thread(target=claim, args=(i,)) for i in range(len(nodes))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    every = [outbox_id for ids in claimed for outbox_id in ids]
    assert len(every) == len(set(every)) == 60


def test_a_batch_queues_each_event_of_a_call_for_its_own_and_the_tenants_endpoints(
    stores: tuple[Store, Outbox],
) -> None:
    store, outbox = stores
    outbox.sync_config({"default": [Subscription("http://127.0.0.1:9/a")]}, T0)
    own = Subscription("http://127.0.0.1:9/own", frozenset({"call.ended"}))
    with store.writing() as writes:  # one transaction: the call is read once, then kept
        call = writes.create_call(NEW, T0, own).call
        changes = [
            writes.record(step(call.uniqueid, state))
            for state in (CallState.AGENT_DIALING, CallState.AGENT_RINGING)
        ]
        ended = writes.record(
            CallEvent(call.uniqueid, CallState.ENDED, T0, Result.AGENT_NO_ANSWER, "no answer")
        )
    assert [c.event.sequence for c in changes if c] == [2, 3]
    assert ended is not None and ended.event.sequence == 4
    assert store.get(call.id).state is CallState.ENDED  # type: ignore[union-attr]
    with store.engine.connect() as conn:
        rows = conn.execute(select(webhook_outbox.c.endpoint_id, webhook_outbox.c.event_id)).all()
    by_endpoint: dict[int, int] = {}
    for endpoint_id, _event in rows:
        by_endpoint[endpoint_id] = by_endpoint.get(endpoint_id, 0) + 1
    assert sorted(by_endpoint.values()) == [1, 4]  # its own wants the end only; the tenant's all


def test_a_tenant_at_its_cap_leaves_the_slots_to_the_others(stores: tuple[Store, Outbox]) -> None:
    """max_in_flight_per_tenant: the deliverer names the tenants with every slot taken, and
    the next claim skips them rather than filling its room with their backlog."""
    store, outbox = stores
    outbox.sync_config(
        {
            "default": [Subscription("http://127.0.0.1:9/busy")],
            "other": [Subscription("http://127.0.0.1:9/other")],
        },
        T0,
    )
    for _ in range(3):
        store.create_call(NEW, T0)
    other = store.create_call(
        dataclasses.replace(NEW, tenant="other"), T0 + timedelta(seconds=1)
    ).call
    later = T0 + timedelta(seconds=5)
    first = outbox.claim(later, 2, set(), set(), {"default"})
    assert [(d.tenant, d.call_id) for d in first] == [("other", other.id)]
    assert [d.tenant for d in outbox.due(later, 10, set())] == ["default"] * 3


def test_an_endpoint_gone_gets_nothing_more_even_from_an_attempt_in_flight(
    stores: tuple[Store, Outbox],
) -> None:
    """Two deliveries sent at once; the first answers 410 Gone (the endpoint is disabled,
    its backlog failed), the second times out afterwards: it stays failed, never due."""
    store, outbox = stores
    outbox.sync_config({"default": [Subscription("https://crm.example/hook")]}, T0)
    store.create_call(NEW, T0)
    store.create_call(NEW, T0)
    first, second = outbox.claim(T0, 10, set())
    outbox.settle([Settled(first, Attempt(T0, 410, "HTTP 410", None, 0.1), FAILED)])
    outbox.disable_endpoint(first.endpoint_id, "the receiver answered 410 Gone", T0)
    later = T0 + timedelta(seconds=1)
    outbox.settle([Settled(second, Attempt(later, None, "timeout", None, 15), PENDING, later)])
    assert outbox.due(later + timedelta(hours=1), 10, set()) == []
    assert [d.state for d in outbox.for_call(second.call_id)] == [FAILED]
    assert len(outbox.attempts(second.outbox_id)) == 1  # the attempt is still on record


def test_a_reply_with_a_nul_byte_is_stored(stores: tuple[Store, Outbox]) -> None:
    """PostgreSQL refuses NUL in text, and a gzip reply starts with one: the excerpt and
    error are stored with U+FFFD in its place rather than failing the batch."""
    store, outbox = stores
    outbox.sync_config({"default": [Subscription("http://127.0.0.1:9/a")]}, T0)
    store.create_call(NEW, T0)
    [head] = outbox.claim(T0, 10, set())
    attempt = Attempt(T0, 200, "odd\x00error", "\x1f\ufffd\x08\x00\x00", 0.01)
    outbox.settle([Settled(head, attempt, DELIVERED)])
    [stored] = outbox.attempts(head.outbox_id)
    assert (stored.error, stored.response_excerpt) == (
        "odd\ufffderror",
        "\x1f\ufffd\x08\ufffd\ufffd",
    )
