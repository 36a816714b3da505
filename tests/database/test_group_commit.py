"""Group commit: concurrent writers share transactions, each still returns only once durable,
and a bad write fails only its own caller."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from decimal import Decimal

import pytest

from tests.database.writes import close_trade, open_trade
from traderagent.database.exceptions import DuplicateOrderError, OrderNotFoundError
from traderagent.database.manager import DatabaseManager


def _order(cid: str) -> dict:
    return {"client_order_id": cid, "symbol": "BTCUSDT", "side": "buy", "order_type": "limit",
            "qty": Decimal("0.001"), "price": Decimal("50000"), "status": "PENDING"}


@pytest.fixture
async def bots(db: DatabaseManager) -> list[str]:
    names = [f"bot-{i:02d}" for i in range(40)]
    for name in names:
        await db.create_bot(name, "grid", "BTCUSDT", "linear", {}, "100")
    return names


async def test_concurrent_writers_share_few_transactions(db: DatabaseManager, bots: list[str]) -> None:
    before = db._group.transactions
    await asyncio.gather(*(db.save_bot_progress(b, runtime={"seq": i, "avg": Decimal("1.25")}) for i, b in enumerate(bots)),
                         *(db.save_bot_progress(b, new_orders=[_order(f"{b}-a"), _order(f"{b}-b")]) for b in bots),
                         *(db.add_log(b, "INFO", "placed") for b in bots))
    # 120 writes in a handful of transactions (how many depends on when each joins a batch and on the
    # durable/plain split of write-ahead rows), never one each
    assert db._group.transactions - before <= 8
    for i, b in enumerate(bots):  # every caller returned after its rows were committed
        assert await db.load_bot_runtime(b) == {"seq": i, "avg": "1.25"}
        assert {o.client_order_id for o in await db.list_orders(b)} == {f"{b}-a", f"{b}-b"}
    assert len(await db.get_logs(limit=100)) == len(bots)


async def test_a_bad_write_fails_only_its_caller(db: DatabaseManager, bots: list[str]) -> None:
    await db.save_bot_progress(bots[0], new_orders=[_order("taken")])
    results = await asyncio.gather(
        db.save_bot_progress(bots[1], new_orders=[_order("fresh-1")]),
        db.save_bot_progress(bots[2], new_orders=[_order("taken")]),  # duplicate client order id
        db.save_bot_progress(bots[0], order_updates=[("taken", {"status": "OPEN"}), ("nobody", {"status": "OPEN"})]),  # unknown id
        db.save_bot_progress(bots[0], order_updates=[("taken", {"exchange_order_id": "ex-1"})]),
        db.save_bot_progress(bots[3], runtime={"ok": True}),
        return_exceptions=True)
    assert results[0] == [] and results[3] == [] and results[4] == []
    assert isinstance(results[1], DuplicateOrderError) and isinstance(results[2], OrderNotFoundError)
    taken = await db.get_order("taken")
    assert (taken.status, taken.exchange_order_id) == ("PENDING", "ex-1")  # the failed update wrote nothing
    assert await db.get_order("fresh-1") is not None
    assert await db.load_bot_runtime(bots[3]) == {"ok": True}


async def test_updates_in_one_transaction_apply_in_submission_order(db: DatabaseManager, bots: list[str]) -> None:
    await db.save_bot_progress(bots[0], new_orders=[_order("o1")])
    await asyncio.gather(
        db.save_bot_progress(bots[0], order_updates=[("o1", {"status": "OPEN", "exchange_order_id": "ex-9"})]),
        db.save_bot_progress(bots[0], order_updates=[("o1", {"status": "PARTIALLY_FILLED", "filled_qty": Decimal("0.0004")})]),
        db.save_bot_progress(bots[0], order_updates=[("o1", {"status": "FILLED", "filled_qty": Decimal("0.001"), "avg_price": Decimal("49990.5")})]))
    o = await db.get_order("o1")
    assert (o.status, o.filled_qty, o.avg_price, o.exchange_order_id) == (
        "FILLED", Decimal("0.001"), Decimal("49990.5"), "ex-9")


async def test_latest_snapshot_and_grid_of_a_batch_win(db: DatabaseManager, bots: list[str]) -> None:
    b = bots[0]
    await asyncio.gather(*(db.save_bot_progress(b, runtime={"n": n}) for n in range(5)),
                         *(db.save_bot_progress(b, grid=[{"index": k, "price": 100 + n, "side": "buy"} for k in range(n + 1)])
                           for n in range(3)))
    assert await db.load_bot_runtime(b) == {"n": 4}
    assert [(g.index, g.price) for g in await db.get_grid_levels(b)] == [(0, 102), (1, 102), (2, 102)]


async def test_a_cancelled_caller_does_not_cancel_its_write(db: DatabaseManager, bots: list[str]) -> None:
    await db.save_bot_progress(bots[0], runtime={"first": 1})  # the bot's id is known now: the next save queues at once
    task = asyncio.create_task(db.save_bot_progress(bots[0], runtime={"kept": 1}))
    await asyncio.sleep(0)  # queued
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    await db.save_bot_progress(bots[1], runtime={"after": 1})  # commits after the first batch
    assert await db.load_bot_runtime(bots[0]) == {"kept": 1}


async def test_log_retention_prunes_in_steps_of_a_hundredth(make_db: Callable[..., DatabaseManager]) -> None:
    db = make_db(log_retention=300)  # pruned every 3 lines per bot name
    await db.initialize()
    for i in range(400):
        await db.add_log("b", "INFO", f"line {i}")
    await db.add_logs([("c", "INFO", f"c {i}", None) for i in range(10)])
    lines = await db.get_logs("b", limit=1000)
    assert 300 <= len(lines) < 303 and lines[0].message == "line 399"
    assert [ln.message for ln in lines[:300]] == [f"line {i}" for i in range(399, 99, -1)]
    assert len(await db.get_logs("c")) == 10


async def test_a_bots_step_commits_all_or_nothing_even_inside_a_failing_batch(db: DatabaseManager,
                                                                             bots: list[str]) -> None:
    b, other = bots[0], bots[1]
    await db.save_bot_progress(b, runtime={"v": 1})
    grid = [{"index": 0, "price": "100", "side": "buy"}]
    step = db.save_bot_progress(b, new_orders=[_order("step-1")], order_updates=[("nobody", {"status": "OPEN"})],
                                runtime={"v": 2}, grid=grid)
    results = await asyncio.gather(step, db.save_bot_progress(other, runtime={"fine": 1}), return_exceptions=True)
    assert isinstance(results[0], OrderNotFoundError) and results[1] == []
    assert await db.load_bot_runtime(b) == {"v": 1}  # none of the failed step's parts was written
    assert await db.get_order("step-1") is None and await db.get_grid_levels(b) == []
    assert await db.load_bot_runtime(other) == {"fine": 1}

    before = db._group.transactions
    await db.save_bot_progress(b, new_orders=[_order("step-1")], runtime={"v": 2}, grid=grid)
    await db.save_bot_progress(b, order_updates=[("step-1", {"status": "FILLED", "filled_qty": Decimal("0.001")})],
                               runtime={"v": 3, "booked": ["step-1"]})
    assert db._group.transactions - before == 2  # each step is one transaction
    assert (await db.get_order("step-1")).status == "FILLED"
    assert await db.load_bot_runtime(b) == {"v": 3, "booked": ["step-1"]}
    assert [g.price for g in await db.get_grid_levels(b)] == [Decimal("100")]


async def test_concurrent_trades_share_a_transaction_and_each_gets_its_own_row(db: DatabaseManager,
                                                                              bots: list[str]) -> None:
    before = db._group.transactions
    trades = await asyncio.gather(*(open_trade(db, b, "BTCUSDT", "long", "0.01", 100 + i, tag=f"p{i}")
                                    for i, b in enumerate(bots)))
    assert db._group.transactions - before <= 10  # 40 inserts in a few transactions (ids are looked up concurrently)
    assert len({t.id for t in trades}) == len(bots)
    for i, (b, trade) in enumerate(zip(bots, trades, strict=True)):
        [stored] = await db.list_trades(b)
        assert (stored.id, stored.entry_price, stored.tag) == (trade.id, Decimal(100 + i), f"p{i}")
        assert trade.bot_name == b and trade.is_open
    closed = await close_trade(db, trades[0].id, "110", "0.1")
    assert closed.pnl == Decimal("0.1") and not closed.is_open
