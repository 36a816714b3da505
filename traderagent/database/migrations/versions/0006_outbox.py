"""The Telegram outbox (alerts not yet delivered) and the operator's alert verbosity.

Revision ID: 0006_outbox
Revises: 0005_audit
Create Date: 2026-12-07
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from traderagent.database.migrations.columns import BIG_ID, TS

revision = "0006_outbox"
down_revision = "0005_audit"  # chained after the audit trail already on main
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "outbox",
        sa.Column("id", BIG_ID, primary_key=True),
        sa.Column("chat_id", sa.BigInteger(), nullable=False),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("bot_name", sa.String(64), nullable=False),
        sa.Column("text", sa.Text(), nullable=False),
        sa.Column("line", sa.Text(), nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_outbox"),
    )
    op.create_index("ix_outbox_chat_id_id", "outbox", ["chat_id", "id"])
    op.create_table(
        "alert_verbosity",
        sa.Column("scope", sa.String(100), nullable=False),
        sa.Column("level", sa.String(16), nullable=False),
        sa.Column("updated_at", TS, nullable=False),
        sa.PrimaryKeyConstraint("scope", name="pk_alert_verbosity"),
    )


def downgrade() -> None:
    op.drop_table("alert_verbosity")
    op.drop_index("ix_outbox_chat_id_id", table_name="outbox")
    op.drop_table("outbox")
