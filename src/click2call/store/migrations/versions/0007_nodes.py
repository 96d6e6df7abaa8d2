"""several nodes on one database: each call's owner node; leases on outbox deliveries;
hang-ups asked of the owner node; cluster-wide call rate buckets

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-25
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # NULL: stored before nodes had names; whichever node starts first recovers those.
    with op.batch_alter_table("calls") as batch:
        batch.add_column(sa.Column("node", sa.String(128), nullable=True))
    op.create_index("ix_calls_node_state", "calls", ["node", "state"])
    with op.batch_alter_table("webhook_outbox") as batch:
        batch.add_column(sa.Column("leased_by", sa.String(128), nullable=True))
        batch.add_column(sa.Column("lease_until", sa.DateTime(timezone=True), nullable=True))
    op.create_table(
        "hangup_requests",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column(
            "call_id", sa.Integer, sa.ForeignKey("calls.id", ondelete="CASCADE"), nullable=False
        ),
        sa.Column("node", sa.String(128), nullable=False),
        sa.Column("asked_by", sa.String(128), nullable=True),
        sa.Column("asked_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("taken_at", sa.DateTime(timezone=True), nullable=True),
    )
    op.create_index("ix_hangup_requests_node_taken", "hangup_requests", ["node", "taken_at"])
    op.create_table(
        "call_rate_buckets",
        sa.Column("tenant", sa.String(64), primary_key=True),
        sa.Column("tokens", sa.Float, nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("call_rate_buckets")
    op.drop_table("hangup_requests")
    # ALTER TABLE … DROP COLUMN, never a copy of the table: SQLite drops the old table of
    # a copy with foreign keys on, and its rows' ON DELETE CASCADE empties every child
    # table (events, deliveries, attempts, SIP states).
    with op.batch_alter_table("webhook_outbox", recreate="never") as batch:
        batch.drop_column("lease_until")
        batch.drop_column("leased_by")
    op.drop_index("ix_calls_node_state", table_name="calls")
    with op.batch_alter_table("calls", recreate="never") as batch:
        batch.drop_column("node")
