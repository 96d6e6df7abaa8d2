"""Cluster-wide call limits, decided in the transaction that stores the call.

Every node and worker admits calls here, against the database, so `max_concurrent_calls`,
`max_calls_per_agent` and `calls_per_second` hold across all of them. On PostgreSQL a
transaction-scoped advisory lock per tenant makes the count and the insert one step for the
whole cluster; SQLite, one process per file, stores new calls in that process's one writer
thread (Store.writers), one at a time. The lock serialises a tenant's placements across the
cluster until their transaction commits, so what it covers is kept short: one read gives
both counts and the rate bucket, one write takes the token.

`key_requests_per_minute` is one bucket per API key (`KeyRequests`): on PostgreSQL a row,
refilled and taken by one guarded UPDATE whose row lock orders the simultaneous requests of
every node; on SQLite, in the one process the file serves.
"""

from __future__ import annotations

from datetime import datetime
from typing import Protocol

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
_TENANT_LOCK = Sql("SELECT pg_advisory_xact_lock(hashtext(:key))")
_NEW_BUCKET = Sql(
    "INSERT INTO call_rate_buckets (tenant, tokens, updated_at) VALUES (:tenant, :tokens, :now)"
)
_TAKE = Sql("UPDATE call_rate_buckets SET tokens = :left, updated_at = :now WHERE tenant = :tenant")


def admit(driver: Driver, tenant: str, agent: str, limits: CallLimits, now: datetime) -> None:
    """Raise RateLimited naming the limit a new call would break; else take its token."""
    if driver.postgres:
        driver.execute(_TENANT_LOCK, {"key": f"c2c:{tenant}"})
    up, agent_up, tokens, updated_at = driver.execute(
        _USAGE, {"tenant": tenant, "agent": agent}
    ).fetchone()
    if up >= limits.max_concurrent_calls:
        cap = limits.max_concurrent_calls
        raise RateLimited("max_concurrent_calls", f"{cap} calls are already up", None)
    if agent_up >= limits.max_calls_per_agent:
        per_agent = limits.max_calls_per_agent
        raise RateLimited("max_calls_per_agent", f"{agent} already has {per_agent} calls up", None)
    _take_token(driver, tenant, limits, now, tokens, driver.read_time(updated_at))


def _take_token(
    driver: Driver,
    tenant: str,
    limits: CallLimits,
    now: datetime,
    saved: float | None,
    saved_at: datetime | None,
) -> None:
    """`saved` tokens at `saved_at`: the bucket as stored (None: the tenant's first call)."""
    stored_now = driver.time(now)
    if saved is None or saved_at is None:
        tokens = float(limits.burst)
        driver.execute(_NEW_BUCKET, {"tenant": tenant, "tokens": tokens, "now": stored_now})
    else:
        elapsed = max(0.0, (now - saved_at).total_seconds())
        tokens = min(float(limits.burst), saved + elapsed * limits.calls_per_second)
    if tokens < 1:
        wait = (1 - tokens) / limits.calls_per_second
        rate = f"more than {limits.calls_per_second:g} calls a second"
        raise RateLimited("calls_per_second", rate, wait)
    driver.execute(_TAKE, {"tenant": tenant, "left": tokens - 1, "now": stored_now})


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
            left: float = conn.execute(_REFILLED_NOW, values).scalar_one()
        return left

    def _take_here(self, key: int, rate: float, capacity: float, now: float) -> float | None:
        tokens, at = self._here.get(key, (capacity, now))
        refilled = min(capacity, tokens + max(0.0, now - at) * rate)
        if refilled < 1:
            return refilled
        self._here[key] = (refilled - 1, now)
        return None
