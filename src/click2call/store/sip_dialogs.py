"""Each live SIP call's state (engines/sip/snapshot.py writes it), for a restarted node.

One row per call, replaced as a whole as the call's dialogs change, and deleted in the
same transaction as the call's ended event (repository.py), so a row exists exactly
while its call is in flight. The state is opaque JSON here: the SIP engine reads it.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Connection, bindparam, delete, insert, or_, select, update

from click2call.calls import CallState
from click2call.store.schema import calls, sip_dialogs

# Built once, like repository.py's statements. Both skip an ended call: its state is gone
# with its end, and a late write must not bring it back.
_LIVE_CALL = (
    select(calls.c.id)
    .where(calls.c.uniqueid == bindparam("uniqueid"))
    .where(calls.c.state != CallState.ENDED.value)
    .scalar_subquery()
)
_UPDATE = (
    update(sip_dialogs)
    .where(sip_dialogs.c.call_id == _LIVE_CALL)
    .values(state=bindparam("state"), updated_at=bindparam("now"))
)
_INSERT = (
    insert(sip_dialogs)
    .from_select(
        ["call_id", "state", "updated_at"],
        select(calls.c.id, bindparam("state"), bindparam("now"))
        .where(calls.c.uniqueid == bindparam("uniqueid"))
        .where(calls.c.state != CallState.ENDED.value),
    )
    .returning(sip_dialogs.c.call_id)  # rowcount of INSERT … SELECT is not portable
)


def save(conn: Connection, uniqueid: str, state: str, now: datetime) -> bool:
    """Replace the call's stored state; False when the call is unknown or ended. One
    statement when the row exists (every write but the first)."""
    values = {"uniqueid": uniqueid, "state": state, "now": now}
    if conn.execute(_UPDATE, values).rowcount:
        return True
    return conn.execute(_INSERT, values).first() is not None


_DELETE = delete(sip_dialogs).where(sip_dialogs.c.call_id == bindparam("call_id"))


def forget(conn: Connection, call_id: int) -> None:
    conn.execute(_DELETE, {"call_id": call_id})


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
