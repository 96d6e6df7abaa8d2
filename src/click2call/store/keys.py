"""API keys: random, shown once, stored as a SHA-256 hash; and the audit log."""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Engine, Row, insert, select, update

from click2call.store.driver import Driver, Sql
from click2call.store.schema import api_keys, audit_log

KEY_PREFIX = "c2c_"
# On the tracking writer's path: run on the driver (store/driver.py).
_INSERT_AUDIT = Sql(
    "INSERT INTO audit_log (at, tenant, key_id, client_ip, endpoint, allowed, reason, call_id)"
    " VALUES (:at, :tenant, :key_id, :client_ip, :endpoint, :allowed, :reason, :call_id)"
)


def hash_key(key: str) -> str:
    # Keys carry 256 random bits, so a fast hash is enough: nothing to brute-force.
    return hashlib.sha256(key.encode()).hexdigest()


@dataclass(frozen=True, slots=True)
class ApiKey:
    id: int
    tenant: str
    prefix: str
    label: str | None
    created_at: datetime
    revoked_at: datetime | None
    admin: bool = False  # may list, create and revoke its tenant's keys


@dataclass(frozen=True, slots=True)
class AuditEntry:
    at: datetime
    tenant: str | None
    key_id: int | None
    client_ip: str | None
    endpoint: str
    allowed: bool
    reason: str | None
    call_id: int | None = None


def write_audit(driver: Driver, entry: AuditEntry) -> None:
    """One audit row, in the caller's transaction (the tracking writer's: Writes.audit)."""
    values = {
        "at": driver.time(entry.at),
        "tenant": entry.tenant,
        "key_id": entry.key_id,
        "client_ip": entry.client_ip,
        "endpoint": entry.endpoint,
        "allowed": entry.allowed,
        "reason": entry.reason[:256] if entry.reason else None,
        "call_id": entry.call_id,
    }
    driver.execute(_INSERT_AUDIT, values)


class KeyStore:
    def __init__(self, engine: Engine) -> None:
        self._engine = engine

    def create(
        self, tenant: str, label: str | None, now: datetime, admin: bool = False
    ) -> tuple[ApiKey, str]:
        """A new key for `tenant`; the key itself is returned once and never stored."""
        key = KEY_PREFIX + secrets.token_urlsafe(32)
        prefix = key[:10]
        with self._engine.begin() as conn:
            key_id = conn.execute(
                insert(api_keys).values(
                    tenant=tenant,
                    prefix=prefix,
                    key_hash=hash_key(key),
                    label=label,
                    created_at=now,
                    admin=admin,
                )
            ).inserted_primary_key[0]  # type: ignore[index]
        return ApiKey(int(key_id), tenant, prefix, label, now, None, admin), key

    def lookup(self, key: str) -> ApiKey | None:
        """The live key matching `key`, if any."""
        query = select(api_keys).where(
            api_keys.c.key_hash == hash_key(key), api_keys.c.revoked_at.is_(None)
        )
        with self._engine.connect() as conn:
            row = conn.execute(query).one_or_none()
        return None if row is None else key_of(row)

    def get(self, key_id: int) -> ApiKey | None:
        """The key with this id, revoked or not."""
        with self._engine.connect() as conn:
            row = conn.execute(select(api_keys).where(api_keys.c.id == key_id)).one_or_none()
        return None if row is None else key_of(row)

    def is_admin(self, key_id: int | None) -> bool:
        """True for a live key created with --admin."""
        if key_id is None:
            return False
        query = select(api_keys.c.admin).where(
            api_keys.c.id == key_id, api_keys.c.revoked_at.is_(None)
        )
        with self._engine.connect() as conn:
            return bool(conn.execute(query).scalar())

    def listing(self, tenant: str | None = None) -> list[ApiKey]:
        query = select(api_keys).order_by(api_keys.c.id)
        if tenant is not None:
            query = query.where(api_keys.c.tenant == tenant)
        with self._engine.connect() as conn:
            return [key_of(row) for row in conn.execute(query)]

    def revoke(self, key_id: int, now: datetime, tenant: str | None = None) -> bool:
        """Revoke a live key (only within `tenant` when given); False when there was none."""
        query = update(api_keys).where(api_keys.c.id == key_id, api_keys.c.revoked_at.is_(None))
        if tenant is not None:
            query = query.where(api_keys.c.tenant == tenant)
        with self._engine.begin() as conn:
            done = conn.execute(query.values(revoked_at=now))
        return bool(done.rowcount)

    def audit_entries(
        self, limit: int = 100, tenant: str | None = None, refusals_only: bool = False
    ) -> list[AuditEntry]:
        """Newest first; optionally one tenant's, optionally only the refused requests."""
        query = select(audit_log).order_by(audit_log.c.id.desc()).limit(limit)
        if tenant is not None:
            query = query.where(audit_log.c.tenant == tenant)
        if refusals_only:
            query = query.where(audit_log.c.allowed.is_(False))
        with self._engine.connect() as conn:
            return [
                AuditEntry(
                    r.at,
                    r.tenant,
                    r.key_id,
                    r.client_ip,
                    r.endpoint,
                    r.allowed,
                    r.reason,
                    r.call_id,
                )
                for r in conn.execute(query)
            ]


def key_of(row: Row[Any]) -> ApiKey:
    return ApiKey(
        row.id, row.tenant, row.prefix, row.label, row.created_at, row.revoked_at, row.admin
    )
