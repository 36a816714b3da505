"""A step's order updates: many in one transaction, all or nothing."""

from __future__ import annotations

from decimal import Decimal

import pytest

from traderagent.database.exceptions import OrderNotFoundError
from traderagent.database.manager import DatabaseManager


def _rows(n: int) -> list[dict]:
    return [{"client_order_id": f"bulk-{i}", "symbol": "BTCUSDT", "side": "buy", "order_type": "limit",
             "qty": Decimal("0.001"), "price": Decimal(50000 + i), "tag": f"grid:{i}:buy"} for i in range(n)]


async def test_update_orders_records_every_ack(db: DatabaseManager, bot: str) -> None:
    await db.save_bot_progress(bot, new_orders=_rows(5))
    await db.save_bot_progress(bot, order_updates=[(f"bulk-{i}", {"exchange_order_id": f"ex-{i}", "status": "open"})
                                                   for i in range(4)])
    by_id = {o.client_order_id: o for o in await db.list_orders(bot, limit=100)}
    for i in range(4):
        assert (by_id[f"bulk-{i}"].status, by_id[f"bulk-{i}"].exchange_order_id) == ("OPEN", f"ex-{i}")
        assert by_id[f"bulk-{i}"].updated_at >= by_id[f"bulk-{i}"].created_at
    assert (by_id["bulk-4"].status, by_id["bulk-4"].exchange_order_id) == ("PENDING", None)
    await db.save_bot_progress(bot, order_updates=[("bulk-0", {"status": "FILLED", "filled_qty": Decimal("0.001"),
                                        "avg_price": Decimal("50000"), "fee": Decimal("0.03")})])
    done = await db.get_order("bulk-0")
    assert done is not None and (done.status, done.filled_qty, done.fee) == ("FILLED", Decimal("0.001"),
                                                                          Decimal("0.03"))
    assert await db.save_bot_progress(bot, order_updates=[]) == []


async def test_update_orders_is_all_or_nothing(db: DatabaseManager, bot: str) -> None:
    await db.save_bot_progress(bot, new_orders=_rows(2))
    with pytest.raises(OrderNotFoundError):
        await db.save_bot_progress(bot, order_updates=[("bulk-0", {"status": "OPEN"}), ("nope", {"status": "OPEN"})])
    assert (await db.get_order("bulk-0")).status == "PENDING"  # type: ignore[union-attr]
    with pytest.raises(TypeError, match="unknown field"):
        await db.save_bot_progress(bot, order_updates=[("bulk-1", {"colour": "red"})])
    with pytest.raises(ValueError, match="unknown order status"):
        await db.save_bot_progress(bot, order_updates=[("bulk-1", {"status": "LOST"})])
