"""Reading the past: calls by filter, newest first, a page at a time; events after an id.

Pages are keyed by call id (keyset pagination): a page holds calls with ids below the
last one of the previous page, so calls placed while a client pages through never shift
or repeat what it sees. The live feed reads events by their global id the same way.

On PostgreSQL an event's id is drawn when it is inserted and seen when its transaction
commits: with several writers (lanes, workers, nodes) event n+1 can be seen before n. A
feed that moved past n+1 would never send n. So `feed` sends events up to the first id
missing below the ones it sees, and skips a missing id only once every transaction open
when it was found missing has ended (PostgreSQL's snapshot xmin has passed the xmax of
then): by then it either committed and is read, or never will be (rolled back, or a
refused call's row deleted). SQLite has one writer: its ids are seen in order.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Connection, Engine, Select, func, select, text

from click2call.calls import CallState, Result
from click2call.store.repository import StoredCall, StoredEvent

# The row readers of the repository, shared so a stored call reads the same everywhere.
from click2call.store.repository import _call as _stored_call
from click2call.store.repository import _event as _stored_event
from click2call.store.schema import call_events, calls


@dataclass(frozen=True, slots=True)
class CallFilter:
    """Which calls to read. `tenant` None reads every tenant (the operator's CLI only)."""

    tenant: str | None
    since: datetime | None = None  # created at or after
    until: datetime | None = None  # created before
    state: CallState | None = None
    result: Result | None = None
    agent_number: str | None = None  # the extension or the agent's phone, as stored
    destination: str | None = None
    foreignid: str | None = None


def _query(where: CallFilter) -> Select[tuple[object, ...]]:
    query = select(calls)
    conditions = (
        (where.tenant, calls.c.tenant),
        (where.state and where.state.value, calls.c.state),
        (where.result and where.result.value, calls.c.result),
        (where.agent_number, calls.c.agent_number),
        (where.destination, calls.c.destination),
        (where.foreignid, calls.c.foreignid),
    )
    for value, column in conditions:
        if value is not None:
            query = query.where(column == value)
    if where.since is not None:
        query = query.where(calls.c.created_at >= where.since)
    if where.until is not None:
        query = query.where(calls.c.created_at < where.until)
    return query


class History:
    def __init__(self, engine: Engine) -> None:
        self._engine = engine

    def page(
        self, where: CallFilter, limit: int, before_id: int | None = None
    ) -> tuple[list[StoredCall], int | None]:
        """Up to `limit` calls, newest first, with ids below `before_id`; and the id to pass
        as `before_id` for the next page, or None when this page is the last."""
        query = _query(where).order_by(calls.c.id.desc()).limit(limit + 1)
        if before_id is not None:
            query = query.where(calls.c.id < before_id)
        with self._engine.connect() as conn:
            found = [_stored_call(row) for row in conn.execute(query)]
        if len(found) <= limit:
            return found, None
        return found[:limit], found[limit - 1].id

    def all(self, where: CallFilter, batch: int = 500) -> Iterator[StoredCall]:
        """Every matching call, newest first, read `batch` rows at a time (for exports)."""
        before: int | None = None
        while True:
            found, before = self.page(where, batch, before)
            yield from found
            if before is None:
                return

    def events_after(self, tenant: str, after_id: int, limit: int) -> list[StoredEvent]:
        """The tenant's events with a global id above `after_id`, oldest first (as stored
        by now: `feed` is for following them as they come)."""
        with self._engine.connect() as conn:
            return self._events_after(conn, tenant, after_id, limit)

    def feed(
        self, tenant: str, after_id: int, limit: int, unsettled: Unsettled | None
    ) -> FeedBatch:
        """The tenant's events after `after_id` that no transaction still open can precede
        (module docstring), and where the next read starts."""
        with self._engine.connect() as conn:
            if conn.dialect.name != "postgresql":
                events = self._events_after(conn, tenant, after_id, limit)
                return FeedBatch(events, events[-1].id if events else after_id, None)
            settled = after_id
            if unsettled is not None and not _open_before(conn, unsettled.horizon):
                settled, unsettled = max(after_id, unsettled.upto), None
            events = self._events_after(conn, tenant, after_id, limit)
            if not events:
                return FeedBatch([], after_id, unsettled)
            last = events[-1].id
            gap = _first_gap(conn, settled, last) if settled < last else None
            if gap is None:
                return FeedBatch(events, last, None)
            if unsettled is None:
                unsettled = Unsettled(last, _next_xid(conn))
            sent = [event for event in events if event.id < gap]
            return FeedBatch(sent, max(after_id, gap - 1), unsettled)

    def _events_after(
        self, conn: Connection, tenant: str, after_id: int, limit: int
    ) -> list[StoredEvent]:
        query = (
            select(call_events)
            .join(calls, calls.c.id == call_events.c.call_id)
            .where(calls.c.tenant == tenant, call_events.c.id > after_id)
            .order_by(call_events.c.id)
            .limit(limit)
        )
        return [_stored_event(row) for row in conn.execute(query)]

    def last_event_id(self) -> int:
        """The newest event's global id (0 when none): where a new feed starts."""
        with self._engine.connect() as conn:
            return int(conn.execute(select(func.max(call_events.c.id))).scalar() or 0)


@dataclass(frozen=True, slots=True)
class Unsettled:
    """Event ids up to `upto` were missing: a transaction open then may still commit one,
    until PostgreSQL's oldest open transaction is at `horizon` or later."""

    upto: int
    horizon: int  # the xmax of the snapshot that found them missing


@dataclass(frozen=True, slots=True)
class FeedBatch:
    events: list[StoredEvent]
    after_id: int  # where the next read starts
    unsettled: Unsettled | None  # read again soon: the feed is held at a missing id


def _first_gap(conn: Connection, low: int, high: int) -> int | None:
    """The first event id in (low, high] that no row has (all tenants), if any."""
    in_range = (call_events.c.id > low, call_events.c.id <= high)
    if conn.execute(select(func.count()).where(*in_range)).scalar_one() == high - low:
        return None  # the usual case: one count over the primary key
    expected = low + 1
    for found in conn.execute(
        select(call_events.c.id).where(*in_range).order_by(call_events.c.id)
    ).scalars():
        if found != expected:
            return expected
        expected += 1
    return expected if expected <= high else None


_XMAX = text("SELECT pg_snapshot_xmax(pg_current_snapshot())::text")
_XMIN = text("SELECT pg_snapshot_xmin(pg_current_snapshot())::text")


def _next_xid(conn: Connection) -> int:
    """Every transaction open now has a lower id (taken after the read that found a gap)."""
    return int(conn.execute(_XMAX).scalar_one())


def _open_before(conn: Connection, horizon: int) -> bool:
    """Whether a transaction with an id below `horizon` is still open."""
    return int(conn.execute(_XMIN).scalar_one()) < horizon
