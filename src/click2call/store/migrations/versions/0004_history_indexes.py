"""indexes for call history: pages by tenant and id, filters by agent and destination

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-25
"""

from __future__ import annotations

from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

INDEXES = {
    "ix_calls_tenant_id": ["tenant", "id"],
    "ix_calls_tenant_agent": ["tenant", "agent_number"],
    "ix_calls_tenant_destination": ["tenant", "destination"],
}


def upgrade() -> None:
    for name, columns in INDEXES.items():
        op.create_index(name, "calls", columns)


def downgrade() -> None:
    for name in INDEXES:
        op.drop_index(name, "calls")
