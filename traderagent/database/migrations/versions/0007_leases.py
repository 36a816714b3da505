"""Bot leases: one running desk owns each bot (orchestrator/lease.py).

Revision ID: 0007_leases
Revises: 0006_outbox
Create Date: 2026-12-07
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from traderagent.database.migrations.columns import TS

revision = "0007_leases"
down_revision = "0006_outbox"  # chained after the outbox already on main
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "bot_leases",
        sa.Column("bot_name", sa.String(64), nullable=False),
        sa.Column("owner", sa.String(128), nullable=False),
        sa.Column("process_space", sa.String(32), nullable=True),
        sa.Column("acquired_at", TS, nullable=False),
        sa.Column("expires_at", TS, nullable=False),
        sa.PrimaryKeyConstraint("bot_name", name="pk_bot_leases"),
    )
    op.create_index("ix_bot_leases_owner", "bot_leases", ["owner"])


def downgrade() -> None:
    op.drop_index("ix_bot_leases_owner", table_name="bot_leases")
    op.drop_table("bot_leases")
