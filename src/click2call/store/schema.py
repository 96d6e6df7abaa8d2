"""The tables. Alembic migrations under `migrations/` create them; this module describes them."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import (
    Boolean,
    Column,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    TypeDecorator,
    UniqueConstraint,
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
    Column("last_sequence", Integer, nullable=False, server_default="0"),
    Column("node", String(128), nullable=True),  # the node that placed it and follows it
    # The timeouts it was placed with (none for calls stored before they were kept).
    Column("agent_ring_timeout", Float, nullable=True),
    Column("destination_ring_timeout", Float, nullable=True),
    Column("max_call_seconds", Float, nullable=True),
    Index("ix_calls_foreignid", "foreignid"),
    Index("ix_calls_tenant_created", "tenant", "created_at"),
    Index("ix_calls_live", "state", "tenant", "agent_number"),  # admission counts
    Index("ix_calls_tenant_id", "tenant", "id"),  # history pages, newest first
    Index("ix_calls_tenant_agent", "tenant", "agent_number"),
    Index("ix_calls_tenant_destination", "tenant", "destination"),
    Index("ix_calls_tenant_foreignid", "tenant", "foreignid"),
    Index("ix_calls_node_state", "node", "state"),
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
    Column("sequence", Integer, nullable=False),  # per call, from 1
    Column("type", String(32), nullable=False),  # call.<state>, or call.rejected
    Column("payload", Text, nullable=True),  # the event body sent to webhooks and the feed
    # Also the index of every lookup by call (its leading column).
    UniqueConstraint("call_id", "sequence", name="uq_call_events_call_sequence"),
)

webhook_endpoints = Table(
    "webhook_endpoints",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("tenant", String(64), nullable=False),
    Column("url", String(2048), nullable=False),
    # Set for a call's own callback_url; NULL for a tenant subscription from the config.
    Column("call_id", Integer, ForeignKey("calls.id", ondelete="CASCADE"), nullable=True),
    Column("events", Text, nullable=True),  # space-separated types; NULL = every type
    Column("created_at", UtcDateTime, nullable=False),
    Column("disabled_at", UtcDateTime, nullable=True),
    Column("disabled_reason", String(256), nullable=True),
    Index("ix_webhook_endpoints_tenant", "tenant"),
    Index("ix_webhook_endpoints_call", "call_id"),
)

webhook_outbox = Table(
    "webhook_outbox",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("endpoint_id", Integer, ForeignKey("webhook_endpoints.id"), nullable=False),
    Column("call_id", Integer, ForeignKey("calls.id", ondelete="CASCADE"), nullable=False),
    Column("event_id", Integer, ForeignKey("call_events.id", ondelete="CASCADE"), nullable=False),
    Column("state", String(16), nullable=False),  # pending, delivered, failed
    Column("attempts", Integer, nullable=False, server_default="0"),
    Column("next_attempt_at", UtcDateTime, nullable=False),
    Column("last_attempt_at", UtcDateTime, nullable=True),
    Column("last_status", Integer, nullable=True),
    Column("last_error", String(256), nullable=True),
    Column("done_at", UtcDateTime, nullable=True),
    # A node sending it now; the others leave it alone until the lease runs out.
    Column("leased_by", String(128), nullable=True),
    Column("lease_until", UtcDateTime, nullable=True),
    Index("ix_webhook_outbox_due", "state", "next_attempt_at"),
    Index("ix_webhook_outbox_order", "endpoint_id", "call_id", "state"),
    Index("ix_webhook_outbox_call", "call_id"),
)

webhook_attempts = Table(
    "webhook_attempts",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column(
        "outbox_id", Integer, ForeignKey("webhook_outbox.id", ondelete="CASCADE"), nullable=False
    ),
    Column("at", UtcDateTime, nullable=False),
    Column("status", Integer, nullable=True),  # HTTP status; NULL when no reply came
    Column("error", String(256), nullable=True),
    Column("response_excerpt", String(256), nullable=True),
    Column("seconds", Float, nullable=False),
    Index("ix_webhook_attempts_outbox", "outbox_id"),
)

# A hang-up that reached a node other than the call's owner, waiting for the owner to act.
hangup_requests = Table(
    "hangup_requests",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("call_id", Integer, ForeignKey("calls.id", ondelete="CASCADE"), nullable=False),
    Column("node", String(128), nullable=False),  # the owner, who is to hang up
    Column("asked_by", String(128), nullable=True),  # the node the request reached
    Column("asked_at", UtcDateTime, nullable=False),
    Column("taken_at", UtcDateTime, nullable=True),
    Index("ix_hangup_requests_node_taken", "node", "taken_at"),
)

# A live call's SIP state (engines/sip/snapshot.py, JSON): one row per call, rewritten as a
# whole so a restart never reads one leg from before a change and the other from after.
# Removed with the call's ended event.
sip_dialogs = Table(
    "sip_dialogs",
    metadata,
    Column("call_id", Integer, ForeignKey("calls.id", ondelete="CASCADE"), primary_key=True),
    Column("state", Text, nullable=False),
    Column("updated_at", UtcDateTime, nullable=False),
)

# Each node's last sign of life (store/nodes.py): a node silent past the lease is lost, and
# the first survivor to lock its row takes over its calls and removes the row.
nodes = Table(
    "nodes",
    metadata,
    Column("name", String(128), primary_key=True),
    Column("heartbeat_at", UtcDateTime, nullable=False),
)

# calls_per_second of each tenant, shared by every node (store/admission.py).
call_rate_buckets = Table(
    "call_rate_buckets",
    metadata,
    Column("tenant", String(64), primary_key=True),
    Column("tokens", Float, nullable=False),
    Column("updated_at", UtcDateTime, nullable=False),
)

# key_requests_per_minute of each API key, shared by every node (store/admission.py). `at`
# in seconds since the epoch: the refill is then plain arithmetic in SQL.
key_rate_buckets = Table(
    "key_rate_buckets",
    metadata,
    Column("key_id", Integer, primary_key=True, autoincrement=False),
    Column("tokens", Float, nullable=False),
    Column("at", Float, nullable=False),
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
    Column("admin", Boolean, nullable=False, default=False),  # may manage keys
    Index("ix_api_keys_tenant", "tenant"),
)

ui_sessions = Table(
    "ui_sessions",
    metadata,
    Column("token_hash", String(64), primary_key=True),  # sha256 of the cookie's token
    Column("key_id", Integer, ForeignKey("api_keys.id"), nullable=False),
    Column("created_at", UtcDateTime, nullable=False),
    Column("expires_at", UtcDateTime, nullable=False),
    Column("ended_at", UtcDateTime, nullable=True),  # signed out
)

server_secrets = Table(
    "server_secrets",
    metadata,
    Column("name", String(32), primary_key=True),
    Column("value", String(128), nullable=False),  # hex; generated at first use
)

widget_calls = Table(  # which widget token placed a call: a token reads only its own calls
    "widget_calls",
    metadata,
    Column("call_id", Integer, ForeignKey("calls.id", ondelete="CASCADE"), primary_key=True),
    Column("token_id", String(32), nullable=False),
    Index("ix_widget_calls_token", "token_id"),
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
