"""The inline buttons' one-time tokens (handlers/tokens.py), so a restart keeps an offer's buttons.

Revision ID: 0010_tokens
Revises: 0009_commands
Create Date: 2026-12-07
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from traderagent.database.migrations.columns import TS

revision = "0010_tokens"
down_revision = "0009_commands"  # chained after the desk commands on main; the lead re-chains at merge
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "button_tokens",
        sa.Column("token", sa.String(16), nullable=False),
        sa.Column("action", sa.String(32), nullable=False),
        sa.Column("arg", sa.Text(), nullable=False),
        sa.Column("chat_id", sa.BigInteger(), nullable=False),
        sa.Column("token_group", sa.String(16), nullable=False),
        sa.Column("role", sa.SmallInteger(), nullable=False),
        sa.Column("expires_at", TS, nullable=False),
        sa.PrimaryKeyConstraint("token", name="pk_button_tokens"),
    )


def downgrade() -> None:
    op.drop_table("button_tokens")
