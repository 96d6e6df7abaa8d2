"""Node heartbeats and the claim of a lost node's calls (store/nodes.py), on SQLite and
PostgreSQL."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import Engine

from click2call.calls import CallEvent, CallState, Result
from click2call.store import Store
from click2call.store.nodes import Claim, NodeRegistry, OrphanCall
from tests.unit.test_store import NEW

T0 = datetime(2026, 11, 25, 8, 0, tzinfo=UTC)
LEASE = timedelta(seconds=10)


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def live_call(store: Store, state: CallState = CallState.AGENT_RINGING) -> str:
    uniqueid = store.create_call(NEW, T0).call.uniqueid
    assert uniqueid is not None
    for step in (CallState.AGENT_DIALING, state):
        store.record(CallEvent(uniqueid, step, T0))
    return uniqueid


def test_a_node_is_lost_only_past_the_lease_and_never_to_itself(database: Engine) -> None:
    a, b = NodeRegistry(database, "a"), NodeRegistry(database, "b")
    assert not a.beat(at(0))  # first beat: no row before
    assert b.beat(at(0)) is False
    assert a.beat(at(5))  # a row to refresh
    assert b.claim_lost(at(15), LEASE) == []  # a beat 10 s ago: not past the lease
    assert a.claim_lost(at(100), LEASE) == [Claim("b", at(0), [])]  # b silent 100 s
    assert a.claim_lost(at(100), LEASE) == []  # claimed once: its row is gone


def test_a_claim_moves_the_lost_nodes_live_calls_with_their_sip_state(database: Engine) -> None:
    a_store, b_store = Store(database, "a"), Store(database, "b")
    a, b = NodeRegistry(database, "a"), NodeRegistry(database, "b")
    a.beat(at(0))
    ringing = live_call(a_store)
    connected = live_call(a_store, CallState.AGENT_ANSWERED)
    assert a_store.save_sip_state(connected, '{"phase": "x"}', T0)
    ended = live_call(a_store)
    a_store.record(CallEvent(ended, CallState.ENDED, T0, Result.ERROR, "why"))
    b_store.create_call(NEW, T0)  # b's own: not b's to claim from a

    (claim,) = b.claim_lost(at(30), LEASE)
    assert (claim.node, claim.silent_since) == ("a", at(0))
    assert claim.calls == [
        OrphanCall(ringing, "default", CallState.AGENT_RINGING, None),
        OrphanCall(connected, "default", CallState.AGENT_ANSWERED, '{"phase": "x"}'),
    ]
    assert a_store.active_uniqueids() == []  # a, back, finds nothing of its own left
    assert set(b_store.active_uniqueids()) >= {ringing, connected}


def test_a_node_back_within_the_lease_keeps_its_calls(database: Engine) -> None:
    a_store = Store(database, "a")
    a, b = NodeRegistry(database, "a"), NodeRegistry(database, "b")
    a.beat(at(0))
    uniqueid = live_call(a_store)
    assert a.beat(at(8))  # restarted 8 s later, inside the 10 s lease
    assert b.claim_lost(at(15), LEASE) == []
    assert a_store.active_uniqueids() == [uniqueid]


def test_a_node_that_left_gracefully_is_not_taken_over(database: Engine) -> None:
    a, b = NodeRegistry(database, "a"), NodeRegistry(database, "b")
    a.beat(at(0))
    a.leave()
    assert b.claim_lost(at(100), LEASE) == []


def test_two_survivors_sweeping_at_once_claim_each_lost_call_once(database: Engine) -> None:
    if database.dialect.name == "sqlite":
        pytest.skip("one process on SQLite: no second survivor")
    a_store = Store(database, "a")
    NodeRegistry(database, "a").beat(at(0))
    calls = {live_call(a_store) for _ in range(20)}
    survivors = [NodeRegistry(database, name) for name in ("b", "c", "d")]
    start = threading.Barrier(len(survivors))

    def sweep(registry: NodeRegistry) -> list[Claim]:
        start.wait()
        return registry.claim_lost(at(30), LEASE)

    with ThreadPoolExecutor(len(survivors)) as pool:
        claims = [claim for found in pool.map(sweep, survivors) for claim in found]
    assert len(claims) == 1
    assert {call.uniqueid for call in claims[0].calls} == calls
