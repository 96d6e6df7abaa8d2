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

# On the write path: run on the driver (store/driver.py). Both skip an ended call: its
# state is gone with its end, and a late write must not bring it back.
_UPDATE = Sql(
    "UPDATE sip_dialogs SET state = :state, updated_at = :now WHERE call_id ="
    " (SELECT id FROM calls WHERE uniqueid = :uniqueid AND state <> 'ended')"
)
_INSERT = Sql(
    "INSERT INTO sip_dialogs (call_id, state, updated_at)"
    " SELECT id, :state, :now FROM calls WHERE uniqueid = :uniqueid AND state <> 'ended'"
)


def save(driver: Driver, uniqueid: str, state: str, now: datetime) -> bool:
    """Replace the call's stored state; False when the call is unknown or ended. One
    statement when the row exists (every write but the first)."""
    values = {"uniqueid": uniqueid, "state": state, "now": driver.time(now)}
    if driver.execute(_UPDATE, values).rowcount:
        return True
    return bool(driver.execute(_INSERT, values).rowcount)  # both drivers count these rows


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
