"""Trades and the SQL aggregates, checked against hand-computed figures."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest

from tests.database.writes import close_trade, open_trade
from traderagent.database.exceptions import TradeAlreadyClosedError, TradeNotFoundError
from traderagent.database.manager import DatabaseManager


def _days_ago(n: int, hour: int = 12) -> dt.datetime:
    today = dt.datetime.now(dt.UTC).replace(hour=hour, minute=0, second=0, microsecond=0)
    return today - dt.timedelta(days=n)


async def test_open_close_and_listing(db: DatabaseManager, bot: str) -> None:
    trade = await open_trade(db, bot, "BTCUSDT", "long", Decimal("0.01"), Decimal("50000"), fees=Decimal("0.275"))
    assert trade.is_open and trade.bot_name == bot
    assert [t.id for t in await db.list_open_trades(bot)] == [trade.id]
    closed = await close_trade(db, trade.id, Decimal("51000"), Decimal("9.45"), fees=Decimal("0.2805"))
    assert closed.fees == Decimal("0.5555") and closed.pnl == Decimal("9.45") and not closed.is_open
    assert await db.list_open_trades() == []
    [listed] = await db.list_trades(bot, closed_only=True)
    assert listed.exit_price == Decimal("51000") and listed.closed_at is not None
    with pytest.raises(TradeAlreadyClosedError):
        await close_trade(db, trade.id, Decimal("1"), Decimal("0"))
    with pytest.raises(TradeNotFoundError, match="999999"):
        await close_trade(db, 999999, Decimal("1"), Decimal("0"))


async def test_aggregates_hand_checked(db: DatabaseManager, bot: str) -> None:
    await db.create_bot("dca", "dca", "ETHUSDT", "spot", {}, 500)
    # grid-btc: +12.5 and -4.25 three days ago, +0.75 today; dca: -2 yesterday, 0 (break-even) today
    await db.record_trade(bot, "BTCUSDT", "long", "0.01", "50000", "51250", "12.5", closed_at=_days_ago(3, 1))
    await db.record_trade(bot, "BTCUSDT", "short", "0.01", "50000", "50425", "-4.25", closed_at=_days_ago(3, 23))
    await db.record_trade(bot, "BTCUSDT", "long", "0.001", "50000", "50750", "0.75", closed_at=_days_ago(0, 0))
    await db.record_trade("dca", "ETHUSDT", "buy", "1", "3000", "2998", "-2", closed_at=_days_ago(1))
    await db.record_trade("dca", "ETHUSDT", "buy", "1", "3000", "3000", "0", closed_at=_days_ago(0, 0))
    await db.record_trade(bot, "BTCUSDT", "long", "1", "1", "2", "1000", closed_at=_days_ago(30))  # outside 7 days
    # open positions: 0.02 x 49000.5 = 980.01 and 1.5 x 2999.99 = 4499.985
    await open_trade(db, bot, "BTCUSDT", "long", "0.02", "49000.5")
    await open_trade(db, "dca", "ETHUSDT", "buy", "1.5", "2999.99")

    assert await db.realized_pnl(bot) == Decimal("1009.00")
    assert await db.realized_pnl("dca") == Decimal("-2")
    assert await db.realized_pnl() == Decimal("1007.00")
    assert await db.realized_pnl(since=_days_ago(7)) == Decimal("7.00")

    daily = await db.daily_pnl(7)
    assert len(daily) == 7 and daily[-1][0] == dt.datetime.now(dt.UTC).date()
    by_day = dict(daily)
    assert by_day[_days_ago(3).date()] == Decimal("8.25")
    assert by_day[_days_ago(1).date()] == Decimal("-2")
    assert by_day[_days_ago(0).date()] == Decimal("0.75")
    assert sum(v for _, v in daily) == Decimal("7.00")
    assert by_day[_days_ago(2).date()] == Decimal("0")
    assert dict(await db.daily_pnl(7, bot))[_days_ago(1).date()] == Decimal("0")


async def test_aggregates_empty(db: DatabaseManager, bot: str) -> None:
    assert await db.realized_pnl() == Decimal("0")
    assert [v for _, v in await db.daily_pnl(3)] == [Decimal("0")] * 3


async def test_closed_trade_needs_exit_and_pnl(db: DatabaseManager, bot: str) -> None:
    with pytest.raises(ValueError, match="exit_price and pnl"):
        await db.save_bot_progress(bot, new_trades=[{"symbol": "BTCUSDT", "side": "long", "qty": 1, "entry_price": 1, "pnl": 1}])


async def test_newest_close_of_the_trades_under_a_tag_prefix(db: DatabaseManager, bot: str) -> None:
    assert await db.newest_trade_close(bot, "funding:") is None
    await db.record_trade(bot, "BTCUSDT", "long", "1", "1", "1", "-0.5", closed_at=_days_ago(2), tag="funding:a")
    await db.record_trade(bot, "BTCUSDT", "long", "1", "1", "1", "-0.5", closed_at=_days_ago(1), tag="funding:b")
    await db.record_trade(bot, "BTCUSDT", "long", "1", "1", "2", "1", closed_at=_days_ago(0), tag="grid-1")
    await db.record_trade(bot, "BTCUSDT", "long", "1", "1", "2", "1", closed_at=_days_ago(0), tag="fundingX")
    newest = await db.newest_trade_close(bot, "funding:")
    assert newest is not None and newest.replace(tzinfo=dt.UTC) == _days_ago(1)
