"""each call's timeouts as placed, so a call resumed after a restart keeps them

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-07
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None

_COLUMNS = ("agent_ring_timeout", "destination_ring_timeout", "max_call_seconds")


def upgrade() -> None:
    # Nullable: calls stored before this revision have none (their tenant's then apply).
    with op.batch_alter_table("calls") as batch:
        for name in _COLUMNS:
            batch.add_column(sa.Column(name, sa.Float, nullable=True))


def downgrade() -> None:
    # DROP COLUMN in place (SQLite 3.35+), never a copy: dropping the old table of a copy
    # with foreign keys on cascades to every call's events, deliveries and SIP state.
    with op.batch_alter_table("calls", recreate="never") as batch:
        for name in _COLUMNS:
            batch.drop_column(name)
