"""Each live SIP call's state (engines/sip/snapshot.py writes it), for a restarted node.

One row per call, replaced as a whole as the call's dialogs change, and deleted in the
same transaction as the call's ended event (repository.py), so a row exists exactly
while its call is in flight. The state is opaque JSON here: the SIP engine reads it.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Connection, delete, insert, or_, select, update

from click2call.calls import CallState
from click2call.store.schema import calls, sip_dialogs


def save(conn: Connection, call_id: int, state: str, now: datetime) -> None:
    """Replace the call's stored state (the caller holds the call's row lock)."""
    changed = conn.execute(
        update(sip_dialogs)
        .where(sip_dialogs.c.call_id == call_id)
        .values(state=state, updated_at=now)
    ).rowcount
    if not changed:
        conn.execute(insert(sip_dialogs).values(call_id=call_id, state=state, updated_at=now))


def forget(conn: Connection, call_id: int) -> None:
    conn.execute(delete(sip_dialogs).where(sip_dialogs.c.call_id == call_id))


def in_flight(conn: Connection, node: str | None) -> dict[str, str]:
    """uniqueid → stored state of the calls not yet ended that `node` follows (its own and
    those stored before nodes had names; every call's when `node` is None)."""
    query = (
        select(calls.c.uniqueid, sip_dialogs.c.state)
        .join(sip_dialogs, sip_dialogs.c.call_id == calls.c.id)
        .where(calls.c.state != CallState.ENDED.value)
    )
    if node is not None:
        query = query.where(or_(calls.c.node == node, calls.c.node.is_(None)))
    return {row.uniqueid: row.state for row in conn.execute(query)}
