"""live calls counted from one index: (state, tenant, agent_number) replaces (state)

Admission counts a tenant's and an agent's live calls for every new call. With an index on
`state` alone, SQLite chose the (tenant, id) index instead and read every call the tenant
ever made, so each request cost more as the history grew; this index answers the count
from itself, whatever the history's size.

Revision ID: 0010
Revises: 0009
Create Date: 2026-11-25
"""

from __future__ import annotations

from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_calls_live", "calls", ["state", "tenant", "agent_number"])
    op.drop_index("ix_calls_state", table_name="calls")


def downgrade() -> None:
    op.create_index("ix_calls_state", "calls", ["state"])
    op.drop_index("ix_calls_live", table_name="calls")
