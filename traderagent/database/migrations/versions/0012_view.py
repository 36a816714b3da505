"""The reports a fleet's console sends once per period (reports.py `FleetWatch`): the last period each
went out for, so a restarted console neither repeats nor skips one.

Revision ID: 0012_view
Revises: 0010_tokens
Create Date: 2026-12-07
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from traderagent.database.migrations.columns import TS

revision = "0012_view"
down_revision = "0010_tokens"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "desk_reports",
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("period", sa.String(32), nullable=False),
        sa.Column("sent_at", TS, nullable=False),
        sa.PrimaryKeyConstraint("kind", name="pk_desk_reports"),
    )


def downgrade() -> None:
    op.drop_table("desk_reports")
