"""Reading the past: calls by filter, newest first, a page at a time; events after an id.

Pages are keyed by call id (keyset pagination): a page holds calls with ids below the
last one of the previous page, so calls placed while a client pages through never shift
or repeat what it sees. The live feed reads events by their global id the same way.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Engine, Select, func, select

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
        """The tenant's events with a global id above `after_id`, oldest first."""
        query = (
            select(call_events)
            .join(calls, calls.c.id == call_events.c.call_id)
            .where(calls.c.tenant == tenant, call_events.c.id > after_id)
            .order_by(call_events.c.id)
            .limit(limit)
        )
        with self._engine.connect() as conn:
            return [_stored_event(row) for row in conn.execute(query)]

    def last_event_id(self) -> int:
        """The newest event's global id (0 when none): where a new feed starts."""
        with self._engine.connect() as conn:
            return int(conn.execute(select(func.max(call_events.c.id))).scalar() or 0)
