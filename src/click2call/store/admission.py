"""Cluster-wide call limits, decided in the transaction that stores the call.

Every node and worker admits calls here, against the database, so `max_concurrent_calls`,
`max_calls_per_agent` and `calls_per_second` hold across all of them.

On PostgreSQL a transaction-scoped advisory lock per tenant makes the count and the new
calls one step for the whole cluster, and every node places the same tenant's calls: the
lock is what two workers take turns on. So it is taken last: a transaction stores its new
calls first (the statements that wait on round trips, side by side with the other
workers'), then `Admissions.settle` takes the lock, reads the counts and the rate bucket in
one round trip (they now include its own new calls, which it subtracts), decides each new
call in the order it was stored, deletes the refused ones (their event and deliveries go
with them) and writes the bucket in a second round trip; the commit follows. The lock is
held for those two round trips and the commit, not for every statement of every new call
of the batch: with 2 workers, the lock was held for most of each transaction and the
second worker's batch waited on it (`pg_stat_activity`: a backend waiting on `advisory`
in about a quarter of the samples).

SQLite, one process per file, stores new calls in that process's one writer thread
(Store.writers), one at a time: a call is admitted before it is stored (`admit`).

`key_requests_per_minute` is one bucket per API key (`KeyRequests`): on PostgreSQL a row,
refilled and taken by one guarded UPDATE whose row lock orders the simultaneous requests of
every node; on SQLite, in the one process the file serves.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

from sqlalchemy import Engine, Float, bindparam, case, select, update
from sqlalchemy.dialects import postgresql

from click2call.calls import CallState
from click2call.errors import RateLimited
from click2call.store.driver import Driver, Sql
from click2call.store.schema import key_rate_buckets


class CallLimits(Protocol):
    @property
    def max_concurrent_calls(self) -> int: ...
    @property
    def max_calls_per_agent(self) -> int: ...
    @property
    def calls_per_second(self) -> float: ...
    @property
    def burst(self) -> int: ...


# On the write path of every new call: run on the driver (store/driver.py). The live states
# as a literal IN list, not `<> 'ended'`: the state index then finds the few live calls
# among the many ended ones; both counts in one pass over them.
_LIVE = ", ".join(f"'{state}'" for state in CallState if state is not CallState.ENDED)
_USAGE = Sql(
    "SELECT count(*), count(CASE WHEN agent_number = :agent THEN 1 END),"  # noqa: S608
    " (SELECT tokens FROM call_rate_buckets WHERE tenant = :tenant),"
    " (SELECT updated_at FROM call_rate_buckets WHERE tenant = :tenant)"
    f" FROM calls WHERE tenant = :tenant AND state IN ({_LIVE})"
)
# PostgreSQL, for a transaction's new calls at once: the tenant's live calls (agent NULL),
# then those of each agent among `agents`, in one pass over the live index.
_USAGE_BY_AGENT = Sql(
    "SELECT CASE WHEN agent_number = ANY(:agents) THEN agent_number END AS agent, count(*)"  # noqa: S608
    f" FROM calls WHERE tenant = :tenant AND state IN ({_LIVE}) GROUP BY 1"
)
_BUCKET = Sql("SELECT tokens, updated_at FROM call_rate_buckets WHERE tenant = :tenant")
_TENANT_LOCK = Sql("SELECT pg_advisory_xact_lock(hashtext(:key))")
_NEW_BUCKET = Sql(
    "INSERT INTO call_rate_buckets (tenant, tokens, updated_at) VALUES (:tenant, :tokens, :now)"
)
_TAKE = Sql("UPDATE call_rate_buckets SET tokens = :left, updated_at = :now WHERE tenant = :tenant")
# A refused call's row; its event, deliveries and callback subscription go with it (ON
# DELETE CASCADE). Rows of this transaction only: nobody else has seen them.
_FORGET = Sql("DELETE FROM calls WHERE id = ANY(:ids)")
_Statement = tuple[Sql, dict[str, Any]]


@dataclass(slots=True)
class _Usage:
    """A tenant's live calls and rate bucket, as read under its lock, counting the calls
    admitted since. `tokens` None: the tenant has no bucket yet (its first call)."""

    up: int
    by_agent: dict[str, int]
    tokens: float | None
    at: datetime | None
    took: bool = False  # a token was taken: the bucket is to be written

    def admit(self, agent: str, limits: CallLimits, now: datetime) -> None:
        """Raise RateLimited naming the limit a new call would break; else count it and
        take its token."""
        if self.up >= limits.max_concurrent_calls:
            cap = limits.max_concurrent_calls
            raise RateLimited("max_concurrent_calls", f"{cap} calls are already up", None)
        if self.by_agent.get(agent, 0) >= limits.max_calls_per_agent:
            per_agent = limits.max_calls_per_agent
            message = f"{agent} already has {per_agent} calls up"
            raise RateLimited("max_calls_per_agent", message, None)
        if self.tokens is None or self.at is None:
            tokens = float(limits.burst)
        else:
            elapsed = max(0.0, (now - self.at).total_seconds())
            tokens = min(float(limits.burst), self.tokens + elapsed * limits.calls_per_second)
        if tokens < 1:
            wait = (1 - tokens) / limits.calls_per_second
            rate = f"more than {limits.calls_per_second:g} calls a second"
            raise RateLimited("calls_per_second", rate, wait)
        self.tokens, self.at, self.took = tokens - 1, now, True
        self.count(agent)

    def count(self, agent: str) -> None:
        self.up += 1
        self.by_agent[agent] = self.by_agent.get(agent, 0) + 1

    def uncount(self, agent: str) -> None:
        self.up -= 1
        self.by_agent[agent] -= 1

    def bucket_write(self, driver: Driver, tenant: str, existed: bool) -> _Statement:
        """The statement that saves the bucket as the admitted calls left it."""
        now = driver.time(self.at)
        if existed:
            return _TAKE, {"tenant": tenant, "left": self.tokens, "now": now}
        return _NEW_BUCKET, {"tenant": tenant, "tokens": self.tokens, "now": now}


def admit(driver: Driver, tenant: str, agent: str, limits: CallLimits, now: datetime) -> None:
    """SQLite: raise RateLimited naming the limit a new call would break; else take its
    token (before the call is stored)."""
    up, agent_up, tokens, updated_at = driver.execute(
        _USAGE, {"tenant": tenant, "agent": agent}
    ).fetchone()
    usage = _Usage(up, {agent: agent_up}, tokens, driver.read_time(updated_at))
    usage.admit(agent, limits, now)
    driver.execute(*usage.bucket_write(driver, tenant, existed=tokens is not None))


@dataclass(frozen=True, slots=True)
class _NewCall:
    call_id: int
    agent: str
    limits: CallLimits | None  # None: stored without admission (a call policy refused)
    at: datetime


@dataclass(slots=True)
class Admissions:
    """PostgreSQL: the new calls a transaction stored, admitted together as it ends."""

    _by_tenant: dict[str, list[_NewCall]] = field(default_factory=dict)
    # A new call that ended in its own transaction → how many new calls of its tenant had
    # been stored by then: it is live for those, not for the ones stored after.
    _ended: dict[int, int] = field(default_factory=dict)

    def add(
        self, tenant: str, call_id: int, agent: str, limits: CallLimits | None, at: datetime
    ) -> None:
        """A new call stored in this transaction, to admit under `limits` (None: counted
        only, as a live call of its tenant, for the calls stored after it)."""
        self._by_tenant.setdefault(tenant, []).append(_NewCall(call_id, agent, limits, at))

    def ended(self, tenant: str, call_id: int) -> None:
        """A call ended in this transaction: if it was stored in it too, it no longer
        counts for the new calls stored after this."""
        new = self._by_tenant.get(tenant, [])
        if any(call.call_id == call_id for call in new):
            self._ended[call_id] = len(new)

    def settle(self, driver: Driver) -> dict[int, RateLimited]:
        """Admit the new calls, each in the order stored, as if each had been admitted
        alone just before it was stored; delete the refused ones. Call id → the refusal."""
        tenants = [
            (tenant, new)
            for tenant, new in sorted(self._by_tenant.items())  # locks in one order
            if any(call.limits is not None for call in new)
        ]
        ended, self._by_tenant, self._ended = self._ended, {}, {}
        if not tenants:
            return {}
        reads: list[_Statement] = []
        for tenant, new in tenants:
            agents = sorted({call.agent for call in new})
            reads += [
                (_TENANT_LOCK, {"key": f"c2c:{tenant}"}),
                (_USAGE_BY_AGENT, {"tenant": tenant, "agents": agents}),
                (_BUCKET, {"tenant": tenant}),
            ]
        found = driver.fetch_together(reads)
        refused: dict[int, RateLimited] = {}
        writes: list[_Statement] = []
        for k, (tenant, new) in enumerate(tenants):
            usage = _usage_before(new, ended, found[3 * k + 1], found[3 * k + 2], driver)
            existed = usage.tokens is not None
            refused |= _admit_in_order(usage, new, ended)
            if usage.took:
                writes.append(usage.bucket_write(driver, tenant, existed))
        if refused:
            writes.append((_FORGET, {"ids": list(refused)}))
        driver.fetch_together(writes)
        return refused


def _admit_in_order(
    usage: _Usage, new: list[_NewCall], ended: dict[int, int]
) -> dict[int, RateLimited]:
    """Each new call admitted against `usage` in the order stored; the refused ones."""
    refused: dict[int, RateLimited] = {}
    ends_before: dict[int, list[_NewCall]] = {}  # the nth new call → the calls that
    for call in new:  # ended before it was stored
        if (position := ended.get(call.call_id)) is not None:
            ends_before.setdefault(position, []).append(call)
    for i, call in enumerate(new):
        for earlier in ends_before.get(i, ()):
            if earlier.call_id not in refused:
                usage.uncount(earlier.agent)
        if call.limits is None:
            usage.count(call.agent)
            continue
        try:
            usage.admit(call.agent, call.limits, call.at)
        except RateLimited as exc:
            refused[call.call_id] = exc
    return refused


def _usage_before(
    new: list[_NewCall],
    ended: dict[int, int],
    counts: list[tuple[Any, ...]],
    bucket: list[tuple[Any, ...]],
    driver: Driver,
) -> _Usage:
    """The tenant's usage without this transaction's new calls (read with those still live:
    they are visible to their own transaction)."""
    up, by_agent = 0, {}
    for agent, count in counts:
        up += count
        if agent is not None:
            by_agent[agent] = count
    for call in new:
        if call.call_id in ended:
            continue
        up -= 1
        if call.agent in by_agent:
            by_agent[call.agent] -= 1
    tokens, at = bucket[0] if bucket else (None, None)
    return _Usage(up, by_agent, tokens, driver.read_time(at))


_KEY = key_rate_buckets.c
_NOW = bindparam("now_s", type_=Float)
_RATE = bindparam("per_second", type_=Float)
_CAPACITY = bindparam("capacity", type_=Float)
_SAVED_UP = _KEY.tokens + case((_KEY.at < _NOW, _NOW - _KEY.at), else_=0.0) * _RATE
_REFILLED = case((_SAVED_UP > _CAPACITY, _CAPACITY), else_=_SAVED_UP)
_TAKE_REQUEST = (
    update(key_rate_buckets)
    .where(_KEY.key_id == bindparam("of_key"), _REFILLED >= 1)
    .values(tokens=_REFILLED - 1, at=_NOW)
)
_REFILLED_NOW = select(_REFILLED).where(_KEY.key_id == bindparam("of_key"))


class KeyRequests:
    """`key_requests_per_minute`: each API key's budget, one bucket for the whole cluster.

    On PostgreSQL the bucket is a row. A SQLite file serves one process, whose memory is
    then the whole cluster: the bucket stays there (a write to the file from the event loop
    would wait for the writer thread's lock on it)."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        self._shared = engine.dialect.name == "postgresql"
        first = postgresql.insert(key_rate_buckets).on_conflict_do_nothing()
        self._first = first.returning(_KEY.key_id)  # a row only when it was inserted
        self._here: dict[int, tuple[float, float]] = {}  # SQLite: key → (tokens, at)

    @property
    def in_database(self) -> bool:
        """Whether `take` reads and writes the database (call it off the event loop) or
        only this process's memory (call it on the loop: not shared with threads)."""
        return self._shared

    def take(self, key_id: int, per_minute: int, now: datetime) -> None:
        """Count one request of `key_id`; RateLimited when its minute's budget is spent."""
        take = self._take_shared if self._shared else self._take_here
        left = take(key_id, per_minute / 60, float(per_minute), now.timestamp())
        if left is not None:
            raise RateLimited(
                "key_requests_per_minute",
                f"more than {per_minute} requests a minute with this key",
                (1 - left) / (per_minute / 60),
            )

    def _take_shared(self, key: int, rate: float, capacity: float, now: float) -> float | None:
        """None when a token was taken, else the tokens there are (fewer than one)."""
        values = {"of_key": key, "now_s": now, "per_second": rate, "capacity": capacity}
        with self._engine.begin() as conn:
            if conn.execute(_TAKE_REQUEST, values).rowcount:
                return None
            row = {"key_id": key, "tokens": capacity - 1, "at": now}
            if conn.execute(self._first, row).first() is not None:  # the key's first request
                return None
            # Another node inserted the key's first bucket meanwhile (our INSERT waited on
            # it, then did nothing): the row is there now, take from it.
            if conn.execute(_TAKE_REQUEST, values).rowcount:
                return None
            left: float = conn.execute(_REFILLED_NOW, values).scalar_one()
        return left

    def _take_here(self, key: int, rate: float, capacity: float, now: float) -> float | None:
        tokens, at = self._here.get(key, (capacity, now))
        refilled = min(capacity, tokens + max(0.0, now - at) * rate)
        if refilled < 1:
            return refilled
        self._here[key] = (refilled - 1, now)
        return None
