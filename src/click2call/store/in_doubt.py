"""New calls in doubt: the connection broke as their transaction committed.

A commit can reach the database and its answer be lost (PostgreSQL restarting, a network
cut): the request was answered 503 and the call never dialled, but its row may exist,
queued, counting against the limits of the whole cluster for as long as this node lives.
Once the database answers again the row is looked for by what only that call has (its
node, tenant, parties and the instant it was stored) and, if found still queued, ended.
"""

from __future__ import annotations

from datetime import datetime

from click2call.store.driver import Driver, Sql

_WHERE = (
    "SELECT uniqueid FROM calls WHERE state = 'queued' AND tenant = :tenant"
    " AND agent_number = :agent_number AND destination = :destination"
    " AND created_at = :created_at AND node"
)
_QUEUED = Sql(f"{_WHERE} IS :node", postgresql=f"{_WHERE} IS NOT DISTINCT FROM :node")


def queued_as_placed(
    driver: Driver, node: str | None, tenant: str, agent: str, destination: str, at: datetime
) -> list[str]:
    """The uniqueids of this node's calls still queued that were stored at `at` for these
    parties: none when the commit did not happen, or the call has moved on since."""
    params = {
        "tenant": tenant,
        "agent_number": agent,
        "destination": destination,
        "created_at": driver.time(at),
        "node": node,
    }
    return [str(row[0]) for row in driver.execute(_QUEUED, params).fetchall()]
