"""Webhook endpoints and the outbox of their deliveries.

`queue` runs inside the transaction that stores a call event, so a delivery exists
exactly when its event does. The delivery worker (webhooks/delivery.py) reads `due`
rows and records each attempt here. Order per call: only the oldest pending delivery
of an (endpoint, call) pair is ever due, so event n+1 waits for event n.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import (
    Connection,
    Engine,
    bindparam,
    exists,
    func,
    insert,
    or_,
    select,
    update,
)
from sqlalchemy.orm import aliased

from click2call.store.driver import Driver, Sql
from click2call.store.schema import call_events, webhook_attempts, webhook_endpoints, webhook_outbox

PENDING, DELIVERED, FAILED = "pending", "delivered", "failed"


@dataclass(frozen=True, slots=True)
class Subscription:
    """Where to send a tenant's (or one call's) events; `events` None means every type."""

    url: str
    events: frozenset[str] | None = None


@dataclass(frozen=True, slots=True)
class Delivery:
    """One event to send to one endpoint; `message_id` stays the same across retries."""

    outbox_id: int
    endpoint_id: int
    tenant: str
    url: str
    for_call: bool  # the call's own callback_url, not a tenant subscription
    call_id: int
    event_id: int
    payload: str
    attempts: int

    @property
    def message_id(self) -> str:
        return f"msg_{self.outbox_id}"


@dataclass(frozen=True, slots=True)
class Attempt:
    at: datetime
    status: int | None
    error: str | None
    response_excerpt: str | None
    seconds: float


@dataclass(frozen=True, slots=True)
class Settled:
    """Where a delivery stands after an attempt: pending again (at `next_attempt_at`),
    delivered or failed."""

    delivery: Delivery
    attempt: Attempt
    state: str
    next_attempt_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class DeliveryState:
    """What an operator or a CRM sees of one delivery."""

    outbox_id: int
    endpoint_id: int
    url: str
    call_id: int
    sequence: int
    type: str
    state: str
    attempts: int
    last_status: int | None
    last_error: str | None
    next_attempt_at: datetime | None
    done_at: datetime | None


def _events_text(events: frozenset[str] | None) -> str | None:
    return " ".join(sorted(events)) if events else None


def _wants(events: str | None, type_: str) -> bool:
    return events is None or type_ in events.split()


# On the write path of every event: run on the driver (store/driver.py).
_LIVE_ENDPOINTS_OF_CALL = (
    "FROM webhook_endpoints WHERE disabled_at IS NULL"
    " AND ((tenant = :tenant AND call_id IS NULL) OR call_id = :call_id)"
)
# The live endpoints that may want a call's events (the tenant's and its own) as one JSON
# text (an array of [id, events]; NULL or [] for none), for the statement that returns them
# along with the call's first event of a transaction (store/repository.py): no round trip.
# A subquery for another statement to include (its SQLite and its PostgreSQL text, with
# `:name` placeholders that the including Sql translates once).
ENDPOINTS_OF_CALL_JSON = (
    "(SELECT json_group_array(json_array(id, events)) " + _LIVE_ENDPOINTS_OF_CALL + ")",
    "(SELECT CAST(json_agg(json_build_array(id, events)) AS TEXT) " + _LIVE_ENDPOINTS_OF_CALL + ")",
)
_INSERT_DELIVERY = Sql(
    "INSERT INTO webhook_outbox (endpoint_id, call_id, event_id, state, attempts,"
    " next_attempt_at) VALUES (:endpoint_id, :call_id, :event_id, :state, :attempts,"
    " :next_attempt_at)"
)
_INSERT_ATTEMPT = insert(webhook_attempts)
_SETTLE = (
    update(webhook_outbox)
    # Still pending: a delivery its endpoint's 410 failed while it was in flight stays
    # failed when its own (late) attempt is written.
    .where(webhook_outbox.c.id == bindparam("outbox_id"), webhook_outbox.c.state == PENDING)
    .values(
        state=bindparam("new_state"),
        attempts=bindparam("new_attempts"),
        last_attempt_at=bindparam("attempt_at"),
        last_status=bindparam("status"),
        last_error=bindparam("error"),
        done_at=bindparam("done"),
        next_attempt_at=func.coalesce(bindparam("next_at"), webhook_outbox.c.next_attempt_at),
        leased_by=None,
        lease_until=None,
    )
)


def subscribe_call(
    conn: Connection, tenant: str, call_id: int, subscription: Subscription, now: datetime
) -> None:
    conn.execute(
        insert(webhook_endpoints).values(
            tenant=tenant,
            url=subscription.url,
            call_id=call_id,
            events=_events_text(subscription.events),
            created_at=now,
        )
    )


Endpoints = list[tuple[int, str | None]]  # (endpoint id, the events it wants)


def endpoints_from_json(found: str | None) -> Endpoints:
    """What ENDPOINTS_OF_CALL_JSON returned."""
    return [(endpoint_id, events) for endpoint_id, events in json.loads(found or "[]")]


def queue(
    driver: Driver, call_id: int, event_id: int, type_: str, at: datetime, endpoints: Endpoints
) -> int:
    """Queue the event for every one of the call's `endpoints` (as read in this transaction)
    that wants it; how many were queued."""
    if not endpoints:  # the usual case: no webhook
        return 0
    next_attempt_at = driver.time(at)
    rows = [
        {
            "endpoint_id": endpoint_id,
            "call_id": call_id,
            "event_id": event_id,
            "state": PENDING,
            "attempts": 0,
            "next_attempt_at": next_attempt_at,
        }
        for endpoint_id, events in endpoints
        if _wants(events, type_)
    ]
    if rows:
        driver.execute_many(_INSERT_DELIVERY, rows)
    return len(rows)


_earlier = aliased(webhook_outbox)
_DUE = (
    select(
        webhook_outbox.c.id,
        webhook_outbox.c.endpoint_id,
        webhook_outbox.c.call_id,
        webhook_outbox.c.event_id,
        webhook_outbox.c.attempts,
        webhook_endpoints.c.tenant,
        webhook_endpoints.c.url,
        webhook_endpoints.c.call_id.label("endpoint_call_id"),
        call_events.c.payload,
    )
    .join(webhook_endpoints, webhook_endpoints.c.id == webhook_outbox.c.endpoint_id)
    .join(call_events, call_events.c.id == webhook_outbox.c.event_id)
    .where(
        webhook_outbox.c.state == PENDING,
        webhook_outbox.c.next_attempt_at <= bindparam("now"),
        webhook_outbox.c.endpoint_id.not_in(bindparam("full", expanding=True)),
        webhook_endpoints.c.tenant.not_in(bindparam("full_tenants", expanding=True)),
        webhook_endpoints.c.disabled_at.is_(None),  # 410 Gone, or an operator
        # Being sent by a node right now (its lease still runs): not due anywhere else.
        or_(
            webhook_outbox.c.lease_until.is_(None),
            webhook_outbox.c.lease_until <= bindparam("now"),
        ),
        ~exists().where(
            _earlier.c.endpoint_id == webhook_outbox.c.endpoint_id,
            _earlier.c.call_id == webhook_outbox.c.call_id,
            _earlier.c.state == PENDING,
            _earlier.c.id < webhook_outbox.c.id,
        ),
    )
    .order_by(webhook_outbox.c.next_attempt_at, webhook_outbox.c.id)
    .limit(bindparam("limit"))
)
# Two nodes claiming at once take disjoint rows: each skips the rows the other has locked
# (PostgreSQL; SQLite, one process, ignores FOR UPDATE).
_CLAIMABLE = _DUE.with_for_update(of=webhook_outbox, skip_locked=True)
_LEASE = (
    update(webhook_outbox)
    .where(webhook_outbox.c.id.in_(bindparam("ids", expanding=True)))
    .values(leased_by=bindparam("node"), lease_until=bindparam("until"))
)


def _due_values(
    now: datetime, limit: int, full: set[int] | None, full_tenants: set[str] | None
) -> dict[str, Any]:
    return {
        "now": now,
        "limit": limit,
        "full": list(full or ()),
        "full_tenants": list(full_tenants or ()),
    }


def _text(value: str | None, limit: int | None = None) -> str | None:
    """A receiver's words as a text column takes them: PostgreSQL refuses NUL in text (a
    gzip reply starts with one), and one refused attempt would fail the whole batch."""
    if not value:
        return None
    return value[:limit].replace("\x00", "\ufffd")


def _delivery(row: Any) -> Delivery:
    return Delivery(
        outbox_id=row.id,
        endpoint_id=row.endpoint_id,
        tenant=row.tenant,
        url=row.url,
        for_call=row.endpoint_call_id is not None,
        call_id=row.call_id,
        event_id=row.event_id,
        payload=row.payload or "{}",
        attempts=row.attempts,
    )


class Outbox:
    def __init__(
        self, engine: Engine, node: str | None = None, lease: timedelta = timedelta(seconds=60)
    ) -> None:
        """`node` and `lease`: who claims deliveries here, and for how long at most one
        attempt may hold one before another node may take it over."""
        self._engine = engine
        self._node = node
        self._lease = lease

    def sync_config(self, subscriptions: dict[str, list[Subscription]], now: datetime) -> None:
        """Make the tenant endpoints match the configuration: add new ones, update their
        event filters, disable removed ones. An endpoint disabled by a 410 stays disabled."""
        tenant_wide = webhook_endpoints.c.call_id.is_(None)
        with self._engine.begin() as conn:
            stored = {
                (row.tenant, row.url): row
                for row in conn.execute(select(webhook_endpoints).where(tenant_wide))
            }
            wanted = {(t, s.url): s for t, subs in subscriptions.items() for s in subs}
            for (tenant, url), sub in wanted.items():
                row = stored.get((tenant, url))
                if row is None:
                    conn.execute(
                        insert(webhook_endpoints).values(
                            tenant=tenant, url=url, events=_events_text(sub.events), created_at=now
                        )
                    )
                    continue
                changes: dict[str, Any] = {"events": _events_text(sub.events)}
                if row.disabled_reason == _REMOVED:
                    changes |= {"disabled_at": None, "disabled_reason": None}
                conn.execute(
                    update(webhook_endpoints)
                    .where(webhook_endpoints.c.id == row.id)
                    .values(**changes)
                )
            for key, row in stored.items():
                if key not in wanted and row.disabled_at is None:
                    _disable(conn, row.id, _REMOVED, now)

    def due(
        self,
        now: datetime,
        limit: int,
        busy: set[int],
        full: set[int] | None = None,
        full_tenants: set[str] | None = None,
    ) -> list[Delivery]:
        """Deliveries whose time has come, oldest first, skipping the outbox ids in `busy`,
        the endpoints in `full` and the tenants in `full_tenants`."""
        values = _due_values(now, limit + len(busy), full, full_tenants)
        with self._engine.connect() as conn:
            rows = conn.execute(_DUE, values).all()
        return [_delivery(r) for r in rows if r.id not in busy][:limit]

    def claim(
        self,
        now: datetime,
        limit: int,
        busy: set[int],
        full: set[int] | None = None,
        full_tenants: set[str] | None = None,
    ) -> list[Delivery]:
        """Like `due`, and leased to this node: no other node attempts them until they are
        settled or the lease runs out (a node that died while sending)."""
        values = _due_values(now, limit + len(busy), full, full_tenants)
        with self._engine.begin() as conn:
            rows = [r for r in conn.execute(_CLAIMABLE, values).all() if r.id not in busy]
            rows = rows[:limit]
            if rows:
                lease = {
                    "ids": [r.id for r in rows],
                    "node": self._node,
                    "until": now + self._lease,
                }
                conn.execute(_LEASE, lease)
        return [_delivery(r) for r in rows]

    def release(self, outbox_ids: list[int]) -> None:
        """Give back claimed deliveries this node will not attempt after all."""
        with self._engine.begin() as conn:
            conn.execute(_LEASE, {"ids": outbox_ids, "node": None, "until": None})

    def release_own(self) -> int:
        """At start: give back the deliveries a previous run of this node leased and never
        settled (it died while sending). No other process carries this node's name, so
        they are due again at once instead of when the lease runs out."""
        if self._node is None:
            return 0
        query = (
            update(webhook_outbox)
            .where(webhook_outbox.c.leased_by == self._node)
            .values(leased_by=None, lease_until=None)
        )
        with self._engine.begin() as conn:
            return int(conn.execute(query).rowcount)

    def attempted(
        self,
        delivery: Delivery,
        attempt: Attempt,
        *,
        state: str,
        next_attempt_at: datetime | None = None,
    ) -> None:
        """Record an attempt and where the delivery stands after it."""
        self.settle([Settled(delivery, attempt, state, next_attempt_at)])

    def settle(self, results: Sequence[Settled]) -> None:
        """Record attempts and where their deliveries stand, all in one transaction."""
        if not results:
            return
        attempts = [
            {
                "outbox_id": r.delivery.outbox_id,
                "at": r.attempt.at,
                "status": r.attempt.status,
                "error": _text(r.attempt.error, 256),
                "response_excerpt": _text(r.attempt.response_excerpt),
                "seconds": r.attempt.seconds,
            }
            for r in results
        ]
        rows = [
            {
                "outbox_id": r.delivery.outbox_id,
                "new_state": r.state,
                "new_attempts": r.delivery.attempts + 1,
                "attempt_at": r.attempt.at,
                "status": r.attempt.status,
                "error": _text(r.attempt.error, 256),
                "done": None if r.state == PENDING else r.attempt.at,
                "next_at": r.next_attempt_at,
            }
            for r in results
        ]
        with self._engine.begin() as conn:
            conn.execute(_INSERT_ATTEMPT, attempts)
            conn.execute(_SETTLE, rows)

    def disable_endpoint(self, endpoint_id: int, reason: str, now: datetime) -> None:
        with self._engine.begin() as conn:
            _disable(conn, endpoint_id, reason, now)

    def for_call(self, call_id: int) -> list[DeliveryState]:
        return self._states(webhook_outbox.c.call_id == call_id, order_by_event=True)

    def failed(self, limit: int = 100) -> list[DeliveryState]:
        return self._states(webhook_outbox.c.state == FAILED, limit=limit)

    def attempts(self, outbox_id: int) -> list[Attempt]:
        query = (
            select(webhook_attempts)
            .where(webhook_attempts.c.outbox_id == outbox_id)
            .order_by(webhook_attempts.c.id)
        )
        with self._engine.connect() as conn:
            return [
                Attempt(r.at, r.status, r.error, r.response_excerpt, r.seconds)
                for r in conn.execute(query)
            ]

    def retry_failed(self, now: datetime, outbox_ids: list[int] | None = None) -> int:
        """Queue failed deliveries again (all, or those given), re-enabling their endpoints."""
        where = [webhook_outbox.c.state == FAILED]
        if outbox_ids is not None:
            where.append(webhook_outbox.c.id.in_(outbox_ids))
        with self._engine.begin() as conn:
            endpoint_ids = [
                r.endpoint_id
                for r in conn.execute(select(webhook_outbox.c.endpoint_id).where(*where).distinct())
            ]
            conn.execute(
                update(webhook_endpoints)
                .where(
                    webhook_endpoints.c.id.in_(endpoint_ids),
                    webhook_endpoints.c.disabled_reason != _REMOVED,
                )
                .values(disabled_at=None, disabled_reason=None)
            )
            done = conn.execute(
                update(webhook_outbox)
                .where(*where)
                .values(state=PENDING, attempts=0, next_attempt_at=now, done_at=None)
            )
        return int(done.rowcount)

    def backlog(self) -> int:
        query = select(func.count()).where(webhook_outbox.c.state == PENDING)
        with self._engine.connect() as conn:
            return int(conn.execute(query).scalar() or 0)

    def tenant_counts(self, tenant: str) -> dict[str, int]:
        """One tenant's deliveries by state (pending, delivered, failed), for its dashboard."""
        query = (
            select(webhook_outbox.c.state, func.count())
            .join(webhook_endpoints, webhook_endpoints.c.id == webhook_outbox.c.endpoint_id)
            .where(webhook_endpoints.c.tenant == tenant)
            .group_by(webhook_outbox.c.state)
        )
        with self._engine.connect() as conn:
            counts = {state: int(n) for state, n in conn.execute(query)}
        return {state: counts.get(state, 0) for state in (PENDING, DELIVERED, FAILED)}

    def _states(
        self, where: Any, *, order_by_event: bool = False, limit: int = 1000
    ) -> list[DeliveryState]:
        query = (
            select(
                webhook_outbox,
                webhook_endpoints.c.url,
                call_events.c.sequence,
                call_events.c.type,
            )
            .join(webhook_endpoints, webhook_endpoints.c.id == webhook_outbox.c.endpoint_id)
            .join(call_events, call_events.c.id == webhook_outbox.c.event_id)
            .where(where)
            .order_by(
                *(
                    (webhook_outbox.c.endpoint_id, call_events.c.sequence)
                    if order_by_event
                    else (webhook_outbox.c.id.desc(),)
                )
            )
            .limit(limit)
        )
        with self._engine.connect() as conn:
            return [
                DeliveryState(
                    outbox_id=r.id,
                    endpoint_id=r.endpoint_id,
                    url=r.url,
                    call_id=r.call_id,
                    sequence=r.sequence,
                    type=r.type,
                    state=r.state,
                    attempts=r.attempts,
                    last_status=r.last_status,
                    last_error=r.last_error,
                    next_attempt_at=r.next_attempt_at if r.state == PENDING else None,
                    done_at=r.done_at,
                )
                for r in conn.execute(query)
            ]


_REMOVED = "removed from the configuration"


def _disable(conn: Connection, endpoint_id: int, reason: str, now: datetime) -> None:
    conn.execute(
        update(webhook_endpoints)
        .where(webhook_endpoints.c.id == endpoint_id)
        .values(disabled_at=now, disabled_reason=reason[:256])
    )
    conn.execute(
        update(webhook_outbox)
        .where(webhook_outbox.c.endpoint_id == endpoint_id, webhook_outbox.c.state == PENDING)
        .values(state=FAILED, last_error=f"endpoint disabled: {reason}"[:256], done_at=now)
    )
