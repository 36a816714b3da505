"""Lease fencing tokens: a bot's writes commit only under the lease they were made under
(orchestrator/lease.py, Fencing).

Revision ID: 0008_fence
Revises: 0007_leases
Create Date: 2026-12-07
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008_fence"
down_revision = "0007_leases"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # a lease taken before this revision has the empty token: its desk (an older one) fences nothing
    with op.batch_alter_table("bot_leases") as batch:
        batch.add_column(sa.Column("token", sa.String(32), nullable=False, server_default=""))


def downgrade() -> None:
    with op.batch_alter_table("bot_leases") as batch:
        batch.drop_column("token")
