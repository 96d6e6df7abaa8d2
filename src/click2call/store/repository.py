"""Reading and writing calls.

Every state change is one transaction: the call row, its `call_events` row (with the
call's next sequence number and the event body), and one outbox row per webhook
endpoint that wants the event (store/outbox.py).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, replace
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Engine, Row, bindparam, insert, or_, select, update

from click2call.calls import CallEvent, CallState, Result, advance, event_type
from click2call.store import admission, keys, outbox, sip_dialogs
from click2call.store.event_body import event_body
from click2call.store.keys import AuditEntry
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
    last_sequence: int = 0
    node: str | None = None  # the node that placed it (None: stored before nodes had names)


class UnknownCall(LookupError):
    """No stored call has this uniqueid."""


@dataclass(frozen=True, slots=True)
class StoredEvent:
    """One step of a call's append-only history; `id` orders all events of all calls."""

    id: int
    call_id: int
    sequence: int
    type: str
    state: CallState
    result: Result | None
    cause: str | None
    at: datetime
    payload: str


@dataclass(frozen=True, slots=True)
class Change:
    """A stored state change: the call as it now stands and the event that moved it."""

    call: StoredCall
    event: StoredEvent


def _call(row: Row[Any]) -> StoredCall:
    values = row._asdict()
    values["state"] = CallState(values["state"])
    values["result"] = Result(values["result"]) if values["result"] else None
    return StoredCall(**values)


def _event(row: Row[Any], call: StoredCall | None = None) -> StoredEvent:
    state = CallState(row.state)
    result = Result(row.result) if row.result else None
    # Rows stored before bodies were kept get one from the call as it stands now.
    payload = row.payload or (
        event_body(call, row.sequence, row.type, row.at) if call is not None else "{}"
    )
    return StoredEvent(
        row.id, row.call_id, row.sequence, row.type, state, result, row.cause, row.at, payload
    )


# Built once: SQLAlchemy then reuses their compiled form on every call.
_INSERT_CALL = insert(calls)
_SET_UNIQUEID = (
    update(calls).where(calls.c.id == bindparam("call_id")).values(uniqueid=bindparam("uniqueid"))
)
_INSERT_EVENT = insert(call_events)
# Locked until the change commits, so two writers of one call (two nodes on PostgreSQL)
# take turns and never read the same last_sequence; SQLite locks the whole file anyway.
_BY_UNIQUEID_FOR_UPDATE = (
    select(calls).where(calls.c.uniqueid == bindparam("uniqueid")).with_for_update()
)
# Every column an event may move, all bound: one compiled statement for every event
# (a statement built per event cost more CPU than running it).
_MOVED = ("state", "last_sequence", "result", "cause", *_TIMESTAMP_OF_STATE.values())
_ADVANCE = (
    update(calls)
    .where(calls.c.id == bindparam("call_id"))
    .values({column: bindparam(f"new_{column}") for column in _MOVED})
)


def uniqueid_for(call_id: int, created_at: datetime) -> str:
    """The PBX-style `epoch.sequence` id; the sequence is the row id, so it never repeats."""
    return f"{int(created_at.timestamp())}.{call_id}"


