"""event sequence numbers and payloads; webhook endpoints, outbox and attempts

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-25
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("calls") as batch:
        batch.add_column(sa.Column("last_sequence", sa.Integer, nullable=False, server_default="0"))
    with op.batch_alter_table("call_events") as batch:
        batch.add_column(sa.Column("sequence", sa.Integer, nullable=True))
        batch.add_column(sa.Column("type", sa.String(32), nullable=True))
        batch.add_column(sa.Column("payload", sa.Text, nullable=True))
    # Rows written before this revision get their numbers from their order of arrival.
    op.execute(
        "UPDATE call_events SET sequence = (SELECT COUNT(*) FROM call_events AS earlier "
        "WHERE earlier.call_id = call_events.call_id AND earlier.id <= call_events.id), "
        "type = CASE WHEN result = 'rejected' THEN 'call.rejected' ELSE 'call.' || state END"
    )
    op.execute(
        "UPDATE calls SET last_sequence = "
        "(SELECT COUNT(*) FROM call_events WHERE call_events.call_id = calls.id)"
    )
    with op.batch_alter_table("call_events") as batch:
        batch.alter_column("sequence", existing_type=sa.Integer, nullable=False)
        batch.alter_column("type", existing_type=sa.String(32), nullable=False)
        batch.create_unique_constraint("uq_call_events_call_sequence", ["call_id", "sequence"])

    op.create_table(
        "webhook_endpoints",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("tenant", sa.String(64), nullable=False),
        sa.Column("url", sa.String(2048), nullable=False),
        sa.Column(
            "call_id", sa.Integer, sa.ForeignKey("calls.id", ondelete="CASCADE"), nullable=True
        ),
        sa.Column("events", sa.Text, nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("disabled_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("disabled_reason", sa.String(256), nullable=True),
    )
    op.create_index("ix_webhook_endpoints_tenant", "webhook_endpoints", ["tenant"])
    op.create_index("ix_webhook_endpoints_call", "webhook_endpoints", ["call_id"])
    op.create_table(
        "webhook_outbox",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("endpoint_id", sa.Integer, sa.ForeignKey("webhook_endpoints.id"), nullable=False),
        sa.Column(
            "call_id", sa.Integer, sa.ForeignKey("calls.id", ondelete="CASCADE"), nullable=False
        ),
        sa.Column(
            "event_id",
            sa.Integer,
            sa.ForeignKey("call_events.id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
        sa.Column("next_attempt_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_attempt_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_status", sa.Integer, nullable=True),
        sa.Column("last_error", sa.String(256), nullable=True),
        sa.Column("done_at", sa.DateTime(timezone=True), nullable=True),
    )
    op.create_index("ix_webhook_outbox_due", "webhook_outbox", ["state", "next_attempt_at"])
    op.create_index(
        "ix_webhook_outbox_order", "webhook_outbox", ["endpoint_id", "call_id", "state"]
    )
    op.create_index("ix_webhook_outbox_call", "webhook_outbox", ["call_id"])
    op.create_table(
        "webhook_attempts",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column(
            "outbox_id",
            sa.Integer,
            sa.ForeignKey("webhook_outbox.id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("status", sa.Integer, nullable=True),
        sa.Column("error", sa.String(256), nullable=True),
        sa.Column("response_excerpt", sa.String(256), nullable=True),
        sa.Column("seconds", sa.Float, nullable=False),
    )
    op.create_index("ix_webhook_attempts_outbox", "webhook_attempts", ["outbox_id"])


def downgrade() -> None:
    op.drop_table("webhook_attempts")
    op.drop_table("webhook_outbox")
    op.drop_table("webhook_endpoints")
    with op.batch_alter_table("call_events") as batch:
        batch.drop_constraint("uq_call_events_call_sequence", type_="unique")
        batch.drop_column("payload")
        batch.drop_column("type")
        batch.drop_column("sequence")
    with op.batch_alter_table("calls") as batch:
        batch.drop_column("last_sequence")
