"""Fleet tests run on PostgreSQL (LISTEN/NOTIFY is the transport): each test gets its own schema, dropped
afterwards. Skipped, saying why, only when the server cannot be reached."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Callable

import pytest

from tests.database.conftest import drop_schema, postgres_url  # noqa: F401 - the fixture
from traderagent.database.manager import DatabaseManager

MakeDb = Callable[[], DatabaseManager]


@pytest.fixture
async def make_db(request: pytest.FixtureRequest) -> AsyncIterator[MakeDb]:
    """Managers on one fresh schema, as separate processes would open them (each its own pool)."""
    url = request.getfixturevalue("postgres_url")
    schema = f"f_{uuid.uuid4().hex[:16]}"
    made: list[DatabaseManager] = []

    def factory() -> DatabaseManager:
        manager = DatabaseManager(url, schema=schema)
        made.append(manager)
        return manager

    yield factory
    for manager in made:
        await manager.close()
    await drop_schema(url, schema)


@pytest.fixture
async def db(make_db: MakeDb) -> DatabaseManager:
    manager = make_db()
    await manager.initialize()
    return manager
