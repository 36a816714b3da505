"""Many tasks writing at once lose nothing (SQLite: WAL + busy timeout + BEGIN IMMEDIATE)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from decimal import Decimal

from tests.database.writes import create_order, update_order
from traderagent.database.manager import DatabaseManager


async def test_50_tasks_x_20_orders(db: DatabaseManager, bot: str) -> None:
    async def writer(task: int) -> None:
        for i in range(20):
            cid = f"t{task}-o{i}"
            await create_order(db, bot, cid, "BTCUSDT", "buy", "limit", Decimal("0.001"), Decimal(50000 + i))
            if i % 4 == 0:
                await update_order(db, cid, status="OPEN", exchange_order_id=f"ex-{cid}")
            if i % 5 == 0:
                await db.add_log(bot, "INFO", f"{cid} sent")

    await asyncio.gather(*(writer(t) for t in range(50)))
    orders = await db.list_orders(bot, limit=5000)
    assert len(orders) == 1000
    assert len({o.client_order_id for o in orders}) == 1000
    assert sum(1 for o in orders if o.status == "OPEN") == 50 * 5
    assert len(await db.get_logs(bot, limit=5000)) == 50 * 4


async def test_two_managers_on_one_database(make_db: Callable[..., DatabaseManager]) -> None:
    """Two independent managers (as two processes would be) write concurrently to the same database."""
    first, second = make_db(), make_db()
    await first.initialize()
    await second.initialize()
    await first.create_bot("b", "grid", "BTCUSDT", "linear", {}, 1)

    async def writer(db: DatabaseManager, prefix: str) -> None:
        for i in range(100):
            await create_order(db, "b", f"{prefix}-{i}", "BTCUSDT", "sell", "limit", 1, 100)
            await update_order(db, f"{prefix}-{i}", status="FILLED", filled_qty=1)  # read-then-write

    await asyncio.gather(*(writer(db, f"{name}{k}") for k in range(4) for db, name in ((first, "a"), (second, "b"))))
    assert len(await first.list_orders("b", statuses=["FILLED"], limit=10_000)) == 800
