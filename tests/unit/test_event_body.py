"""The stored event body, written out by hand for speed, is json.dumps's text byte for byte."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

from hypothesis import given
from hypothesis import strategies as st

from click2call.calls import CallState, Result
from click2call.store.event_body import call_body, event_body, fixed_parts
from click2call.store.repository import StoredCall

T0 = datetime(2026, 11, 24, 8, 0, 0, 123456, tzinfo=UTC)


def reference(call: StoredCall, sequence: int, type_: str, at: datetime) -> str:
    body = {
        "type": type_,
        "sequence": sequence,
        "timestamp": at.isoformat(),
        "call": call_body(call),
    }
    return json.dumps(body, separators=(",", ":"))


def a_call(text: str, optional: str | None, state: CallState, seconds: float) -> StoredCall:
    ended = state is CallState.ENDED
    return StoredCall(
        id=12,
        uniqueid="1795564800.12",
        tenant=text,
        agent_kind="extension",
        agent_tech=optional,
        agent_number="200",
        destination="0502760206",
        destination_caller_id=text,
        agent_caller_id="0502760206",
        foreignid=optional,
        state=state,
        result=Result.COMPLETED if ended else None,
        cause=text if ended else None,
        created_at=T0,
        agent_answered_at=T0 + timedelta(seconds=seconds / 3) if seconds else None,
        connected_at=T0 + timedelta(seconds=seconds / 2) if seconds else None,
        ended_at=T0 + timedelta(seconds=seconds) if ended else None,
        last_sequence=3,
        node=None,
    )


@given(
    text=st.text(),
    optional=st.none() | st.text(),
    state=st.sampled_from(CallState),
    seconds=st.floats(min_value=0, max_value=1e6, allow_nan=False),
)
def test_the_body_is_json_dumps_text(
    text: str, optional: str | None, state: CallState, seconds: float
) -> None:
    call = a_call(text, optional, state, seconds)
    at = T0 + timedelta(seconds=seconds)
    assert event_body(call, 3, "call.x", at) == reference(call, 3, "call.x", at)
    # With the parts no event changes written once for the call (a batch of its events):
    fixed = fixed_parts(a_call(text, optional, CallState.QUEUED, 0))
    assert event_body(call, 3, "call.x", at, fixed) == reference(call, 3, "call.x", at)


def test_quotes_controls_and_other_scripts_are_escaped_as_json_dumps_does() -> None:
    call = a_call('quote " back \\ tab \t nul \0 שלום 😀', None, CallState.ENDED, 61.5)
    assert event_body(call, 8, "call.ended", T0) == reference(call, 8, "call.ended", T0)
