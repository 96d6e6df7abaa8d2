"""Retention: what `click2call db prune --older-than DAYS` removes, a batch at a time.

Older than the cutoff, and only then:
- ended calls (by `ended_at`) with everything hanging off them: their events, webhook
  deliveries and attempts, their own callback endpoint, hang-up requests, SIP dialogs and
  widget links. A call one of whose deliveries is still pending stays, whole: a delivery
  still due is never lost;
- delivered and abandoned (failed) webhook deliveries (by `done_at`), with their attempts,
  whichever call they belong to;
- audit rows (by `at`).
Never a live call, never a pending delivery, never the newest call: on SQLite a new call's
id is one more than the largest (store/repository.py), so removing the newest would hand
its id, which webhook receivers and CRMs have seen, to the next call. Each batch is its
own short transaction, so no lock is held for long and running servers go on storing
calls meanwhile.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, fields
from datetime import datetime
from typing import Any

from sqlalchemy import Column, Connection, Engine, delete, exists, func, select

from click2call.calls import CallState
from click2call.store.outbox import DELIVERED, FAILED, PENDING
from click2call.store.schema import (
    audit_log,
    call_events,
    calls,
    hangup_requests,
    sip_dialogs,
    webhook_attempts,
    webhook_endpoints,
    webhook_outbox,
    widget_calls,
)

BATCH = 500  # rows of the table being pruned per transaction


@dataclass
class Pruned:
    """How many rows went, by kind."""

    calls: int = 0
    events: int = 0
    deliveries: int = 0
    attempts: int = 0
    audit_rows: int = 0

    def __add__(self, other: Pruned) -> Pruned:
        return Pruned(*(getattr(self, f.name) + getattr(other, f.name) for f in fields(self)))


def prune(engine: Engine, cutoff: datetime, batch: int = BATCH) -> Pruned:
    """Remove what is older than `cutoff` (see the module's docstring), `batch` rows of a
    table per transaction; what was removed."""
    total = Pruned()
    for step in (_ended_calls, _finished_deliveries, _audit_rows):
        while True:
            with engine.begin() as conn:
                pruned = step(conn, cutoff, batch)
            total += pruned
            if not any(vars(pruned).values()):
                break
    return total


def _ended_calls(conn: Connection, cutoff: datetime, batch: int) -> Pruned:
    still_due = exists().where(
        webhook_outbox.c.call_id == calls.c.id, webhook_outbox.c.state == PENDING
    )
    newest = select(func.max(calls.c.id)).scalar_subquery()
    ids = conn.scalars(
        select(calls.c.id)
        .where(calls.c.state == CallState.ENDED.value, calls.c.ended_at < cutoff, ~still_due)
        .where(calls.c.id < newest)
        .order_by(calls.c.id)
        .limit(batch)
    ).all()
    if not ids:
        return Pruned()
    outbox_ids = conn.scalars(
        select(webhook_outbox.c.id).where(webhook_outbox.c.call_id.in_(ids))
    ).all()
    pruned = _deliveries(conn, outbox_ids)
    pruned.events = _delete(conn, call_events.c.call_id, ids)
    for table in (webhook_endpoints, hangup_requests, sip_dialogs, widget_calls):
        _delete(conn, table.c.call_id, ids)
    pruned.calls = _delete(conn, calls.c.id, ids)
    return pruned


def _finished_deliveries(conn: Connection, cutoff: datetime, batch: int) -> Pruned:
    ids = conn.scalars(
        select(webhook_outbox.c.id)
        .where(webhook_outbox.c.state.in_((DELIVERED, FAILED)), webhook_outbox.c.done_at < cutoff)
        .order_by(webhook_outbox.c.id)
        .limit(batch)
    ).all()
    return _deliveries(conn, ids)


def _deliveries(conn: Connection, ids: Sequence[int]) -> Pruned:
    if not ids:
        return Pruned()
    attempts = _delete(conn, webhook_attempts.c.outbox_id, ids)
    return Pruned(deliveries=_delete(conn, webhook_outbox.c.id, ids), attempts=attempts)


def _audit_rows(conn: Connection, cutoff: datetime, batch: int) -> Pruned:
    ids = conn.scalars(
        select(audit_log.c.id).where(audit_log.c.at < cutoff).order_by(audit_log.c.id).limit(batch)
    ).all()
    return Pruned(audit_rows=_delete(conn, audit_log.c.id, ids)) if ids else Pruned()


def _delete(conn: Connection, column: Column[Any], ids: Sequence[int]) -> int:
    return conn.execute(delete(column.table).where(column.in_(ids))).rowcount
