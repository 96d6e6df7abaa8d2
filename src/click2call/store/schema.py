"""The tables. Alembic migrations under `migrations/` create them; this module describes them."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import (
    Boolean,
    Column,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    TypeDecorator,
)
from sqlalchemy.engine import Dialect

metadata = MetaData()


class UtcDateTime(TypeDecorator[datetime]):
    """Aware UTC datetimes in and out, also on SQLite, which forgets the zone."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to the store")
        return value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


calls = Table(
    "calls",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("uniqueid", String(32), unique=True, nullable=True),
    Column("tenant", String(64), nullable=False),
    Column("agent_kind", String(16), nullable=False),
    Column("agent_tech", String(8), nullable=True),
    Column("agent_number", String(32), nullable=False),
    Column("destination", String(32), nullable=False),
    Column("destination_caller_id", String(32), nullable=False),
    Column("agent_caller_id", String(32), nullable=False),
    Column("foreignid", String(128), nullable=True),
    Column("state", String(24), nullable=False),
    Column("result", String(24), nullable=True),
    Column("cause", String(256), nullable=True),
    Column("created_at", UtcDateTime, nullable=False),
    Column("agent_answered_at", UtcDateTime, nullable=True),
    Column("connected_at", UtcDateTime, nullable=True),
    Column("ended_at", UtcDateTime, nullable=True),
    Index("ix_calls_foreignid", "foreignid"),
    Index("ix_calls_tenant_created", "tenant", "created_at"),
    Index("ix_calls_state", "state"),
)

call_events = Table(
    "call_events",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("call_id", Integer, ForeignKey("calls.id", ondelete="CASCADE"), nullable=False),
    Column("state", String(24), nullable=False),
    Column("result", String(24), nullable=True),
    Column("cause", String(256), nullable=True),
    Column("at", UtcDateTime, nullable=False),
    Index("ix_call_events_call_id", "call_id"),
)

api_keys = Table(
    "api_keys",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("tenant", String(64), nullable=False),
    Column("prefix", String(16), nullable=False),  # shown in listings; not enough to use
    Column("key_hash", String(64), nullable=False, unique=True),  # sha256 of the whole key
    Column("label", String(128), nullable=True),
    Column("created_at", UtcDateTime, nullable=False),
    Column("revoked_at", UtcDateTime, nullable=True),
    Index("ix_api_keys_tenant", "tenant"),
)

audit_log = Table(
    "audit_log",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("at", UtcDateTime, nullable=False),
    Column("tenant", String(64), nullable=True),
    Column("key_id", Integer, nullable=True),
    Column("client_ip", String(64), nullable=True),
    Column("endpoint", String(64), nullable=False),
    Column("allowed", Boolean, nullable=False),
    Column("reason", String(256), nullable=True),
    Column("call_id", Integer, nullable=True),
    Index("ix_audit_log_at", "at"),
)
