from __future__ import annotations

from datetime import UTC, datetime

import pytest

from click2call.calls import TRANSITIONS, CallEvent, CallState, Result, advance
from click2call.errors import IllegalTransition

AT = datetime(2026, 1, 1, tzinfo=UTC)


def event(state: CallState, result: Result | None = None) -> CallEvent:
    return CallEvent("1.1", state, AT, result)


def test_the_happy_path_is_a_chain_of_legal_moves() -> None:
    path = list(CallState)
    state = path[0]
    for nxt in path[1:]:
        result = Result.COMPLETED if nxt is CallState.ENDED else None
        assert advance(state, event(nxt, result)) is nxt
        state = nxt


@pytest.mark.parametrize("state", [s for s in CallState if s is not CallState.ENDED])
def test_every_live_state_can_end(state: CallState) -> None:
    assert advance(state, event(CallState.ENDED, Result.ERROR)) is CallState.ENDED


def test_ended_is_final() -> None:
    assert TRANSITIONS[CallState.ENDED] == frozenset()
    with pytest.raises(IllegalTransition):
        advance(CallState.ENDED, event(CallState.CONNECTED))


def test_going_backwards_is_a_bug() -> None:
    with pytest.raises(IllegalTransition, match="connected cannot go to agent_ringing"):
        advance(CallState.CONNECTED, event(CallState.AGENT_RINGING))


def test_a_second_ringing_changes_nothing() -> None:
    assert advance(CallState.AGENT_RINGING, event(CallState.AGENT_RINGING)) is None
    assert advance(CallState.DESTINATION_RINGING, event(CallState.DESTINATION_RINGING)) is None


def test_the_agent_may_answer_without_ringing_first() -> None:
    assert advance(CallState.AGENT_DIALING, event(CallState.AGENT_ANSWERED)) is not None


def test_a_result_goes_with_ended_only() -> None:
    with pytest.raises(ValueError, match="result"):
        CallEvent("1.1", CallState.CONNECTED, AT, Result.COMPLETED)
    with pytest.raises(ValueError, match="result"):
        CallEvent("1.1", CallState.ENDED, AT)
