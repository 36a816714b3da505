"""Bots: CRUD, states, runtime snapshots, and the errors for bad names."""

from __future__ import annotations

from decimal import Decimal

import pytest

from tests.database.writes import create_order, open_trade
from traderagent.database.exceptions import BotNotFoundError, DuplicateBotError
from traderagent.database.manager import DatabaseManager


async def test_create_get_list_update_delete(db: DatabaseManager) -> None:
    created = await db.create_bot("dca-eth", "dca", "ETHUSDT", "spot", {"so": 5, "step": "1.5"}, Decimal("250.25"))
    assert created.id is not None and created.state == "STOPPED"
    await db.create_bot("trend-sol", "trend_follower", "SOLUSDT", "linear", {}, 100)
    got = await db.get_bot("dca-eth")
    assert got is not None
    assert (got.strategy, got.symbol, got.market_type, got.config) == ("dca", "ETHUSDT", "spot", {"so": 5, "step": "1.5"})
    assert got.allocated_capital == Decimal("250.25")
    assert [b.name for b in await db.list_bots()] == ["dca-eth", "trend-sol"]

    updated = await db.update_bot("dca-eth", allocated_capital=Decimal("500"), config={"so": 6})
    assert updated.allocated_capital == Decimal("500") and updated.config == {"so": 6}
    assert (await db.set_bot_state("dca-eth", "RUNNING")).state == "RUNNING"
    again = await db.get_bot("dca-eth")
    assert again is not None and again.state == "RUNNING" and again.config == {"so": 6}
    assert again.updated_at >= again.created_at


async def test_config_with_decimals_is_stored_as_exact_strings(db: DatabaseManager) -> None:
    await db.create_bot("g", "grid", "BTCUSDT", "linear", {"lower": Decimal("0.00000001"), "n": 3}, 1)
    got = await db.get_bot("g")
    assert got is not None and got.config == {"lower": "0.00000001", "n": 3}


async def test_duplicate_bot_name(db: DatabaseManager, bot: str) -> None:
    with pytest.raises(DuplicateBotError, match="grid-btc"):
        await db.create_bot(bot, "dca", "ETHUSDT", "spot", {}, 1)
    await db.create_bot("other", "dca", "ETHUSDT", "spot", {}, 1)
    with pytest.raises(DuplicateBotError):
        await db.update_bot("other", name=bot)
    assert len(await db.list_bots()) == 2  # the failed writes left nothing behind


async def test_unknown_bot(db: DatabaseManager) -> None:
    assert await db.get_bot("ghost") is None
    for call in (db.update_bot("ghost", state="RUNNING"), db.set_bot_state("ghost", "RUNNING"),
                 db.save_bot_progress("ghost", runtime={}), db.load_bot_runtime("ghost"),
                 create_order(db, "ghost", "c1", "BTCUSDT", "buy", "limit", 1, 1),
                 open_trade(db, "ghost", "BTCUSDT", "long", 1, 1),
                 db.save_bot_progress("ghost", grid=[])):
        with pytest.raises(BotNotFoundError, match="ghost"):
            await call


async def test_update_bot_rejects_unknown_field(db: DatabaseManager, bot: str) -> None:
    with pytest.raises(TypeError, match="colour"):
        await db.update_bot(bot, colour="red")


async def test_runtime_snapshot(db: DatabaseManager, bot: str) -> None:
    assert await db.load_bot_runtime(bot) is None
    await db.save_bot_progress(bot, runtime={"cycle": 1, "avg": Decimal("100.5"), "open": [1, 2]})
    await db.save_bot_progress(bot, runtime={"cycle": 2, "avg": Decimal("99.25"), "open": []})
    assert await db.load_bot_runtime(bot) == {"cycle": 2, "avg": "99.25", "open": []}
