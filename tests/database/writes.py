"""Test set-up through the desk's one write path, ``DatabaseManager.save_bot_progress``.

The database has no separate single-row writers any more: a bot's orders, order updates, trades,
grid and runtime snapshot are all written by that one group-committed step, so tests seed and
change rows the same way the orchestrator does.
"""

from __future__ import annotations

from typing import Any

from traderagent.database.manager import DatabaseManager
from traderagent.database.models import Order, Trade


async def _bot_of_order(db: DatabaseManager, client_order_id: str) -> str:
    """The bot owning the order (any bot when the order does not exist: the write then reports it)."""
    bots = await db.list_bots()
    order = await db.get_order(client_order_id)
    return next((b.name for b in bots if order is not None and b.id == order.bot_id), bots[0].name)


async def create_order(db: DatabaseManager, bot: str, client_order_id: str, symbol: str, side: str,
                       order_type: str, qty: Any, price: Any = None, **fields: Any) -> Order:
    spec = {"client_order_id": client_order_id, "symbol": symbol, "side": side, "order_type": order_type,
            "qty": qty, "price": price, **fields}
    await db.save_bot_progress(bot, new_orders=[spec])
    order = await db.get_order(client_order_id)
    assert order is not None
    return order


async def update_order(db: DatabaseManager, client_order_id: str, **fields: Any) -> Order:
    await db.save_bot_progress(await _bot_of_order(db, client_order_id), order_updates=[(client_order_id, fields)])
    order = await db.get_order(client_order_id)
    assert order is not None
    return order


async def open_trade(db: DatabaseManager, bot: str, symbol: str, side: str, qty: Any, entry_price: Any,
                     **fields: Any) -> Trade:
    [trade_id] = await db.save_bot_progress(bot, new_trades=[{"symbol": symbol, "side": side, "qty": qty,
                                                              "entry_price": entry_price, **fields}])
    return await trade(db, trade_id)


async def close_trade(db: DatabaseManager, trade_id: int, exit_price: Any, pnl: Any, **fields: Any) -> Trade:
    bots = {b.id: b.name for b in await db.list_bots()}
    owner = next((t.bot_id for t in await db.list_trades(limit=10**6) if t.id == trade_id), next(iter(bots)))
    await db.save_bot_progress(bots[owner], trade_closes=[(trade_id, {"exit_price": exit_price, "pnl": pnl,
                                                                      **fields})])
    return await trade(db, trade_id)


async def trade(db: DatabaseManager, trade_id: int) -> Trade:
    return next(t for t in await db.list_trades(limit=10**6) if t.id == trade_id)
