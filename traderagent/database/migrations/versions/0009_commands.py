"""Desk commands: what the console asks of the desk workers (traderagent/fleet/bus.py); outbox.urgent.

Revision ID: 0009_commands
Revises: 0008_fence
Create Date: 2026-12-07
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from traderagent.database.migrations.columns import BIG_ID, JSONT, TS

revision = "0009_commands"
down_revision = "0008_fence"  # re-chained after the fencing tokens (0008_fence)
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "desk_commands",
        sa.Column("id", BIG_ID, nullable=False),
        sa.Column("target", sa.String(64), nullable=False),
        sa.Column("operation", sa.String(40), nullable=False),
        sa.Column("arguments", JSONT, nullable=False),
        sa.Column("by", sa.String(80), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("result", JSONT, nullable=True),
        sa.Column("claimed_by", sa.String(128), nullable=True),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("deadline", TS, nullable=False),
        sa.Column("claimed_at", TS, nullable=True),
        sa.Column("finished_at", TS, nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_desk_commands"),
    )
    op.create_index("ix_desk_commands_status", "desk_commands", ["status"])
    # an alert heard whatever the chat muted: the console filters the rows its workers store again
    op.add_column("outbox", sa.Column("urgent", sa.Boolean(), nullable=False, server_default=sa.false()))


def downgrade() -> None:
    op.drop_column("outbox", "urgent")
    op.drop_index("ix_desk_commands_status", table_name="desk_commands")
    op.drop_table("desk_commands")
