from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import Engine

from click2call.store import NewCall, Store
from click2call.store.hangup_requests import HangupRequest, HangupRequests

T0 = datetime(2026, 11, 25, 8, 0, tzinfo=UTC)
NEW = NewCall("default", "extension", "sip", "200", "0502760206", "036411111", "0502760206", None)


def test_a_request_asked_on_one_node_is_taken_once_by_the_owner(database: Engine) -> None:
    call = Store(database, "a:8080").create_call(NEW, T0).call
    on_a, on_b = HangupRequests(database, "a:8080"), HangupRequests(database, "b:8080")
    on_b.ask(call.id, "a:8080", T0)
    assert on_b.take(T0) == []  # not b's to carry out
    assert on_a.take(T0) == [HangupRequest("default", call.uniqueid, "b:8080")]
    assert on_a.take(T0) == []  # once
