"""Hang-ups for calls another node owns: asked here, taken by the owner.

A call's dialogs live in the process that placed it, so a hang-up that reaches another node
(any node of a load-balanced cluster, any worker of one machine) is stored for the owner,
which polls for its requests and ends the call with its own engine. The store is the only
channel between nodes: no node needs to reach another.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Engine, insert, select, update

from click2call.store.schema import calls, hangup_requests


@dataclass(frozen=True, slots=True)
class HangupRequest:
    tenant: str
    uniqueid: str
    asked_by: str | None


class HangupRequests:
    def __init__(self, engine: Engine, node: str | None) -> None:
        self._engine = engine
        self._node = node

    def ask(self, call_id: int, owner: str, now: datetime) -> None:
        with self._engine.begin() as conn:
            conn.execute(
                insert(hangup_requests).values(
                    call_id=call_id, node=owner, asked_by=self._node, asked_at=now
                )
            )

    def take(self, now: datetime) -> list[HangupRequest]:
        """This node's waiting requests, marked taken in the same transaction."""
        mine = (hangup_requests.c.node == self._node) & hangup_requests.c.taken_at.is_(None)
        query = (
            select(
                hangup_requests.c.id, calls.c.tenant, calls.c.uniqueid, hangup_requests.c.asked_by
            )
            .join(calls, calls.c.id == hangup_requests.c.call_id)
            .where(mine)
            .order_by(hangup_requests.c.id)
            .with_for_update(of=hangup_requests, skip_locked=True)
        )
        with self._engine.begin() as conn:
            rows = conn.execute(query).all()
            if rows:
                conn.execute(
                    update(hangup_requests)
                    .where(hangup_requests.c.id.in_([r.id for r in rows]))
                    .values(taken_at=now)
                )
        return [HangupRequest(r.tenant, r.uniqueid, r.asked_by) for r in rows]
