"""drop ix_call_events_call_id: the (call_id, sequence) unique index serves every lookup by
call, and each of a call's eight event rows paid for both

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-07
"""

from __future__ import annotations

from alembic import op

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.drop_index("ix_call_events_call_id", table_name="call_events")


def downgrade() -> None:
    op.create_index("ix_call_events_call_id", "call_events", ["call_id"])
