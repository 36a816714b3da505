"""Fleet tests run on PostgreSQL (LISTEN/NOTIFY is the transport): each test gets its own schema, dropped
afterwards. Skipped, saying why, only when the server cannot be reached."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Callable

import asyncpg
import pytest

from tests.conftest import skip_server_absent
from tests.database.conftest import _find_postgres, _plain_dsn
from traderagent.database.manager import DatabaseManager

MakeDb = Callable[[], DatabaseManager]


@pytest.fixture(scope="session")
def pg_url() -> str:
    url, reason = _find_postgres()
    if url is None:
        skip_server_absent(f"PostgreSQL not reachable ({reason}); set TEST_POSTGRES_URL")
    return url


@pytest.fixture
async def make_db(pg_url: str) -> AsyncIterator[MakeDb]:
    """Managers on one fresh schema, as separate processes would open them (each its own pool)."""
    schema = f"f_{uuid.uuid4().hex[:16]}"
    made: list[DatabaseManager] = []

    def factory() -> DatabaseManager:
        manager = DatabaseManager(pg_url, schema=schema)
        made.append(manager)
        return manager

    yield factory
    for manager in made:
        await manager.close()
    conn = await asyncpg.connect(_plain_dsn(pg_url), timeout=5)
    try:
        await conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
    finally:
        await conn.close()


@pytest.fixture
async def db(make_db: MakeDb) -> DatabaseManager:
    manager = make_db()
    await manager.initialize()
    return manager
