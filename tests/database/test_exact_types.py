"""Decimals and timestamps come back exactly as stored, on both backends."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest

from tests.database.writes import create_order, open_trade
from traderagent.database.manager import DatabaseManager
from traderagent.numbers import NumberError

EDGE = [Decimal("0.00000001"), Decimal("123456789.123456789"), Decimal("100.50"), Decimal("1E-18"),
        Decimal("98765432109876543210.123456789012345678")]


async def test_decimal_round_trip_exact(db: DatabaseManager, bot: str) -> None:
    for i, value in enumerate(EDGE):
        await create_order(db, bot, f"c{i}", "BTCUSDT", "buy", "limit", value, value)
        order = await db.get_order(f"c{i}")
        assert order is not None
        assert order.qty == value and order.price == value
        assert isinstance(order.qty, Decimal)
    trade = await db.record_trade(bot, "BTCUSDT", "long", EDGE[1], EDGE[0], EDGE[1], Decimal("-0.00000001"))
    [again] = await db.list_trades(bot)
    assert (again.qty, again.entry_price, again.exit_price, again.pnl) == (EDGE[1], EDGE[0], EDGE[1],
                                                                          Decimal("-0.00000001"))
    assert again.id == trade.id
    fetched = await db.get_bot(bot)
    assert fetched is not None and fetched.allocated_capital == Decimal("1000")


async def test_sql_sum_is_exact_where_float_is_not(db: DatabaseManager, bot: str) -> None:
    # 0.1 + 0.2 in binary floating point is 0.30000000000000004; ten thousand satoshis must be exactly 0.0001
    await db.record_trade(bot, "BTCUSDT", "long", 1, 1, 1, Decimal("0.1"))
    await db.record_trade(bot, "BTCUSDT", "long", 1, 1, 1, Decimal("0.2"))
    assert await db.realized_pnl(bot) == Decimal("0.3")
    await db.save_bot_progress(bot, new_trades=[{"symbol": "BTCUSDT", "side": "long", "qty": 1, "entry_price": 1,
                                  "exit_price": 1, "pnl": Decimal("0.00000001")} for _ in range(10_000)])
    assert await db.realized_pnl(bot) == Decimal("0.3001")
    await db.record_trade(bot, "BTCUSDT", "long", 1, 1, 1, Decimal("123456789.123456789"))
    await db.record_trade(bot, "BTCUSDT", "long", 1, 1, 1, Decimal("123456789.123456789"))
    assert await db.realized_pnl(bot) == Decimal("246913578.246913578") + Decimal("0.3001")


async def test_money_follows_the_one_decimal_rule(db: DatabaseManager, bot: str) -> None:
    order = await create_order(db, bot, "f1", "BTCUSDT", "buy", "limit", 0.1, Decimal("1"))  # type: ignore[arg-type]
    assert order.qty == Decimal("0.1")  # a float is stored as its shortest repr, not 0.1000000000000000055...
    with pytest.raises(NumberError, match="qty must be a number, not a boolean"):
        await create_order(db, bot, "f3", "BTCUSDT", "buy", "limit", True, Decimal("1"))  # type: ignore[arg-type]
    with pytest.raises(NumberError, match="finite"):
        await create_order(db, bot, "f2", "BTCUSDT", "buy", "limit", Decimal("NaN"), Decimal("1"))


async def test_timestamps_are_aware_utc(db: DatabaseManager, bot: str) -> None:
    order = await create_order(db, bot, "t1", "BTCUSDT", "buy", "market", "1")
    again = await db.get_order("t1")
    assert again is not None
    assert again.created_at.tzinfo is not None and again.created_at.utcoffset() == dt.timedelta(0)
    assert again.created_at == order.created_at
    plus2 = dt.timezone(dt.timedelta(hours=2))
    opened = dt.datetime(2024, 3, 1, 12, 30, 15, 123456, tzinfo=plus2)
    naive = dt.datetime(2024, 3, 1, 11, 0)
    t1 = await open_trade(db, bot, "BTCUSDT", "long", 1, 100, opened_at=opened)
    t2 = await open_trade(db, bot, "BTCUSDT", "long", 1, 100, opened_at=naive)
    by_id = {t.id: t for t in await db.list_open_trades(bot)}
    assert by_id[t1.id].opened_at == opened  # same instant
    assert by_id[t1.id].opened_at.hour == 10 and by_id[t1.id].opened_at.utcoffset() == dt.timedelta(0)
    assert by_id[t2.id].opened_at == naive.replace(tzinfo=dt.UTC)  # naive input is read as UTC
