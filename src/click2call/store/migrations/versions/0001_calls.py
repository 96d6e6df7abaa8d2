"""calls and their event history

Revision ID: 0001
Revises:
Create Date: 2026-11-24
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "calls",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("uniqueid", sa.String(32), unique=True, nullable=True),
        sa.Column("tenant", sa.String(64), nullable=False),
        sa.Column("agent_kind", sa.String(16), nullable=False),
        sa.Column("agent_tech", sa.String(8), nullable=True),
        sa.Column("agent_number", sa.String(32), nullable=False),
        sa.Column("destination", sa.String(32), nullable=False),
        sa.Column("destination_caller_id", sa.String(32), nullable=False),
        sa.Column("agent_caller_id", sa.String(32), nullable=False),
        sa.Column("foreignid", sa.String(128), nullable=True),
        sa.Column("state", sa.String(24), nullable=False),
        sa.Column("result", sa.String(24), nullable=True),
        sa.Column("cause", sa.String(256), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("agent_answered_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("connected_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("ended_at", sa.DateTime(timezone=True), nullable=True),
    )
    op.create_index("ix_calls_foreignid", "calls", ["foreignid"])
    op.create_index("ix_calls_tenant_created", "calls", ["tenant", "created_at"])
    op.create_index("ix_calls_state", "calls", ["state"])
    op.create_table(
        "call_events",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column(
            "call_id",
            sa.Integer,
            sa.ForeignKey("calls.id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("state", sa.String(24), nullable=False),
        sa.Column("result", sa.String(24), nullable=True),
        sa.Column("cause", sa.String(256), nullable=True),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_call_events_call_id", "call_events", ["call_id"])


def downgrade() -> None:
    op.drop_table("call_events")
    op.drop_table("calls")
