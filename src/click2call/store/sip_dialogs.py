"""Each live SIP call's state (engines/sip/snapshot.py writes it), for a restarted node.

One row per call, replaced as a whole as the call's dialogs change, and deleted in the
same transaction as the call's ended event (repository.py), so a row exists exactly
while its call is in flight. The state is opaque JSON here: the SIP engine reads it.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Connection, or_, select

from click2call.calls import CallState
from click2call.store.driver import Driver, Sql
from click2call.store.schema import calls, sip_dialogs

# On the write path: run on the driver (store/driver.py). One statement inserts the row or
# replaces it (an UPDATE tried first missed on every call's first state: one statement in
# vain per call); it skips an ended call: its state is gone with its end, and a late write
# must not bring it back. (`WHERE` before `ON CONFLICT`: SQLite's parser needs one there.)
_SAVE = Sql(
    "INSERT INTO sip_dialogs (call_id, state, updated_at)"
    " SELECT id, :state, :now FROM calls WHERE uniqueid = :uniqueid AND state <> 'ended'"
    " ON CONFLICT (call_id) DO UPDATE SET state = excluded.state,"
    " updated_at = excluded.updated_at"
)


def save(driver: Driver, uniqueid: str, state: str, now: datetime) -> bool:
    """Keep the call's state, replacing the one stored; False when the call is unknown or
    ended, and nothing is kept."""
    values = {"uniqueid": uniqueid, "state": state, "now": driver.time(now)}
    return bool(driver.execute(_SAVE, values).rowcount)  # both drivers count the row


_DELETE = Sql("DELETE FROM sip_dialogs WHERE call_id = :call_id")


def forget(driver: Driver, call_id: int) -> None:
    driver.execute(_DELETE, {"call_id": call_id})


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
