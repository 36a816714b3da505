"""Capital manager state, scaling approvals, bot runtime snapshots; trade tags; order status indexes.

Revision ID: 0002
Revises: 0001
Create Date: 2025-01-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from traderagent.database.migrations.columns import JSONT, TS

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "capital_state",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=False),
        sa.Column("state", JSONT, nullable=False),
        sa.Column("updated_at", TS, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_capital_state"),
    )
    op.create_table(
        "approvals",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("action", sa.String(32), nullable=False),
        sa.Column("phase_from", sa.String(32), nullable=True),
        sa.Column("phase_to", sa.String(32), nullable=True),
        sa.Column("approved_by", sa.String(64), nullable=False),
        sa.Column("decision", JSONT, nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_approvals"),
    )
    op.create_index("ix_approvals_created_at", "approvals", ["created_at"])
    op.create_table(
        "bot_runtime",
        sa.Column("bot_id", sa.Integer(), nullable=False),
        sa.Column("state", JSONT, nullable=False),
        sa.Column("saved_at", TS, nullable=False),
        sa.PrimaryKeyConstraint("bot_id", name="pk_bot_runtime"),
        sa.ForeignKeyConstraint(["bot_id"], ["bots.id"], name="fk_bot_runtime_bot_id_bots", ondelete="CASCADE"),
    )
    with op.batch_alter_table("trades") as batch:
        batch.add_column(sa.Column("tag", sa.String(64), nullable=True))
    # list_non_final_orders / open exposure filter by status (optionally per bot)
    op.create_index("ix_orders_status", "orders", ["status"])
    op.create_index("ix_orders_bot_id_status", "orders", ["bot_id", "status"])


def downgrade() -> None:
    op.drop_index("ix_orders_bot_id_status", table_name="orders")
    op.drop_index("ix_orders_status", table_name="orders")
    with op.batch_alter_table("trades") as batch:
        batch.drop_column("tag")
    op.drop_table("bot_runtime")
    op.drop_index("ix_approvals_created_at", table_name="approvals")
    op.drop_table("approvals")
    op.drop_table("capital_state")
