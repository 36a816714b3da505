"""PostgreSQL connections: kept open between uses, and one that died while idle replaced before use."""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import AsyncIterator

import asyncpg
import pytest
from sqlalchemy import event

from traderagent.database import engine
from traderagent.database.manager import DatabaseManager

from .conftest import drop_schema


@pytest.fixture
async def pg(postgres_url: str) -> AsyncIterator[DatabaseManager]:
    schema = f"t_{uuid.uuid4().hex[:16]}"
    db = DatabaseManager(postgres_url, schema=schema)
    await db.initialize()
    await db.create_bot("b", "grid", "BTCUSDT", "linear", {}, "100")
    try:
        yield db
    finally:
        await db.close()
        await drop_schema(postgres_url, schema)


async def _terminate_ours(url: str) -> int:
    """The server ends this process's connections (as a restart, or its idle-in-transaction timeout, would)."""
    conn = await asyncpg.connect(url.replace("postgresql+asyncpg://", "postgresql://", 1), timeout=5)
    try:
        rows = await conn.fetch("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = $1",
                                f"traderagent:{os.getpid()}")
    finally:
        await conn.close()
    return len(rows)


@pytest.mark.parametrize("idle_s, survives", [(-1.0, True), (3600.0, False)])
async def test_a_connection_the_server_ended_while_idle_is_replaced(pg, postgres_url, monkeypatch, idle_s, survives):
    monkeypatch.setattr(engine, "PG_PING_IDLE_S", idle_s)  # idle longer than it (-1): pinged; 1 h: not
    assert await _terminate_ours(postgres_url) >= 1
    if survives:
        assert (await pg.get_bot("b")) is not None
    else:  # without the ping the dead connection fails the read: the ping is what saves it
        with pytest.raises(Exception):  # noqa: B017 (the driver's error, wrapped or not)
            await pg.get_bot("b")


async def test_a_burst_of_sessions_opens_no_connection_beyond_the_pool(pg):
    opened: list[object] = []
    event.listen(pg._engine.sync_engine, "connect", lambda *_: opened.append(1))
    for _ in range(2):  # a second burst reuses the connections of the first
        await asyncio.gather(*(pg.get_bot("b") for _ in range(4 * engine.PG_POOL_SIZE)))
    assert len(opened) <= engine.PG_POOL_SIZE  # none closed at check-in and opened again
