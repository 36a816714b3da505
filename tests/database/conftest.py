"""Every database test runs twice: on SQLite (a temp file) and on PostgreSQL.

PostgreSQL comes from TEST_POSTGRES_URL (default postgresql+asyncpg://postgres@127.0.0.1:5432/test).
Each test gets its own schema (search_path), dropped afterwards, so runs never collide.
The PostgreSQL half is skipped, with the reason, only when the server cannot be reached.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import os
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

import asyncpg
import pytest

from tests.conftest import skip_server_absent
from traderagent.database.crypto import generate_key
from traderagent.database.manager import DatabaseManager

DEFAULT_PG = "postgresql+asyncpg://postgres@127.0.0.1:5432/test"
MASTER_KEY = generate_key()


def _plain_dsn(url: str) -> str:
    return url.replace("postgresql+asyncpg://", "postgresql://", 1)


async def _probe(url: str) -> str | None:
    try:
        conn = await asyncpg.connect(_plain_dsn(url), timeout=3)
    except Exception as exc:  # any failure means: skip, saying why
        return f"{type(exc).__name__}: {exc}"
    await conn.close()
    return None


def _find_postgres() -> tuple[str | None, str]:
    explicit = os.environ.get("TEST_POSTGRES_URL")
    candidates = [explicit] if explicit else [DEFAULT_PG, DEFAULT_PG.replace("postgres@", "root@", 1)]
    reasons = []
    for url in candidates:
        # in a thread: this may be first requested from inside a running event loop
        with concurrent.futures.ThreadPoolExecutor(1) as pool:
            error = pool.submit(asyncio.run, _probe(url)).result()
        if error is None:
            return url, ""
        reasons.append(f"{url.split('@')[-1]}: {error}")
    return None, "; ".join(reasons)


@pytest.fixture(scope="session")
def postgres_url() -> str:
    url, reason = _find_postgres()
    if url is None:
        skip_server_absent(f"PostgreSQL not reachable ({reason}); set TEST_POSTGRES_URL")
    return url


@dataclass
class Target:
    backend: str
    url: str
    schema: str | None = None

    def manager(self, **kwargs: Any) -> DatabaseManager:
        return DatabaseManager(self.url, schema=self.schema, **kwargs)


@pytest.fixture(params=["sqlite", "postgresql"])
async def target(request: pytest.FixtureRequest, tmp_path: Any) -> AsyncIterator[Target]:
    if request.param == "sqlite":
        yield Target("sqlite", f"sqlite+aiosqlite:///{tmp_path / 'test.db'}")
        return
    url = request.getfixturevalue("postgres_url")
    schema = f"t_{uuid.uuid4().hex[:16]}"
    yield Target("postgresql", url, schema)
    await drop_schema(url, schema)


async def drop_schema(url: str, schema: str) -> None:
    conn = await asyncpg.connect(_plain_dsn(url), timeout=5)
    try:
        await conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
    finally:
        await conn.close()


@pytest.fixture
async def make_db(target: Target) -> AsyncIterator[Callable[..., DatabaseManager]]:
    """Factory for extra managers on the same database (closed at the end)."""
    made: list[DatabaseManager] = []

    def factory(**kwargs: Any) -> DatabaseManager:
        kwargs.setdefault("master_key", MASTER_KEY)
        manager = target.manager(**kwargs)
        made.append(manager)
        return manager

    yield factory
    for manager in made:
        await manager.close()


@pytest.fixture
async def db(make_db: Callable[..., DatabaseManager]) -> DatabaseManager:
    manager = make_db()
    await manager.initialize()
    return manager


@pytest.fixture
async def bot(db: DatabaseManager) -> str:
    await db.create_bot("grid-btc", "grid", "BTCUSDT", "linear", {"levels": 10}, "1000")
    return "grid-btc"
