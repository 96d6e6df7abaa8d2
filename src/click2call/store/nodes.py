"""Node heartbeats, and the claim of a lost node's calls.

Each node writes its `nodes` row every heartbeat interval. A node whose row is older
than the lease is lost: a surviving node locks that row (FOR UPDATE SKIP LOCKED, so
two survivors never claim the same node), moves the lost node's live calls to itself
(`calls.node`) and deletes the row, all in one transaction. The calls are then the
survivor's to end; if it dies too before it has, they are lost with it and the next
survivor claims them. A node restarted within the lease writes its row again before
anyone claims it: its calls stay its own.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import Connection, Engine, delete, insert, select, update

from click2call.calls import CallState
from click2call.store.schema import calls, nodes, sip_dialogs

_LIVE = [state.value for state in CallState if state is not CallState.ENDED]


@dataclass(frozen=True, slots=True)
class OrphanCall:
    """A live call of a lost node, now the claiming node's to end."""

    uniqueid: str
    tenant: str
    state: CallState
    sip_state: str | None  # its stored SIP dialogs (engines/sip/snapshot.py), if any


@dataclass(frozen=True, slots=True)
class Claim:
    node: str  # the lost node
    silent_since: datetime  # its last heartbeat
    calls: list[OrphanCall]


class NodeRegistry:
    def __init__(self, engine: Engine, node: str) -> None:
        self._engine = engine
        self._node = node

    def beat(self, now: datetime) -> bool:
        """Write this node's heartbeat; False when its row was gone (first start, a
        graceful stop before, or a survivor took this node's calls over)."""
        with self._engine.begin() as conn:
            mine = nodes.c.name == self._node
            if conn.execute(update(nodes).where(mine).values(heartbeat_at=now)).rowcount:
                return True
            conn.execute(insert(nodes).values(name=self._node, heartbeat_at=now))
            return False

    def leave(self) -> None:
        """A graceful stop: this node ended its calls itself, nobody is to take over."""
        with self._engine.begin() as conn:
            conn.execute(delete(nodes).where(nodes.c.name == self._node))

    def claim_lost(self, now: datetime, lease: timedelta) -> list[Claim]:
        """Take every node silent for longer than `lease`: its live calls become this
        node's (returned, to be ended), its row goes. Each lost node is claimed once."""
        lost = (
            select(nodes.c.name, nodes.c.heartbeat_at)
            .where(nodes.c.heartbeat_at < now - lease)
            .where(nodes.c.name != self._node)
            .order_by(nodes.c.name)
            .with_for_update(skip_locked=True)
        )
        with self._engine.begin() as conn:
            claims = []
            for row in conn.execute(lost).all():
                orphans = self._take_calls(conn, row.name)
                conn.execute(delete(nodes).where(nodes.c.name == row.name))
                claims.append(Claim(row.name, row.heartbeat_at, orphans))
        return claims

    def _take_calls(self, conn: Connection, lost: str) -> list[OrphanCall]:
        theirs = (calls.c.node == lost) & calls.c.state.in_(_LIVE)
        query = (
            select(
                calls.c.id,
                calls.c.uniqueid,
                calls.c.tenant,
                calls.c.state,
                sip_dialogs.c.state.label("sip_state"),
            )
            .outerjoin(sip_dialogs, sip_dialogs.c.call_id == calls.c.id)
            .where(theirs)
            .order_by(calls.c.id)
        )
        rows = conn.execute(query).all()
        if rows:
            ids = [row.id for row in rows]
            conn.execute(update(calls).where(calls.c.id.in_(ids)).values(node=self._node))
        return [OrphanCall(r.uniqueid, r.tenant, CallState(r.state), r.sip_state) for r in rows]
