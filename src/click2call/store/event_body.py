"""The body of a stored call event: what webhooks send and the live feed streams.

Built once, when the event is stored, so every delivery of it (and every retry) carries
the same bytes, and the call as it stood at that step rather than as it stands later.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from click2call.store.repository import StoredCall


def _seconds(start: datetime | None, end: datetime | None) -> float | None:
    if start is None or end is None:
        return None
    return round((end - start).total_seconds(), 3)


def durations(call: StoredCall) -> dict[str, float | None]:
    """ring: created until connected (or ended unconnected); talk: connected until ended;
    total: created until ended. None while not known yet."""
    return {
        "ring_seconds": _seconds(call.created_at, call.connected_at or call.ended_at),
        "talk_seconds": _seconds(call.connected_at, call.ended_at),
        "total_seconds": _seconds(call.created_at, call.ended_at),
    }


def _time(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def call_body(call: StoredCall) -> dict[str, Any]:
    return {
        "id": call.id,
        "uniqueid": call.uniqueid,
        "tenant": call.tenant,
        "foreignid": call.foreignid,
        "agent": {"kind": call.agent_kind, "tech": call.agent_tech, "number": call.agent_number},
        "destination": call.destination,
        "destination_caller_id": call.destination_caller_id,
        "agent_caller_id": call.agent_caller_id,
        "state": call.state.value,
        "result": call.result.value if call.result else None,
        "cause": call.cause,
        "created_at": _time(call.created_at),
        "agent_answered_at": _time(call.agent_answered_at),
        "connected_at": _time(call.connected_at),
        "ended_at": _time(call.ended_at),
        **durations(call),
    }


Fixed = tuple[str, str]
"""The parts of a call's body that no event changes (`fixed_parts`)."""


def fixed_parts(call: StoredCall) -> Fixed:
    """The call's ids, parties and numbers, and its creation time, as event_body writes
    them: the same in each of its events, so a batch holding several writes them once."""
    return (
        f'"id":{call.id:d},"uniqueid":{_json(call.uniqueid)},'
        f'"tenant":{_json(call.tenant)},"foreignid":{_json(call.foreignid)},'
        f'"agent":{{"kind":{_json(call.agent_kind)},"tech":{_json(call.agent_tech)},'
        f'"number":{_json(call.agent_number)}}},"destination":{_json(call.destination)},'
        f'"destination_caller_id":{_json(call.destination_caller_id)},'
        f'"agent_caller_id":{_json(call.agent_caller_id)}',
        _json(_time(call.created_at)),
    )


def event_body(
    call: StoredCall, sequence: int, type_: str, at: datetime, fixed: Fixed | None = None
) -> str:
    """`{"type", "sequence", "timestamp", "call": call_body(call)}` as compact JSON;
    `fixed`: the call's `fixed_parts`, when already written.

    Written out here rather than by json.dumps of those dicts, which cost several times
    as much on every stored event (`python -m bench.store`); the text is the same, byte
    for byte (tests/unit/test_event_body.py)."""
    ring, talk, total = durations(call).values()
    identity, created_at = fixed or fixed_parts(call)
    return (
        f'{{"type":{_json(type_)},"sequence":{sequence:d},"timestamp":{_json(at.isoformat())},'
        f'"call":{{{identity},"state":{_json(call.state.value)},'
        f'"result":{_json(call.result.value if call.result else None)},'
        f'"cause":{_json(call.cause)},"created_at":{created_at},'
        f'"agent_answered_at":{_json(_time(call.agent_answered_at))},'
        f'"connected_at":{_json(_time(call.connected_at))},'
        f'"ended_at":{_json(_time(call.ended_at))},"ring_seconds":{_number(ring)},'
        f'"talk_seconds":{_number(talk)},"total_seconds":{_number(total)}}}}}'
    )


_quoted = json.encoder.encode_basestring_ascii  # what json.dumps writes for a str


def _json(value: str | None) -> str:
    return "null" if value is None else _quoted(value)


def _number(value: float | None) -> str:
    return "null" if value is None else float.__repr__(value)  # as json.dumps, finite
