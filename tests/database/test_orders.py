"""Orders: write-before-send, updates by client order id, non-final listing, upsert, bulk insert."""

from __future__ import annotations

from decimal import Decimal

import pytest

from tests.database.writes import create_order, update_order
from traderagent.database.exceptions import DuplicateOrderError, OrderNotFoundError
from traderagent.database.manager import DatabaseManager


async def test_order_lifecycle(db: DatabaseManager, bot: str) -> None:
    order = await create_order(db, bot, "ta-grid-3-buy-1", "BTCUSDT", "Buy", "Limit", Decimal("0.001"),
                                  Decimal("50000.1"), tag="grid:3:buy")
    assert (order.status, order.side, order.order_type, order.filled_qty, order.fee) == (
        "PENDING", "buy", "limit", Decimal("0"), Decimal("0"))
    assert order.bot_name == bot and order.reduce_only is False and order.exchange_order_id is None

    sent = await update_order(db, "ta-grid-3-buy-1", exchange_order_id="ex-1", status="open")
    assert (sent.status, sent.exchange_order_id) == ("OPEN", "ex-1")
    part = await update_order(db, "ta-grid-3-buy-1", status="partially_filled", filled_qty=Decimal("0.0004"),
                                 avg_price=Decimal("50000.1"), fee=Decimal("0.011"))
    assert part.status == "PARTIALLY_FILLED" and part.filled_qty == Decimal("0.0004")
    done = await update_order(db, "ta-grid-3-buy-1", status="FILLED", filled_qty=Decimal("0.001"),
                                 fee=Decimal("0.0275"))
    assert done.is_final and done.updated_at >= done.created_at

    stored = await db.get_order("ta-grid-3-buy-1")
    assert stored is not None
    assert (stored.status, stored.filled_qty, stored.avg_price, stored.fee, stored.tag, stored.bot_name) == (
        "FILLED", Decimal("0.001"), Decimal("50000.1"), Decimal("0.0275"), "grid:3:buy", bot)


async def test_non_final_orders_and_filters(db: DatabaseManager, bot: str) -> None:
    await db.create_bot("other", "dca", "ETHUSDT", "spot", {}, 1)
    statuses = ["PENDING", "OPEN", "PARTIALLY_FILLED", "FILLED", "CANCELLED", "REJECTED", "FAILED"]
    for i, status in enumerate(statuses):
        await create_order(db, bot, f"a{i}", "BTCUSDT", "buy", "limit", 1, 100, status=status)
    await create_order(db, "other", "b0", "ETHUSDT", "sell", "market", 2, reduce_only=True)

    assert [o.client_order_id for o in await db.list_non_final_orders(bot)] == ["a0", "a1", "a2"]
    assert [o.client_order_id for o in await db.list_non_final_orders()] == ["a0", "a1", "a2", "b0"]
    assert [o.client_order_id for o in await db.list_non_final_orders("other")] == ["b0"]
    assert [o.client_order_id for o in await db.list_orders(bot, limit=3)] == ["a6", "a5", "a4"]
    assert [o.client_order_id for o in await db.list_orders(statuses=["filled", "cancelled"])] == ["a4", "a3"]
    assert await db.list_orders("nobody") == []
    assert len(await db.list_orders()) == 8


async def test_update_unknown_client_id(db: DatabaseManager, bot: str) -> None:
    with pytest.raises(OrderNotFoundError, match="nope-1"):
        await update_order(db, "nope-1", status="FILLED")
    assert await db.get_order("nope-1") is None


async def test_duplicate_client_id_is_refused(db: DatabaseManager, bot: str) -> None:
    await create_order(db, bot, "dup", "BTCUSDT", "buy", "limit", 1, 100)
    with pytest.raises(DuplicateOrderError, match="dup"):
        await create_order(db, bot, "dup", "BTCUSDT", "buy", "limit", 1, 100)
    with pytest.raises(DuplicateOrderError, match="dup"):
        await db.save_bot_progress(bot, new_orders=[{"client_order_id": "new", "symbol": "BTCUSDT", "side": "buy",
                                      "order_type": "limit", "qty": 1, "price": 1},
                                     {"client_order_id": "dup", "symbol": "BTCUSDT", "side": "buy",
                                      "order_type": "limit", "qty": 1, "price": 1}])
    assert [o.client_order_id for o in await db.list_orders()] == ["dup"]  # the batch was all-or-nothing


async def test_bad_order_fields(db: DatabaseManager, bot: str) -> None:
    await create_order(db, bot, "x", "BTCUSDT", "buy", "limit", 1, 100)
    with pytest.raises(ValueError, match="status"):
        await update_order(db, "x", status="DONE")
    with pytest.raises(TypeError, match="colour"):
        await update_order(db, "x", colour="red")
    with pytest.raises(ValueError, match="side"):
        await create_order(db, bot, "y", "BTCUSDT", "hold", "limit", 1, 100)
    with pytest.raises(ValueError, match="qty"):
        await create_order(db, bot, "y", "BTCUSDT", "buy", "limit", 0, 100)


async def test_bulk_insert(db: DatabaseManager, bot: str) -> None:
    rows = [{"client_order_id": f"bulk-{i}", "symbol": "BTCUSDT", "side": "buy" if i % 2 else "sell",
             "order_type": "limit", "qty": Decimal("0.001"), "price": Decimal("50000") + i,
             "status": "OPEN" if i % 3 == 0 else "FILLED"} for i in range(2500)]
    assert await db.save_bot_progress(bot, new_orders=rows) == []  # no trade ids: only orders were written
    assert len(await db.list_non_final_orders(bot)) == len(range(0, 2500, 3))
    last = await db.get_order("bulk-2499")
    assert last is not None and last.price == Decimal("52499") and last.bot_name == bot
