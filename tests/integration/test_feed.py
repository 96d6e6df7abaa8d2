"""The live feed over real HTTP while SIPp plays the phones."""

from __future__ import annotations

import httpx

from click2call.calls import CallState
from tests.integration.conftest import Server
from tests.sse_reader import FeedReader

ANSWERED = [f"call.{state.value}" for state in CallState]  # every step, in order


def place(server: Server) -> int:
    with server.client() as client:
        reply = client.post("/api/v1/calls", json={"extension": "200", "destination": "0502760206"})
    assert reply.status_code == 201, reply.text
    call_id: int = reply.json()["id"]
    return call_id


def test_a_call_s_states_arrive_in_order(server: Server) -> None:
    feed = FeedReader(server.base_url).start()
    try:
        agent = server.peer("agent_answer.xml", server.pbx_port)
        destination = server.peer("destination_hangup.xml", server.trunk_port)
        call_id = place(server)
        events = feed.until(call_id, "call.ended")
    finally:
        feed.stop()
    assert agent.wait(20) == 0 and destination.wait(20) == 0
    assert [e.type for e in events] == ANSWERED
    assert [e.body["sequence"] for e in events] == list(range(1, 9))
    assert [e.id for e in events] == sorted(e.id for e in events)
    assert events[-1].body["call"]["result"] == "completed"
    assert events[-1].body["call"]["talk_seconds"] >= 0.9


def test_a_client_that_reconnects_with_last_event_id_misses_nothing(server: Server) -> None:
    first = FeedReader(server.base_url).start()
    agent = server.peer("agent_answer.xml", server.pbx_port)
    destination = server.peer("destination_hangup.xml", server.trunk_port)
    call_id = place(server)
    try:
        before = first.until(call_id, "call.agent_ringing")
    finally:
        first.stop()  # gone while the call goes on
    server.wait_for(call_id)  # every later event is stored while nobody listens
    last = str(before[-1].id)
    second = FeedReader(server.base_url, {"Last-Event-ID": last}).start()
    try:
        after = second.until(call_id, "call.ended")
    finally:
        second.stop()
    assert agent.wait(20) == 0 and destination.wait(20) == 0
    assert [e.type for e in before + after] == ANSWERED  # no gap, no repeat
    via_query = httpx.Client(base_url=server.base_url, timeout=5)
    with via_query.stream("GET", f"/api/v1/events?last_event_id={last}") as reply:
        lines = reply.iter_lines()
        assert next(lines) == "retry: 2000"
        assert next(lines) == ""
        assert next(lines) == f"id: {after[0].id}"
    via_query.close()


def test_a_malformed_last_event_id_is_refused_naming_it(server: Server) -> None:
    with server.client() as client:
        reply = client.get("/api/v1/events", headers={"Last-Event-ID": "12; DROP"})
    assert reply.status_code == 400
    assert reply.json()["error"]["field"] == "Last-Event-ID"
