"""Initial schema: the spec's six tables.

Revision ID: 0001
Revises:
Create Date: 2025-01-01

Column types come from migrations/columns.py (frozen; never from types.py) so this revision stays
what it was even if the Python types evolve: decimals are TEXT on SQLite (canonical strings, exact)
and NUMERIC on PostgreSQL; times are timestamptz on PostgreSQL, UTC text on SQLite.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from traderagent.database.migrations.columns import BIG_ID, DEC, JSONT, TS

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "credentials",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("name", sa.String(100), nullable=False),
        sa.Column("api_key_encrypted", sa.Text(), nullable=False),
        sa.Column("api_secret_encrypted", sa.Text(), nullable=False),
        sa.Column("testnet", sa.Boolean(), nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("updated_at", TS, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_credentials"),
        sa.UniqueConstraint("name", name="uq_credentials_name"),
    )
    op.create_table(
        "bots",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("name", sa.String(64), nullable=False),
        sa.Column("strategy", sa.String(32), nullable=False),
        sa.Column("symbol", sa.String(32), nullable=False),
        sa.Column("market_type", sa.String(16), nullable=False),
        sa.Column("config", JSONT, nullable=False),
        sa.Column("state", sa.String(32), nullable=False),
        sa.Column("allocated_capital", DEC, nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("updated_at", TS, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_bots"),
        sa.UniqueConstraint("name", name="uq_bots_name"),
    )
    op.create_index("ix_bots_state", "bots", ["state"])
    op.create_table(
        "orders",
        sa.Column("id", BIG_ID, primary_key=True),
        sa.Column("bot_id", sa.Integer(), nullable=False),
        sa.Column("client_order_id", sa.String(64), nullable=False),
        sa.Column("exchange_order_id", sa.String(64), nullable=True),
        sa.Column("symbol", sa.String(32), nullable=False),
        sa.Column("side", sa.String(8), nullable=False),
        sa.Column("order_type", sa.String(16), nullable=False),
        sa.Column("qty", DEC, nullable=False),
        sa.Column("price", DEC, nullable=True),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("filled_qty", DEC, nullable=False),
        sa.Column("avg_price", DEC, nullable=True),
        sa.Column("fee", DEC, nullable=False),
        sa.Column("reduce_only", sa.Boolean(), nullable=False),
        sa.Column("tag", sa.String(64), nullable=True),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("updated_at", TS, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_orders"),
        sa.ForeignKeyConstraint(["bot_id"], ["bots.id"], name="fk_orders_bot_id_bots", ondelete="CASCADE"),
        sa.UniqueConstraint("client_order_id", name="uq_orders_client_order_id"),
    )
    op.create_index("ix_orders_exchange_order_id", "orders", ["exchange_order_id"])
    op.create_table(
        "trades",
        sa.Column("id", BIG_ID, primary_key=True),
        sa.Column("bot_id", sa.Integer(), nullable=False),
        sa.Column("symbol", sa.String(32), nullable=False),
        sa.Column("side", sa.String(8), nullable=False),
        sa.Column("qty", DEC, nullable=False),
        sa.Column("entry_price", DEC, nullable=False),
        sa.Column("exit_price", DEC, nullable=True),
        sa.Column("pnl", DEC, nullable=True),
        sa.Column("fees", DEC, nullable=False),
        sa.Column("opened_at", TS, nullable=False),
        sa.Column("closed_at", TS, nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_trades"),
        sa.ForeignKeyConstraint(["bot_id"], ["bots.id"], name="fk_trades_bot_id_bots", ondelete="CASCADE"),
    )
    op.create_index("ix_trades_closed_at", "trades", ["closed_at"])
    op.create_index("ix_trades_bot_id_closed_at", "trades", ["bot_id", "closed_at"])
    op.create_table(
        "grid_levels",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("bot_id", sa.Integer(), nullable=False),
        sa.Column("level_index", sa.Integer(), nullable=False),
        sa.Column("price", DEC, nullable=False),
        sa.Column("side", sa.String(8), nullable=False),
        sa.Column("qty", DEC, nullable=True),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("client_order_id", sa.String(64), nullable=True),
        sa.Column("updated_at", TS, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_grid_levels"),
        sa.ForeignKeyConstraint(["bot_id"], ["bots.id"], name="fk_grid_levels_bot_id_bots", ondelete="CASCADE"),
        sa.UniqueConstraint("bot_id", "level_index", name="uq_grid_levels_bot_id_level_index"),
    )
    op.create_table(
        "bot_logs",
        sa.Column("id", BIG_ID, primary_key=True),
        sa.Column("bot_name", sa.String(64), nullable=True),
        sa.Column("level", sa.String(10), nullable=False),
        sa.Column("message", sa.Text(), nullable=False),
        sa.Column("context", JSONT, nullable=True),
        sa.Column("created_at", TS, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_bot_logs"),
    )
    op.create_index("ix_bot_logs_bot_name_id", "bot_logs", ["bot_name", "id"])


def downgrade() -> None:
    for table in ("bot_logs", "grid_levels", "trades", "orders", "bots", "credentials"):
        op.drop_table(table)
