"""A fleet's desk-wide risk (orchestrator/risk.py `FleetRails`): the figures each worker writes for its
bots, and the desk rails the leader trips for every worker.

Revision ID: 0011_fleet
Revises: 0012_view
Create Date: 2026-12-07
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from traderagent.database.migrations.columns import DEC, TS

revision = "0011_fleet"
down_revision = "0012_view"  # after the console's report periods on main; the lead re-chains at merge
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "bot_risk",
        sa.Column("bot_name", sa.String(64), nullable=False),
        sa.Column("unrealized_pnl", DEC, nullable=False),
        sa.Column("exposure", DEC, nullable=False),
        sa.Column("updated_at", TS, nullable=False),
        sa.PrimaryKeyConstraint("bot_name", name="pk_bot_risk"),
    )
    op.create_table(
        "desk_rails",
        sa.Column("rail", sa.String(32), nullable=False),
        sa.Column("day", sa.Date(), nullable=True),
        sa.Column("updated_at", TS, nullable=False),
        sa.PrimaryKeyConstraint("rail", name="pk_desk_rails"),
    )


def downgrade() -> None:
    op.drop_table("desk_rails")
    op.drop_table("bot_risk")