class Writes:
    """Changes made in one transaction (Store.writing). What it read or wrote of a call
    (the row, its webhook endpoints) it keeps for the transaction's later changes: a
    batch often holds several events of one call."""

    def __init__(self, conn: Connection, node: str | None) -> None:
        self._conn = conn
        self._node = node
        self._calls: dict[str, StoredCall] = {}  # uniqueid → the call as it now stands
        self._endpoints: dict[int, outbox.Endpoints] = {}  # call id → its endpoints

    def create_call(
        self,
        new: NewCall,
        now: datetime,
        callback: outbox.Subscription | None = None,
        limits: admission.CallLimits | None = None,
    ) -> Change:
        """Insert a queued call with its first event; the row exists before any signalling.

        `callback` subscribes the call's own URL before its first event is queued; with
        `limits`, the call is first admitted cluster-wide (RateLimited before anything is
        written: the transaction's other changes stand)."""
        conn = self._conn
        if limits is not None:
            admission.admit(conn, new.tenant, new.agent_number, limits, now)
        values = {
            **asdict(new),
            "state": CallState.QUEUED.value,
            "created_at": now,
            "last_sequence": 1,
            "node": self._node,
        }
        call_id = int(conn.execute(_INSERT_CALL, values).inserted_primary_key[0])  # type: ignore[index]
        uniqueid = uniqueid_for(call_id, now)
        conn.execute(_SET_UNIQUEID, {"call_id": call_id, "uniqueid": uniqueid})
        call = StoredCall(
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
            last_sequence=1,
            node=self._node,
        )
        if callback is not None:
            outbox.subscribe_call(conn, call.tenant, call.id, callback, now)
        return Change(call, self._append(call, None, now))

    def record(self, event: CallEvent) -> Change | None:
        """Apply an engine event to its call. None when the event changes nothing.

        Raises UnknownCall and IllegalTransition before writing anything: the
        transaction's other changes stand (any other error spoils the transaction).
        """
        conn = self._conn
        call = self._calls.get(event.uniqueid)
        if call is None:
            found = conn.execute(_BY_UNIQUEID_FOR_UPDATE, {"uniqueid": event.uniqueid})
            if (row := found.one_or_none()) is None:
                raise UnknownCall(event.uniqueid)
            call = _call(row)
        new_state = advance(call.state, event)
        if new_state is None:
            return None
        cause = event.cause[:256] if event.cause is not None else None
        changes: dict[str, Any] = {"state": new_state, "last_sequence": call.last_sequence + 1}
        if stamp := _TIMESTAMP_OF_STATE.get(new_state):
            changes[stamp] = event.at
        if event.result is not None:
            changes["result"] = event.result
        if cause is not None:
            changes["cause"] = cause
        call = replace(call, **changes)
        conn.execute(
            _ADVANCE,
            {"call_id": call.id, **{f"new_{column}": getattr(call, column) for column in _MOVED}},
        )
        if new_state is CallState.ENDED:
            sip_dialogs.forget(conn, call.id)
        return Change(call, self._append(call, cause, event.at))

    def _append(self, call: StoredCall, cause: str | None, at: datetime) -> StoredEvent:
        """The event row for the call's newest state, and its deliveries."""
        self._calls[call.uniqueid] = call
        sequence, type_ = call.last_sequence, event_type(call.state, call.result)
        payload = event_body(call, sequence, type_, at)
        values = {
            "call_id": call.id,
            "state": call.state.value,
            "result": call.result.value if call.result and call.state is CallState.ENDED else None,
            "cause": cause,
            "at": at,
            "sequence": sequence,
            "type": type_,
            "payload": payload,
        }
        event_id = int(self._conn.execute(_INSERT_EVENT, values).inserted_primary_key[0])  # type: ignore[index]
        endpoints = self._endpoints.get(call.id)
        if endpoints is None:
            endpoints = outbox.endpoints_of_call(self._conn, call.tenant, call.id)
            self._endpoints[call.id] = endpoints
        outbox.queue(self._conn, call.tenant, call.id, event_id, type_, at, endpoints)
        return StoredEvent(
            event_id, call.id, sequence, type_, call.state, call.result, cause, at, payload
        )

    def save_sip_state(self, uniqueid: str, state: str, now: datetime) -> bool:
        """Keep a live call's SIP state (snapshot JSON); False when the call has ended or is
        unknown, and nothing is kept. Written by the node's one writer of that call, in
        line with its events (tracking.py), so no row lock is needed."""
        return sip_dialogs.save(self._conn, uniqueid, state, now)

    def audit(self, entry: AuditEntry) -> None:
        keys.write_audit(self._conn, entry)


class Store:
    def __init__(self, engine: Engine, node: str | None = None) -> None:
        """`node` names this process among those sharing the database; its calls carry it."""
        self._engine = engine
        self._node = node

    @property
    def engine(self) -> Engine:
        return self._engine

    @property
    def writers(self) -> int:
        """How many threads should write at once: one for SQLite, which lets one writer
        at a time into a file (more would wait on its lock and race in admission)."""
        return 1 if self._engine.dialect.name == "sqlite" else 4

    def close(self) -> None:
        self._engine.dispose()

    def create_call(
        self,
        new: NewCall,
        now: datetime,
        callback: outbox.Subscription | None = None,
        limits: admission.CallLimits | None = None,
    ) -> Change:
        """Insert a queued call with its first event; see Writes.create_call."""
        with self.writing() as writes:
            return writes.create_call(new, now, callback, limits)

    def record(self, event: CallEvent) -> Change | None:
        """Apply an engine event to its call. None when the event changes nothing.

        Raises UnknownCall (a LookupError) and IllegalTransition for a move
        the state table forbids.
        """
        with self.writing() as writes:
            return writes.record(event)

    @contextmanager
    def writing(self) -> Iterator[Writes]:
        """Several changes in one transaction, committed when the block ends."""
        with self._engine.begin() as conn:
            yield Writes(conn, self._node)

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

    def events(self, call: StoredCall) -> list[StoredEvent]:
        """The call's history, in sequence order."""
        query = select(call_events).where(call_events.c.call_id == call.id)
        with self._engine.connect() as conn:
            rows = conn.execute(query.order_by(call_events.c.sequence)).all()
        return [_event(r, call) for r in rows]

    def save_sip_state(self, uniqueid: str, state: str, now: datetime) -> bool:
        """Keep a live call's SIP state; see Writes.save_sip_state."""
        with self.writing() as writes:
            return writes.save_sip_state(uniqueid, state, now)

    def sip_states(self) -> dict[str, str]:
        """uniqueid → SIP state of the in-flight calls this node follows that have one."""
        with self._engine.connect() as conn:
            return sip_dialogs.in_flight(conn, self._node)

    def active_uniqueids(self) -> list[str]:
        """Calls not yet ended that this node follows: its own, and those stored before
        nodes had names; every node's when the store has no node name."""
        query = select(calls.c.uniqueid).where(calls.c.state != CallState.ENDED.value)
        if self._node is not None:
            query = query.where(or_(calls.c.node == self._node, calls.c.node.is_(None)))
        with self._engine.connect() as conn:
            return [r.uniqueid for r in conn.execute(query)]
