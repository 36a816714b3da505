"""The write-ahead rows of orders commit with SQLite `synchronous=FULL` (on disk before the send);
the other hot writes keep the faster `NORMAL`, and a batch that carries write-ahead rows is FULL."""

from __future__ import annotations

import asyncio
from decimal import Decimal
from typing import Any

from sqlalchemy import text

from traderagent.database.manager import DatabaseManager

FULL, NORMAL = 2, 1  # PRAGMA synchronous values


def _order(cid: str) -> dict[str, Any]:
    return {"client_order_id": cid, "symbol": "BTCUSDT", "side": "buy", "order_type": "limit",
            "qty": Decimal("0.001"), "price": Decimal("50000"), "status": "PENDING"}


async def test_write_ahead_rows_commit_with_synchronous_full(tmp_path):
    db = DatabaseManager(f"sqlite+aiosqlite:///{tmp_path / 'desk.db'}")
    await db.initialize()
    seen: list[tuple[str, int]] = []
    writers = db._group._writers
    for kind in ("orders", "runtime"):  # the desk's own writers, observed inside their transaction
        real = writers[kind]

        async def observed(session: Any, items: list[Any], kind: str = kind, real: Any = real) -> Any:
            seen.append((kind, (await session.execute(text("PRAGMA synchronous"))).scalar_one()))
            return await real(session, items)

        writers[kind] = observed
    try:
        await db.create_bot("b", "grid", "BTCUSDT", "linear", {}, "100")
        await db.save_bot_progress("b", runtime={"n": 1})
        await db.save_bot_progress("b", new_orders=[_order("b-1")], runtime={"n": 2})
        await db.save_bot_progress("b", runtime={"n": 3})
        # concurrent writers share a transaction: one write-ahead row makes the whole batch durable
        await asyncio.gather(db.save_bot_progress("b", runtime={"n": 4}),
                             db.save_bot_progress("b", new_orders=[_order("b-2")]))
    finally:
        await db.close()
    assert seen == [("runtime", NORMAL), ("orders", FULL), ("runtime", FULL), ("runtime", NORMAL),
                    ("orders", FULL), ("runtime", FULL)]
