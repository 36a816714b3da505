"""Alembic environment.

Normally run programmatically: DatabaseManager.upgrade() hands a live (sync-facing) connection in
`config.attributes["connection"]`. Run from the `alembic` command line, it builds an async engine
from `sqlalchemy.url` (or DATABASE_URL passed as -x url=...).
"""

from __future__ import annotations

import asyncio

from alembic import context
from sqlalchemy import Connection
from sqlalchemy.ext.asyncio import create_async_engine

from traderagent.database.models import Base

config = context.config
target_metadata = Base.metadata


def _run(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        render_as_batch=connection.dialect.name == "sqlite",  # SQLite ALTERs need table copies
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


async def _run_with_url(url: str) -> None:
    engine = create_async_engine(url)
    try:
        async with engine.begin() as conn:
            await conn.run_sync(_run)
    finally:
        await engine.dispose()


def run_migrations_online() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        _run(connection)
        return
    url = context.get_x_argument(as_dictionary=True).get("url") or config.get_main_option("sqlalchemy.url")
    if not url:
        raise SystemExit("no database URL: pass -x url=... or set sqlalchemy.url")
    asyncio.run(_run_with_url(url))


if context.is_offline_mode():
    raise SystemExit("offline (--sql) migrations are not supported; use `traderagent db upgrade`")
run_migrations_online()
