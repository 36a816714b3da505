"""One stored form of each bot's mark: ``bot_marks`` (results.BotMark: price, net position, average entry,
unrealised PnL, exposure, when priced) replaces ``bot_risk`` (unrealised PnL and exposure only) and the
``mark`` the runtime snapshots carried. Its one writer is the worker running the bot, at the desk's risk
check (orchestrator/risk.py `FleetRails`); the fleet's leader and the console both read it. The rows of
``bot_risk`` are not carried over: every worker writes its bots' marks at its first risk check.

Revision ID: 0015_tidy
Revises: 0011_fleet
Create Date: 2026-12-07
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from traderagent.database.migrations.columns import DEC, TS

revision = "0015_tidy"
down_revision = "0011_fleet"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.drop_table("bot_risk")
    op.create_table(
        "bot_marks",
        sa.Column("bot_name", sa.String(64), nullable=False),
        sa.Column("last_price", DEC, nullable=False),
        sa.Column("position_qty", DEC, nullable=False),
        sa.Column("position_avg", DEC, nullable=True),
        sa.Column("unrealized_pnl", DEC, nullable=False),
        sa.Column("exposure", DEC, nullable=False),
        sa.Column("priced_at", TS, nullable=False),
        sa.PrimaryKeyConstraint("bot_name", name="pk_bot_marks"),
    )


def downgrade() -> None:
    op.drop_table("bot_marks")
    op.create_table(
        "bot_risk",
        sa.Column("bot_name", sa.String(64), nullable=False),
        sa.Column("unrealized_pnl", DEC, nullable=False),
        sa.Column("exposure", DEC, nullable=False),
        sa.Column("updated_at", TS, nullable=False),
        sa.PrimaryKeyConstraint("bot_name", name="pk_bot_risk"),
    )
