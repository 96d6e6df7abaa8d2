"""Reading and writing calls. Every state change is one transaction: row update + event row."""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from datetime import datetime
from typing import Any

from sqlalchemy import Engine, Row, bindparam, insert, select, update

from click2call.calls import CallEvent, CallState, Result, advance
from click2call.store.schema import call_events, calls

_TIMESTAMP_OF_STATE = {
    CallState.AGENT_ANSWERED: "agent_answered_at",
    CallState.CONNECTED: "connected_at",
    CallState.ENDED: "ended_at",
}


@dataclass(frozen=True, slots=True)
class NewCall:
    tenant: str
    agent_kind: str
    agent_tech: str | None
    agent_number: str
    destination: str
    destination_caller_id: str
    agent_caller_id: str
    foreignid: str | None


@dataclass(frozen=True, slots=True)
class StoredCall:
    id: int
    uniqueid: str
    tenant: str
    agent_kind: str
    agent_tech: str | None
    agent_number: str
    destination: str
    destination_caller_id: str
    agent_caller_id: str
    foreignid: str | None
    state: CallState
    result: Result | None
    cause: str | None
    created_at: datetime
    agent_answered_at: datetime | None
    connected_at: datetime | None
    ended_at: datetime | None


@dataclass(frozen=True, slots=True)
class StoredEvent:
    state: CallState
    result: Result | None
    cause: str | None
    at: datetime


def _call(row: Row[Any]) -> StoredCall:
    values = row._asdict()
    values["state"] = CallState(values["state"])
    values["result"] = Result(values["result"]) if values["result"] else None
    return StoredCall(**values)


# Built once: SQLAlchemy then reuses their compiled form on every call.
_INSERT_CALL = insert(calls)
_SET_UNIQUEID = (
    update(calls).where(calls.c.id == bindparam("call_id")).values(uniqueid=bindparam("uniqueid"))
)
_INSERT_EVENT = insert(call_events)
_NO_EVENT = {"result": None, "cause": None}
_BY_UNIQUEID = select(calls).where(calls.c.uniqueid == bindparam("uniqueid"))


def uniqueid_for(call_id: int, created_at: datetime) -> str:
    """The PBX-style `epoch.sequence` id; the sequence is the row id, so it never repeats."""
    return f"{int(created_at.timestamp())}.{call_id}"


class Store:
    def __init__(self, engine: Engine) -> None:
        self._engine = engine

    def close(self) -> None:
        self._engine.dispose()

    def create_call(self, new: NewCall, now: datetime) -> StoredCall:
        """Insert a queued call with its first event; the row exists before any signalling."""
        with self._engine.begin() as conn:
            values = {**asdict(new), "state": CallState.QUEUED.value, "created_at": now}
            call_id = int(conn.execute(_INSERT_CALL, values).inserted_primary_key[0])  # type: ignore[index]
            uniqueid = uniqueid_for(call_id, now)
            conn.execute(_SET_UNIQUEID, {"call_id": call_id, "uniqueid": uniqueid})
            conn.execute(
                _INSERT_EVENT, {**_NO_EVENT, "call_id": call_id, "state": "queued", "at": now}
            )
        return StoredCall(
            id=call_id,
            uniqueid=uniqueid,
            **asdict(new),
            state=CallState.QUEUED,
            result=None,
            cause=None,
            created_at=now,
            agent_answered_at=None,
            connected_at=None,
            ended_at=None,
        )

    def record(self, event: CallEvent) -> StoredCall | None:
        """Apply an engine event to its call. None when the event changes nothing.

        Raises LookupError for an unknown call and IllegalTransition for a move
        the state table forbids.
        """
        with self._engine.begin() as conn:
            row = conn.execute(_BY_UNIQUEID, {"uniqueid": event.uniqueid}).one_or_none()
            if row is None:
                raise LookupError(event.uniqueid)
            call = _call(row)
            new_state = advance(call.state, event)
            if new_state is None:
                return None
            cause = event.cause[:256] if event.cause is not None else None
            changes: dict[str, Any] = {"state": new_state}
            if stamp := _TIMESTAMP_OF_STATE.get(new_state):
                changes[stamp] = event.at
            if event.result is not None:
                changes["result"] = event.result
            if cause is not None:
                changes["cause"] = cause
            conn.execute(update(calls).where(calls.c.id == call.id).values(**changes))
            conn.execute(
                _INSERT_EVENT,
                {
                    "call_id": call.id,
                    "state": new_state.value,
                    "result": event.result.value if event.result else None,
                    "cause": cause,
                    "at": event.at,
                },
            )
        return replace(call, **changes)

    def get(self, call_id: int) -> StoredCall | None:
        with self._engine.connect() as conn:
            row = conn.execute(select(calls).where(calls.c.id == call_id)).one_or_none()
        return _call(row) if row else None

    def get_by_uniqueid(self, uniqueid: str) -> StoredCall | None:
        with self._engine.connect() as conn:
            row = conn.execute(select(calls).where(calls.c.uniqueid == uniqueid)).one_or_none()
        return _call(row) if row else None

    def find(
        self, *, tenant: str | None = None, foreignid: str | None = None, limit: int = 100
    ) -> list[StoredCall]:
        """Newest first."""
        query = select(calls).order_by(calls.c.id.desc()).limit(limit)
        if tenant is not None:
            query = query.where(calls.c.tenant == tenant)
        if foreignid is not None:
            query = query.where(calls.c.foreignid == foreignid)
        with self._engine.connect() as conn:
            return [_call(row) for row in conn.execute(query)]

    def events(self, call_id: int) -> list[StoredEvent]:
        query = select(call_events).where(call_events.c.call_id == call_id)
        with self._engine.connect() as conn:
            rows = conn.execute(query.order_by(call_events.c.id)).all()
        return [
            StoredEvent(CallState(r.state), Result(r.result) if r.result else None, r.cause, r.at)
            for r in rows
        ]

    def active_uniqueids(self) -> list[str]:
        query = select(calls.c.uniqueid).where(calls.c.state != CallState.ENDED.value)
        with self._engine.connect() as conn:
            return [r.uniqueid for r in conn.execute(query)]
