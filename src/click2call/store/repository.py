"""Reading and writing calls.

Every state change is one transaction: the call row, its `call_events` row (with the
call's next sequence number and the event body), and one outbox row per webhook
endpoint that wants the event (store/outbox.py).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Engine, Row, bindparam, insert, or_, select

from click2call.calls import CallEvent, CallState, Result, advance, event_type
from click2call.errors import IllegalTransition, RateLimited
from click2call.store import admission, in_doubt, keys, outbox, sip_dialogs
from click2call.store.driver import Driver, Sql
from click2call.store.event_body import Fixed, event_body, fixed_parts
from click2call.store.keys import AuditEntry
from click2call.store.schema import call_events, calls, widget_calls

_TIMESTAMP_OF_STATE = {
    CallState.AGENT_ANSWERED: "agent_answered_at",
    CallState.CONNECTED: "connected_at",
    CallState.ENDED: "ended_at",
}


@dataclass(frozen=True, slots=True)
class CallTimeouts:
    """The timeouts a call was placed with (the engines' `Timeouts`), kept with it: a call
    followed again after a restart is bound by these, not by its tenant's as they are then."""

    agent_ring_timeout: float
    destination_ring_timeout: float
    max_call_seconds: float


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
    # The widget token placing it: linked in the call's own transaction, so a call never
    # exists that its token cannot read (a page would place it again).
    widget_token: str | None = None
    timeouts: CallTimeouts | None = None


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
    timeouts: CallTimeouts | None = None  # None: stored before timeouts were kept


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
    """A stored state change: the call as it now stands and the event that moved it;
    `deliveries`: the webhook deliveries queued with it (the delivery worker wakes for them)."""

    call: StoredCall
    event: StoredEvent
    deliveries: int = 0  # webhook deliveries it queued (store/outbox.py)


def _call(row: Row[Any]) -> StoredCall:
    values = row._asdict()
    values["state"] = CallState(values["state"])
    values["result"] = Result(values["result"]) if values["result"] else None
    timeouts = [values.pop(name) for name in _TIMEOUTS]
    values["timeouts"] = CallTimeouts(*timeouts) if None not in timeouts else None
    return StoredCall(**values)


_TIMEOUTS = ("agent_ring_timeout", "destination_ring_timeout", "max_call_seconds")


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


# Locked until the change commits, so two writers of one call (two nodes on PostgreSQL)
# take turns and never read the same last_sequence; SQLite locks the whole file anyway.
_BY_UNIQUEID_FOR_UPDATE = (
    select(calls).where(calls.c.uniqueid == bindparam("uniqueid")).with_for_update()
)

# The write path's statements run on the driver (store/driver.py). A new call's uniqueid
# comes from its id in the same statement: on SQLite the id the table would give it (one
# more than the largest: no AUTOINCREMENT), on PostgreSQL the next of its sequence.
_CALL_COLUMNS = (
    "tenant, agent_kind, agent_tech, agent_number, destination, destination_caller_id,"
    " agent_caller_id, foreignid, state, created_at, last_sequence, node,"
    " agent_ring_timeout, destination_ring_timeout, max_call_seconds"
)
_NEW_CALL_VALUES = (
    f"INSERT INTO calls (id, uniqueid, {_CALL_COLUMNS})"
    " SELECT n, CAST(:epoch AS TEXT) || '.' || CAST(n AS TEXT), :tenant, :agent_kind,"
    " :agent_tech, :agent_number, :destination, :destination_caller_id, :agent_caller_id,"
    " :foreignid, :state, :created_at, :last_sequence, :node, :agent_ring_timeout,"
    " :destination_ring_timeout, :max_call_seconds"
)
_NEW_CALL = Sql(
    _NEW_CALL_VALUES + " FROM (SELECT coalesce(max(id), 0) + 1 AS n FROM calls) AS next_id",  # noqa: S608
    postgresql=_NEW_CALL_VALUES
    + " FROM (SELECT nextval(pg_get_serial_sequence('calls', 'id')) AS n) AS next_id"
    + " RETURNING id",
)


# The columns an event moves (the state, the sequence, result and cause, and the timestamp
# of its state, if it has one), moved only if the row is still as this process last left
# it (`was`, its node): the row kept from an earlier transaction then needs no locking
# read, as the UPDATE locks it; a row someone else moved meanwhile is read again
# (Writes.record). One text per timestamp: a statement binds only what it changes.
def _advance(stamp: str | None) -> Sql:
    moved = ", ".join(
        f"{column} = :{column}"
        for column in ("state", "last_sequence", "result", "cause", stamp)
        if column is not None
    )
    where = "WHERE id = :id AND last_sequence = :was AND node"
    return Sql(
        f"UPDATE calls SET {moved} {where} IS :node",  # noqa: S608 (constants only)
        postgresql=f"UPDATE calls SET {moved} {where} IS NOT DISTINCT FROM :node",  # noqa: S608
    )


_ADVANCE = {stamp: _advance(stamp) for stamp in (None, *_TIMESTAMP_OF_STATE.values())}
# A row this transaction already wrote (inserted, or moved by _ADVANCE, which locked it) is
# moved again only once, as the transaction ends, to where its last event left it: a call's
# events arrive together (the agent's answer, the destination's INVITE, ringing, connected
# within a few milliseconds) and each one's UPDATE was overwritten by the next.
_SETTLE = Sql(
    "UPDATE calls SET state = :state, last_sequence = :last_sequence, result = :result,"
    " cause = :cause, agent_answered_at = :agent_answered_at, connected_at = :connected_at,"
    " ended_at = :ended_at WHERE id = :id"
)
_NEW_EVENT_VALUES = (
    "INSERT INTO call_events (call_id, state, result, cause, at, sequence, type, payload)"
    " VALUES (:call_id, :state, :result, :cause, :at, :sequence, :type, :payload)"
)
_NEW_EVENT = Sql(_NEW_EVENT_VALUES, postgresql=_NEW_EVENT_VALUES + " RETURNING id")
# A call's first event in a transaction brings back its webhook endpoints too.
_NEW_EVENT_AND_ENDPOINTS = Sql(
    f"{_NEW_EVENT_VALUES} RETURNING id, {outbox.ENDPOINTS_OF_CALL_JSON[0]}",
    postgresql=f"{_NEW_EVENT_VALUES} RETURNING id, {outbox.ENDPOINTS_OF_CALL_JSON[1]}",
)


def uniqueid_for(call_id: int, created_at: datetime) -> str:
    """The PBX-style `epoch.sequence` id; the sequence is the row id, so it never repeats."""
    return f"{int(created_at.timestamp())}.{call_id}"


class Writes:
    """Changes made in one transaction (Store.writing). What it read or wrote of a call
    (the row, its webhook endpoints) it keeps for the transaction's later changes: a
    batch often holds several events of one call. `known`: the calls as earlier
    transactions of this process left them, read only to spare a locking read."""

    def __init__(
        self, conn: Connection, node: str | None, known: Mapping[str, StoredCall] | None = None
    ) -> None:
        self._conn = conn
        self._driver = Driver(conn)
        self._node = node
        self._known: Mapping[str, StoredCall] = known or {}
        self._calls: dict[str, StoredCall] = {}  # uniqueid → the call as it now stands
        self.stale: set[str] = set()  # of `known`, the calls found moved by another writer
        self._endpoints: dict[int, outbox.Endpoints] = {}  # call id → its endpoints
        self._fixed: dict[int, Fixed] = {}  # call id → what no event changes in its bodies
        self._unsettled: dict[int, StoredCall] = {}  # call id → its row's move, not yet written
        self._admissions = admission.Admissions()  # PostgreSQL: admitted as it ends
        self.refused: dict[int, RateLimited] = {}  # call id → why it was not stored after all

    @property
    def calls(self) -> Mapping[str, StoredCall]:
        """The calls this transaction wrote, as it left them."""
        return self._calls

    def queued_as_placed(self, new: NewCall, at: datetime) -> list[str]:
        """This node's calls stored at `at` for `new`'s parties and still queued (in_doubt.py)."""
        return in_doubt.queued_as_placed(
            self._driver, self._node, new.tenant, new.agent_number, new.destination, at
        )

    def create_call(
        self,
        new: NewCall,
        now: datetime,
        callback: outbox.Subscription | None = None,
        limits: admission.CallLimits | None = None,
    ) -> Change:
        """Insert a queued call with its first event; the row exists before any signalling.

        `callback` subscribes the call's own URL before its first event is queued; with
        `limits`, the call is admitted cluster-wide: on SQLite first (RateLimited before
        anything is written: the transaction's other changes stand), on PostgreSQL as the
        transaction ends (store/admission.py), when a refused call is deleted again and
        its refusal put in `refused`."""
        driver = self._driver
        if limits is not None and not driver.postgres:
            admission.admit(driver, new.tenant, new.agent_number, limits, now)
        timeouts = new.timeouts
        values = {
            "epoch": str(int(now.timestamp())),
            "tenant": new.tenant,
            "agent_kind": new.agent_kind,
            "agent_tech": new.agent_tech,
            "agent_number": new.agent_number,
            "destination": new.destination,
            "destination_caller_id": new.destination_caller_id,
            "agent_caller_id": new.agent_caller_id,
            "foreignid": new.foreignid,
            "state": CallState.QUEUED.value,
            "created_at": driver.time(now),
            "last_sequence": 1,
            "node": self._node,
            "agent_ring_timeout": timeouts.agent_ring_timeout if timeouts else None,
            "destination_ring_timeout": timeouts.destination_ring_timeout if timeouts else None,
            "max_call_seconds": timeouts.max_call_seconds if timeouts else None,
        }
        call_id = driver.insert(_NEW_CALL, values)
        if driver.postgres:
            self._admissions.add(new.tenant, call_id, new.agent_number, limits, now)
        call = StoredCall(
            id=call_id,
            uniqueid=uniqueid_for(call_id, now),
            tenant=new.tenant,
            agent_kind=new.agent_kind,
            agent_tech=new.agent_tech,
            agent_number=new.agent_number,
            destination=new.destination,
            destination_caller_id=new.destination_caller_id,
            agent_caller_id=new.agent_caller_id,
            foreignid=new.foreignid,
            state=CallState.QUEUED,
            result=None,
            cause=None,
            created_at=now,
            agent_answered_at=None,
            connected_at=None,
            ended_at=None,
            last_sequence=1,
            node=self._node,
            timeouts=timeouts,
        )
        if callback is not None:
            outbox.subscribe_call(self._conn, call.tenant, call.id, callback, now)
        if new.widget_token is not None:
            self._conn.execute(
                insert(widget_calls).values(call_id=call_id, token_id=new.widget_token)
            )
        return self._append(call, None, now)

    def admit_new_calls(self) -> None:
        """PostgreSQL: admit the calls created in this transaction (just before it commits);
        the refused ones are deleted, and no longer among `calls`."""
        if not self._driver.postgres:
            return
        self.refused = self._admissions.settle(self._driver)
        if self.refused:
            for uniqueid, call in list(self._calls.items()):
                if call.id in self.refused:
                    del self._calls[uniqueid]

    def record(self, event: CallEvent) -> Change | None:
        """Apply an engine event to its call. None when the event changes nothing.

        Raises UnknownCall and IllegalTransition before writing anything: the
        transaction's other changes stand (any other error spoils the transaction).
        """
        call, known = self._calls.get(event.uniqueid), None
        if call is not None:  # its row is this transaction's
            return self._move(call, event, written=True)
        if (known := self._known.get(event.uniqueid)) is not None:
            # As an earlier transaction left it; only a change it allows is made from it.
            with contextlib.suppress(IllegalTransition):
                if (change := self._move(known, event)) is not None:
                    return change
        if known is not None:  # ended, taken over or pruned elsewhere, perhaps
            self.stale.add(event.uniqueid)
        return self._move(self._locked(event.uniqueid), event)

    def _locked(self, uniqueid: str) -> StoredCall:
        found = self._conn.execute(_BY_UNIQUEID_FOR_UPDATE, {"uniqueid": uniqueid})
        if (row := found.one_or_none()) is None:
            raise UnknownCall(uniqueid)
        return _call(row)

    def _move(self, call: StoredCall, event: CallEvent, written: bool = False) -> Change | None:
        """The change `event` makes to `call` as given, stored; None when it changes nothing
        or the row is no longer as given (moved by another writer). `written`: the row is
        this transaction's, and its UPDATE waits for the transaction's end (`settle`), but
        an ending's: the statements that follow it must see the call ended."""
        new_state = advance(call.state, event)
        if new_state is None:
            return None
        cause = event.cause[:256] if event.cause is not None else None
        stamp = _TIMESTAMP_OF_STATE.get(new_state)
        # Built field by field (dataclasses.replace costs several times as much per event).
        moved = StoredCall(
            id=call.id,
            uniqueid=call.uniqueid,
            tenant=call.tenant,
            agent_kind=call.agent_kind,
            agent_tech=call.agent_tech,
            agent_number=call.agent_number,
            destination=call.destination,
            destination_caller_id=call.destination_caller_id,
            agent_caller_id=call.agent_caller_id,
            foreignid=call.foreignid,
            state=new_state,
            result=event.result if event.result is not None else call.result,
            cause=cause if cause is not None else call.cause,
            created_at=call.created_at,
            agent_answered_at=event.at if stamp == "agent_answered_at" else call.agent_answered_at,
            connected_at=event.at if stamp == "connected_at" else call.connected_at,
            ended_at=event.at if stamp == "ended_at" else call.ended_at,
            last_sequence=call.last_sequence + 1,
            node=call.node,
            timeouts=call.timeouts,
        )
        driver = self._driver
        if written and new_state is not CallState.ENDED:
            self._unsettled[call.id] = moved
            return self._append(moved, cause, event.at)
        self._unsettled.pop(call.id, None)
        if written:
            driver.execute(_SETTLE, self._row(moved))
            self._ended(call)
            return self._append(moved, cause, event.at)
        values: dict[str, Any] = {
            "id": call.id,
            "was": call.last_sequence,
            "node": call.node,
            "state": new_state.value,
            "last_sequence": moved.last_sequence,
            "result": moved.result.value if moved.result is not None else None,
            "cause": moved.cause,
        }
        if stamp is not None:
            values[stamp] = driver.time(event.at)
        if not driver.execute(_ADVANCE[stamp], values).rowcount:
            return None
        if new_state is CallState.ENDED:
            self._ended(call)
        return self._append(moved, cause, event.at)

    def _ended(self, call: StoredCall) -> None:
        """What an ending changes besides the row: the SIP state goes, and on PostgreSQL the
        admission of the transaction's new calls no longer counts the call."""
        sip_dialogs.forget(self._driver, call.id)
        if self._driver.postgres:
            self._admissions.ended(call.tenant, call.id)

    def _append(self, call: StoredCall, cause: str | None, at: datetime) -> Change:
        """The event row for the call's newest state, and its deliveries."""
        self._calls[call.uniqueid] = call
        sequence, type_ = call.last_sequence, event_type(call.state, call.result)
        fixed = self._fixed.get(call.id)
        if fixed is None:
            fixed = self._fixed[call.id] = fixed_parts(call)
        payload = event_body(call, sequence, type_, at, fixed)
        result = call.result.value if call.result and call.state is CallState.ENDED else None
        driver = self._driver
        values = {
            "call_id": call.id,
            "state": call.state.value,
            "result": result,
            "cause": cause,
            "at": driver.time(at),
            "sequence": sequence,
            "type": type_,
            "payload": payload,
        }
        endpoints = self._endpoints.get(call.id)
        if endpoints is None:
            values["tenant"] = call.tenant
            event_id, found = driver.execute(_NEW_EVENT_AND_ENDPOINTS, values).fetchone()
            endpoints = self._endpoints[call.id] = outbox.endpoints_from_json(found)
        else:
            event_id = driver.insert(_NEW_EVENT, values)
        queued = outbox.queue(driver, call.id, event_id, type_, at, endpoints)
        event = StoredEvent(
            event_id, call.id, sequence, type_, call.state, call.result, cause, at, payload
        )
        return Change(call, event, queued)

    def settle(self) -> None:
        """Write each row whose moves waited for the transaction's end (Store.writing)."""
        for call in self._unsettled.values():
            self._driver.execute(_SETTLE, self._row(call))
        self._unsettled.clear()

    def _row(self, call: StoredCall) -> dict[str, Any]:
        time = self._driver.time
        return {
            "id": call.id,
            "state": call.state.value,
            "last_sequence": call.last_sequence,
            "result": call.result.value if call.result is not None else None,
            "cause": call.cause,
            "agent_answered_at": time(call.agent_answered_at),
            "connected_at": time(call.connected_at),
            "ended_at": time(call.ended_at),
        }

    def save_sip_state(self, uniqueid: str, state: str, now: datetime) -> bool:
        """Keep a live call's SIP state (snapshot JSON); False when the call has ended or is
        unknown, and nothing is kept. Written by the node's one writer of that call, in
        line with its events (tracking.py), so no row lock is needed."""
        return sip_dialogs.save(self._driver, uniqueid, state, now)

    def audit(self, entry: AuditEntry) -> None:
        keys.write_audit(self._driver, entry)


# Live calls remembered between transactions: about 500 bytes each with their texts, so
# some 50 MB when full. Past it, the oldest half goes (a call another node ended or took
# over stays until then, unless an event of it shows it moved); a call no longer
# remembered costs one locking read.
_KNOWN_MAX = 100_000


class Store:
    def __init__(self, engine: Engine, node: str | None = None) -> None:
        """`node` names this process among those sharing the database; its calls carry it."""
        self._engine = engine
        self._node = node
        # uniqueid → each live call as this process's last committed write left it
        # (Writes.record): a dict, whose single steps the writer threads may share.
        self._known: dict[str, StoredCall] = {}

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
        """Insert a queued call with its first event; see Writes.create_call. RateLimited
        when `limits` refuse it."""
        with self.writing() as writes:
            change = writes.create_call(new, now, callback, limits)
        if (refused := writes.refused.get(change.call.id)) is not None:
            raise refused
        return change

    def record(self, event: CallEvent) -> Change | None:
        """Apply an engine event to its call. None when the event changes nothing.

        Raises UnknownCall (a LookupError) and IllegalTransition for a move
        the state table forbids.
        """
        with self.writing() as writes:
            return writes.record(event)

    @contextmanager
    def writing(self) -> Iterator[Writes]:
        """Several changes in one transaction, committed when the block ends (new calls
        refused as it ends: Writes.refused)."""
        with self._engine.begin() as conn:
            writes = Writes(conn, self._node, self._known)
            try:
                yield writes
                writes.settle()
                writes.admit_new_calls()
            finally:  # whatever becomes of the transaction, they are no longer as kept
                for uniqueid in writes.stale:
                    self._known.pop(uniqueid, None)
        self._remember(writes.calls)

    def _remember(self, written: Mapping[str, StoredCall]) -> None:
        known = self._known
        for uniqueid, call in written.items():
            if call.state is CallState.ENDED:
                known.pop(uniqueid, None)
            else:
                known[uniqueid] = call
        if len(known) > _KNOWN_MAX:  # calls another node ended or took over: oldest first
            for uniqueid in list(known)[: len(known) - _KNOWN_MAX // 2]:
                known.pop(uniqueid, None)

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
