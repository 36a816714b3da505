"""The start-up's bulk reads give what the per-bot reads give, for every bot at once; its state writes share commits."""

from __future__ import annotations

import asyncio
import datetime as dt
from decimal import Decimal

from tests.database.writes import create_order, open_trade, update_order
from traderagent.database.manager import DatabaseManager


def _row(x: object) -> tuple:
    return tuple(getattr(x, k) for k in ("id", "status", "tag", "fees") if hasattr(x, k))


async def test_load_recoveries_equals_the_per_bot_reads(db: DatabaseManager, bot: str) -> None:
    await db.create_bot("dca", "dca", "ETHUSDT", "spot", {}, 500)
    await db.create_bot("idle", "grid", "SOLUSDT", "linear", {}, 100)
    await db.save_bot_progress(bot, runtime={"version": 1, "seq": 7})
    await open_trade(db, bot, "BTCUSDT", "long", "0.01", "50000", tag="grid-1")
    await open_trade(db, "dca", "ETHUSDT", "long", "0.1", "3000", tag="dca-1")
    await create_order(db, bot, "g-1", "BTCUSDT", "buy", "limit", "0.01", "49000")
    await create_order(db, bot, "g-2", "BTCUSDT", "sell", "limit", "0.01", "51000")
    await update_order(db, "g-2", status="FILLED", filled_qty="0.01")  # final: not recovered
    await create_order(db, "dca", "d-1", "ETHUSDT", "buy", "limit", "0.1", "2900")
    names = [bot, "dca", "idle", "new-bot"]
    loaded = await db.load_recoveries(names)
    assert list(loaded) == names
    assert loaded["new-bot"].row is None and not loaded["new-bot"].orders and not loaded["new-bot"].open_trades
    for name in names[:3]:
        got = loaded[name]
        row = await db.get_bot(name)
        assert got.row is not None and row is not None and (got.row.id, got.row.state) == (row.id, row.state)
        assert got.runtime == await db.load_bot_runtime(name)
        assert [_row(t) for t in got.open_trades] == [_row(t) for t in await db.list_open_trades(name)]
        assert [o.client_order_id for o in got.orders] == [o.client_order_id
                                                           for o in await db.list_non_final_orders(name)]
    assert loaded[bot].runtime == {"version": 1, "seq": 7} and [o.client_order_id for o in loaded[bot].orders] == ["g-1"]


async def test_realized_pnl_by_bot_equals_each_bots_sum(db: DatabaseManager, bot: str) -> None:
    await db.create_bot("dca", "dca", "ETHUSDT", "spot", {}, 500)
    await db.create_bot("idle", "grid", "SOLUSDT", "linear", {}, 100)
    now = dt.datetime.now(dt.UTC)
    midnight = now.replace(hour=0, minute=0, second=0, microsecond=0)
    await db.record_trade(bot, "BTCUSDT", "long", "0.01", "50000", "51250", "12.5", closed_at=midnight)
    await db.record_trade(bot, "BTCUSDT", "long", "0.01", "50000", "49000", "-3.25", closed_at=midnight)
    await db.record_trade(bot, "BTCUSDT", "long", "0.01", "50000", "52000", "99", closed_at=midnight - dt.timedelta(hours=1))
    await db.record_trade("dca", "ETHUSDT", "long", "0.1", "3000", "3010", "1", closed_at=midnight)
    by_bot = await db.realized_pnl_by_bot(since=midnight)
    assert by_bot == {bot: Decimal("9.25"), "dca": Decimal("1")}
    for name in (bot, "dca"):
        assert by_bot[name] == await db.realized_pnl(name, since=midnight)


async def test_bot_states_are_written_with_the_group_commit(db: DatabaseManager, bot: str) -> None:
    await db.create_bot("dca", "dca", "ETHUSDT", "spot", {}, 500)
    await db.load_recoveries([bot, "dca"])  # as at start-up: the bots' ids known
    commits = db._group.transactions
    await asyncio.gather(db.save_bot_progress(bot, state="RUNNING"), db.save_bot_progress("dca", state="PAUSED"),
                         db.save_bot_progress(bot, state="ERROR"))  # queued together: one transaction, the later wins
    assert db._group.transactions == commits + 1
    assert [(b.name, b.state) for b in await db.list_bots()] == [(bot, "ERROR"), ("dca", "PAUSED")]
