"""Broken or unreachable databases give specific, secret-free errors, quickly."""

from __future__ import annotations

import asyncio
import socket
import sqlite3
import time
from pathlib import Path

import asyncpg.exceptions
import pytest
from sqlalchemy import event

from tests.database.writes import create_order
from traderagent.database.exceptions import DatabaseUnavailableError, NotADatabaseError
from traderagent.database.manager import DatabaseManager


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def test_not_a_database(tmp_path: Path) -> None:
    junk = tmp_path / "notes.db"
    junk.write_text("PRAGMA? no: these are my trading notes.\n" * 200)
    db = DatabaseManager(f"sqlite+aiosqlite:///{junk}")
    try:
        with pytest.raises(NotADatabaseError, match="notes.db") as info:
            await db.initialize()
        assert str(junk) in str(info.value) and info.value.__cause__ is None
        with pytest.raises(NotADatabaseError):
            await db.list_bots()
    finally:
        await db.close()


async def test_sqlite_folder_missing(tmp_path: Path) -> None:
    db = DatabaseManager(f"sqlite+aiosqlite:///{tmp_path / 'no' / 'such' / 'dir' / 'x.db'}")
    try:
        with pytest.raises(DatabaseUnavailableError, match="x.db"):
            await db.initialize()
    finally:
        await db.close()


async def test_postgres_unreachable_is_quick_and_hides_password() -> None:
    port = _closed_port()
    db = DatabaseManager(f"postgresql+asyncpg://trader:Sup3rS3cretPw@127.0.0.1:{port}/trading")  # audit: allow (test fixture)
    started = time.monotonic()
    try:
        with pytest.raises(DatabaseUnavailableError) as info:
            await db.initialize()
    finally:
        await db.close()
    assert time.monotonic() - started < 5
    message = str(info.value)
    assert f"127.0.0.1:{port}" in message and "unreachable" in message
    assert "Sup3rS3cretPw" not in message and "Sup3rS3cretPw" not in repr(db)
    assert info.value.__cause__ is None and info.value.__suppress_context__


async def test_postgres_unknown_database(postgres_url: str) -> None:
    url = postgres_url.rsplit("/", 1)[0] + "/no_such_database_ta"
    db = DatabaseManager(url)
    try:
        with pytest.raises(DatabaseUnavailableError, match="no_such_database_ta"):
            await db.list_bots()
    finally:
        await db.close()


def test_bad_schema_name() -> None:
    with pytest.raises(ValueError, match="schema"):
        DatabaseManager("postgresql+asyncpg://u@h/db", schema='x"; drop table bots; --')


async def test_in_memory_sqlite_serialises_tasks() -> None:
    """:memory: shares one connection; concurrent tasks must still not see each other's transactions."""
    db = DatabaseManager("sqlite+aiosqlite:///:memory:")
    try:
        await db.initialize()
        await db.create_bot("m", "grid", "BTCUSDT", "linear", {}, 1)

        async def writer(k: int) -> None:
            for i in range(10):
                await create_order(db, "m", f"m{k}-{i}", "BTCUSDT", "buy", "limit", 1, 1)
                await db.list_orders("m")

        await asyncio.gather(*(writer(k) for k in range(10)))
        assert len(await db.list_orders("m", limit=1000)) == 100
    finally:
        await db.close()


async def test_a_database_that_takes_no_writes_is_unavailable(db: DatabaseManager, bot: str) -> None:
    """Disk full (SQLite's error, PostgreSQL's SQLSTATE 53100): DatabaseUnavailableError, which the
    desk treats as storage lost; reads still work. Only a deleted SQLite file needs restoring."""
    full = (sqlite3.OperationalError("database or disk is full") if db.backend == "sqlite"
            else asyncpg.exceptions.DiskFullError("could not extend file: No space left on device"))

    def refuse(conn: object, cursor: object, statement: str, *args: object) -> None:
        if statement.lstrip().upper().startswith(("INSERT", "UPDATE")):
            raise full

    event.listen(db._engine.sync_engine, "before_cursor_execute", refuse)
    try:
        with pytest.raises(DatabaseUnavailableError, match="full|takes no writes"):
            await db.save_bot_progress(bot, runtime={"x": 1})
        assert (await db.get_bot(bot)) is not None
    finally:
        event.remove(db._engine.sync_engine, "before_cursor_execute", refuse)
    await db.check_storage()
    assert await db.restore_storage() is None
    await db.save_bot_progress(bot, runtime={"x": 2})
    assert await db.load_bot_runtime(bot) == {"x": 2}
