"""Migrations: fresh and existing databases, a real 0001 -> head upgrade with data, models == schema."""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import insert, inspect

from traderagent.commands.db import main_db
from traderagent.database.exceptions import DatabaseError
from traderagent.database.manager import DatabaseManager
from traderagent.database.models import Base, BotModel, Order, Trade

HEAD = "0015_tidy"  # the newest revision (one stored form of the bots' marks, after a fleet's desk-wide risk)
OPENED = dt.datetime(2024, 5, 1, 8, 0, tzinfo=dt.UTC)


async def test_upgrade_from_0001_keeps_data(make_db: Callable[..., DatabaseManager]) -> None:
    db = make_db()
    await db.upgrade("0001")
    assert await db.current_revision() == "0001"
    async with db._engine.begin() as conn:
        tables = set(await conn.run_sync(lambda c: inspect(c).get_table_names()))
        assert {"bots", "orders", "trades", "grid_levels", "bot_logs", "credentials"} <= tables
        assert "capital_state" not in tables and "approvals" not in tables
        bot_id = (await conn.execute(insert(BotModel.__table__).values(
            name="old-bot", strategy="grid", symbol="BTCUSDT", market_type="linear", config={"n": 5},
            state="PAUSED", allocated_capital=Decimal("123456789.123456789")).returning(BotModel.id))).scalar_one()
        await conn.execute(insert(Order.__table__).values(
            bot_id=bot_id, client_order_id="old-1", symbol="BTCUSDT", side="buy", order_type="limit",
            qty=Decimal("0.00000001"), price=Decimal("50000.5"), status="OPEN", filled_qty=Decimal("0"),
            fee=Decimal("0"), reduce_only=False))
        await conn.execute(insert(Trade.__table__).values(
            bot_id=bot_id, symbol="BTCUSDT", side="long", qty=Decimal("1"), entry_price=Decimal("100"),
            exit_price=Decimal("110"), pnl=Decimal("9.99"), fees=Decimal("0.01"), opened_at=OPENED,
            closed_at=OPENED + dt.timedelta(hours=1)))

    await db.initialize()
    assert await db.current_revision() == DatabaseManager.head_revision() == HEAD
    bot = await db.get_bot("old-bot")
    assert bot is not None and bot.state == "PAUSED" and bot.config == {"n": 5}
    assert bot.allocated_capital == Decimal("123456789.123456789")
    order = await db.get_order("old-1")
    assert order is not None and order.qty == Decimal("0.00000001") and order.bot_name == "old-bot"
    [trade] = await db.list_trades("old-bot")
    assert trade.tag is None and trade.pnl == Decimal("9.99") and trade.opened_at == OPENED
    assert await db.realized_pnl("old-bot") == Decimal("9.99")
    # what 0002 added works on the upgraded database
    await db.save_capital_state({"phase": "phase_1_5pct"})
    await db.save_bot_progress("old-bot", runtime={"grid": [1]})
    assert await db.load_bot_runtime("old-bot") == {"grid": [1]}
    # and what 0006_outbox added
    [alert_id] = await db.add_outbox([{"chat_id": -100123, "kind": "ERROR", "bot_name": "old-bot", "text": "t",
                                       "line": "l", "created_at": OPENED}])
    [row] = await db.pending_outbox([-100123])
    assert (row.id, row.text, row.created_at) == (alert_id, "t", OPENED)
    await db.delete_outbox([alert_id])
    assert await db.pending_outbox([-100123]) == []
    await db.save_verbosity("strategy:grid", "errors")
    await db.save_verbosity("strategy:grid", "all")
    assert await db.load_verbosity() == {"strategy:grid": "all"}


async def test_initialize_is_idempotent(db: DatabaseManager, make_db: Callable[..., DatabaseManager]) -> None:
    await db.create_bot("keep", "grid", "BTCUSDT", "linear", {}, 1)
    again = make_db()
    await again.initialize()
    await again.initialize()
    assert [b.name for b in await again.list_bots()] == ["keep"]


async def test_desks_starting_together_on_a_fresh_database_both_migrate(
        make_db: Callable[..., DatabaseManager]) -> None:
    """A fleet's workers start at once on a new database: each initializes it, none fails on the other's tables."""
    desks = [make_db() for _ in range(3)]
    await asyncio.gather(*(desk.initialize() for desk in desks))
    assert [await desk.current_revision() for desk in desks] == [HEAD] * 3


async def test_models_match_head_schema(db: DatabaseManager) -> None:
    async with db._engine.connect() as conn:
        diff = await conn.run_sync(lambda c: compare_metadata(MigrationContext.configure(c), Base.metadata))
    assert diff == []


def test_cli_db_upgrade_and_current(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'cli.db'}"
    assert main_db(argparse.Namespace(action="current", url=url)) == 0
    assert "revision <none>" in capsys.readouterr().out
    assert main_db(argparse.Namespace(action="upgrade", url=url)) == 0
    assert f"-> {HEAD} (head)" in capsys.readouterr().out
    assert main_db(argparse.Namespace(action="upgrade", url=url)) == 0
    assert f"already at revision {HEAD}" in capsys.readouterr().out
    assert main_db(argparse.Namespace(action="current", url=url)) == 0
    assert f"revision {HEAD} (head)" in capsys.readouterr().out


def test_cli_db_reports_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    junk = tmp_path / "junk.db"
    junk.write_bytes(b"this is a text file, not SQLite" * 100)
    assert main_db(argparse.Namespace(action="upgrade", url=f"sqlite:///{junk}")) == 1
    err = capsys.readouterr().err
    assert "junk.db is not an SQLite database" in err and "Traceback" not in err
    assert main_db(argparse.Namespace(action="current", url="mysql://u@h/db")) == 1
    assert "unsupported database URL" in capsys.readouterr().err


def test_unsupported_url() -> None:
    with pytest.raises(DatabaseError, match="unsupported"):
        DatabaseManager("mysql+aiomysql://user@host/db")
