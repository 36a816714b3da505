"""The database write path of a tick: quiet ticks write nothing, one tick's orders are batched
with every PENDING row durable before the first send, and a crash after the write-ahead leaves
rows that start-up recovery resolves."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest
from sqlalchemy import event

from traderagent.orchestrator import orders
from traderagent.orchestrator.events import EventType
from traderagent.orchestrator.perp import FundingCharge

from .helpers import DCA, GRID, Clock, build_desk

WRITES = ("INSERT", "UPDATE", "DELETE", "BEGIN IMMEDIATE")


class WriteCounter:
    """Counts write statements the database manager's engine executes (SQLAlchemy event)."""

    def __init__(self, db: Any) -> None:
        self.statements: list[str] = []
        self.engine = db._engine.sync_engine
        event.listen(self.engine, "before_cursor_execute", self._on)

    def _on(self, _conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        if statement.lstrip().upper().startswith(WRITES):
            self.statements.append(statement.split("\n")[0][:80])

    def close(self) -> None:
        event.remove(self.engine, "before_cursor_execute", self._on)


async def _settle(h: Any) -> None:
    """Tick until the grid's ladder rests and nothing changes any more."""
    for _ in range(4):
        await h.desk.tick_all()
    await h.desk.event_bus.drain(5)


async def test_a_quiet_tick_writes_nothing(sim, tmp_path):
    sim.set_price("XRPUSDT", Decimal("0.5"))
    h = await build_desk(sim.base_url, tmp_path / "desk.db", [GRID])
    try:
        await _settle(h)
        bot = h.desk.bots[GRID.name].bot
        assert len(bot.open_orders) >= 4  # the ladder rests: the sync compares real orders each tick
        counter = WriteCounter(h.db)
        try:
            for _ in range(3):
                await h.desk.tick_all()
            await h.desk.event_bus.drain(5)
        finally:
            counter.close()
        assert counter.statements == []
        # a change is still written: a fill books, saves the snapshot and places the counter order
        counter = WriteCounter(h.db)
        try:
            sim.set_price("XRPUSDT", Decimal("0.49"))
            await h.desk.tick_all()
        finally:
            counter.close()
        assert any(s.startswith("UPDATE") for s in counter.statements)
    finally:
        await h.close()


async def test_one_ticks_orders_are_written_ahead_in_one_batch(sim, tmp_path, monkeypatch):
    sim.set_price("XRPUSDT", Decimal("0.5"))
    h = await build_desk(sim.base_url, tmp_path / "desk.db", [GRID])
    try:
        bot = h.desk.bots[GRID.name].bot
        seen_at_send: list[dict[str, str]] = []
        real_send = h.client.place_orders_batch  # the ladder goes in batch requests

        async def spy(*args: Any, **kw: Any) -> dict:
            rows = await h.db.list_orders(GRID.name, limit=1000)
            seen_at_send.append({r.client_order_id: r.status for r in rows})
            return await real_send(*args, **kw)

        monkeypatch.setattr(h.client, "place_orders_batch", spy)
        counter = WriteCounter(h.db)
        try:
            await h.desk.tick_all()
        finally:
            counter.close()
        placed = {o.client_order_id for o in bot.open_orders}
        assert len(placed) >= 4 and seen_at_send
        for snapshot in seen_at_send:  # every send found ALL of the tick's rows already durable
            assert placed <= set(snapshot)
        inserts = [s for s in counter.statements if s.startswith("INSERT INTO orders")]
        assert len(inserts) == 1, counter.statements  # one multi-row write-ahead
        rows = await h.db.list_orders(GRID.name, limit=1000)
        assert {r.client_order_id for r in rows} == placed
        assert all(r.status == "OPEN" and r.exchange_order_id for r in rows)
    finally:
        await h.close()


async def test_a_fill_is_recorded_in_the_same_transaction_as_its_booking(sim, tmp_path, monkeypatch):
    sim.set_price("XRPUSDT", Decimal("0.5"))
    h = await build_desk(sim.base_url, tmp_path / "desk.db", [GRID])
    try:
        await _settle(h)
        steps: list[dict[str, Any]] = []
        real = h.db.save_bot_progress

        async def spy(name: str, **parts: Any) -> list[int]:
            steps.append(parts)
            return await real(name, **parts)

        monkeypatch.setattr(h.db, "save_bot_progress", spy)
        sim.set_price("XRPUSDT", Decimal("0.49"))  # buy levels fill
        await h.desk.tick_all()
        fills = [(cid, step) for step in steps for cid, fields in step["order_updates"]
                 if fields.get("status") == "FILLED"]
        assert fills
        for cid, step in fills:  # never one without the other: a crash cannot book twice or lose a fill
            assert step["runtime"] is not None and cid in step["runtime"]["booked"]
    finally:
        await h.close()


async def test_a_fill_that_opens_a_position_writes_its_trade_in_the_same_transaction(sim, tmp_path, monkeypatch):
    sim.set_price("SOLUSDT", Decimal("100"))
    h = await build_desk(sim.base_url, tmp_path / "desk.db", [DCA])
    steps: list[dict[str, Any]] = []
    real = h.db.save_bot_progress

    async def spy(name: str, **parts: Any) -> list[int]:
        steps.append(parts)
        return await real(name, **parts)

    def crash_point(name: str) -> None:
        if name == "after_fill_booked":
            raise Crash(name)

    monkeypatch.setattr(h.db, "save_bot_progress", spy)
    monkeypatch.setattr(orders, "crash_point", crash_point)
    with pytest.raises(Crash):  # the base order is a market order: it fills and opens the deal's position
        await h.desk.tick_all()
    [step] = [step for step in steps if step.get("new_trades")]
    assert [f["status"] for _, f in step["order_updates"]] == ["FILLED"] and step["runtime"] is not None
    [opened] = await h.db.list_open_trades(DCA.name)
    assert opened.tag == step["new_trades"][0]["tag"]
    await h.desk.event_bus.drain(5)
    assert [e.data.trade_id for e in h.of("TRADE_OPENED", DCA.name)] == [opened.id]
    await h.client.close()
    await h.db.close()

    monkeypatch.undo()  # restart right after that step: the open trade is adopted, never inserted again
    h2 = await build_desk(sim.base_url, tmp_path / "desk.db", [DCA])
    try:
        await _settle(h2)
        assert [t.id for t in await h2.db.list_open_trades(DCA.name)] == [opened.id]
        assert h2.of("TRADE_OPENED", DCA.name) == []
    finally:
        await h2.close()


class Crash(BaseException):
    """Stands in for the process dying (not an Exception: the tick's handler must not catch it)."""


async def _crash_after_write_ahead(sim: Any, db_path: Any, clock: Clock, monkeypatch: Any) -> set[str]:
    """A desk dies between its ladder's write-ahead and the sends; returns the PENDING rows' orderLinkIds."""
    sim.set_price("XRPUSDT", Decimal("0.5"))
    h = await build_desk(sim.base_url, db_path, [GRID], clock=clock)
    sent: list[str] = []
    real_send = h.client.create_limit_order

    async def spy(*args: Any, **kw: Any) -> dict:
        sent.append(kw["client_order_id"])
        return await real_send(*args, **kw)

    def crash_point(name: str) -> None:
        if name == "after_write_ahead":
            raise Crash(name)

    monkeypatch.setattr(h.client, "create_limit_order", spy)
    monkeypatch.setattr(orders, "crash_point", crash_point)
    try:
        with pytest.raises(Crash):
            await h.desk.tick_all()
        pending = await h.db.list_non_final_orders(GRID.name)
        assert len(pending) >= 4 and {r.status for r in pending} == {"PENDING"}
        assert sent == [] and not sim.orders("test-key")
        return {r.client_order_id for r in pending}
    finally:
        await h.client.close()
        await h.db.close()
        monkeypatch.undo()


async def test_crash_after_batched_write_ahead_sends_nothing_and_recovers(sim, tmp_path, monkeypatch):
    clock = Clock()
    links = await _crash_after_write_ahead(sim, tmp_path / "desk.db", clock, monkeypatch)

    # a restart at once: the creates may still be on their way (a killed process may have signed them)
    clock.advance(seconds=orders.PENDING_GRACE_S / 2)
    h2 = await build_desk(sim.base_url, tmp_path / "desk.db", [GRID], clock=clock, start=False)
    try:
        report = await h2.desk.start(schedule=False)
        assert report[GRID.name]["unseen"] == len(links) and report[GRID.name]["failed"] == 0
        await h2.desk.tick_all()  # looked for again, still inside their window: tracked, nothing sent
        assert {o.client_order_id for o in h2.desk.bots[GRID.name].bot.open_orders} == links
        assert {r.client_order_id for r in await h2.db.list_non_final_orders(GRID.name)} == links
        assert not sim.orders("test-key")
    finally:
        await h2.close()

    # a restart after their window: they never will arrive, FAILED at once, and the ladder is placed afresh
    clock.advance(seconds=orders.PENDING_GRACE_S)
    h3 = await build_desk(sim.base_url, tmp_path / "desk.db", [GRID], clock=clock, start=False)
    try:
        report = await h3.desk.start(schedule=False)
        assert report[GRID.name]["failed"] == len(links) and report[GRID.name]["unseen"] == 0
        assert await h3.db.list_non_final_orders(GRID.name) == []
        failed = await h3.db.list_orders(GRID.name, statuses=["FAILED"], limit=1000)
        assert {r.client_order_id for r in failed} == links
        await h3.desk.tick_all()
        assert len(h3.desk.bots[GRID.name].bot.open_orders) >= 4
    finally:
        await h3.close()


async def test_an_unseen_create_is_failed_by_a_tick_once_its_window_has_passed(sim, tmp_path, monkeypatch):
    """Young at start-up, then the clock moves past its window: the next tick's look fails it, and the
    ladder places its levels afresh (under new orderLinkIds)."""
    clock = Clock()
    links = await _crash_after_write_ahead(sim, tmp_path / "desk.db", clock, monkeypatch)
    h = await build_desk(sim.base_url, tmp_path / "desk.db", [GRID], clock=clock)
    try:
        bot = h.desk.bots[GRID.name].bot
        assert {o.client_order_id for o in bot.open_orders} == links
        clock.advance(seconds=orders.PENDING_GRACE_S)
        await h.desk.tick_all()
        failed = await h.db.list_orders(GRID.name, statuses=["FAILED"], limit=1000)
        assert {r.client_order_id for r in failed} == links
        await h.desk.tick_all()
        placed = {o.client_order_id for o in bot.open_orders}
        assert len(placed) >= 4 and not placed & links
        assert {o["orderLinkId"] for o in sim.orders("test-key")} == placed
    finally:
        await h.close()


async def test_a_create_not_sent_within_its_window_is_not_sent_at_all(sim, tmp_path, monkeypatch):
    """A create still unsent SEND_WINDOW_S after its write-ahead (a long wait for its turn at the rate
    limit, retries) is not written any more: so none reaches the exchange PENDING_GRACE_S after its row,
    which is what start-up recovery relies on. No request of it was written: FAILED at once (NeverSent)."""
    sim.set_price("XRPUSDT", Decimal("0.5"))
    clock = Clock()
    h = await build_desk(sim.base_url, tmp_path / "desk.db", [GRID], clock=clock)
    try:
        bot = h.desk.bots[GRID.name].bot
        monkeypatch.setattr(orders, "crash_point", lambda name: clock.advance(seconds=orders.SEND_WINDOW_S)
                            if name == "after_write_ahead" else None)
        await h.desk.tick_all()
        monkeypatch.undo()
        assert not sim.orders("test-key", open_only=False)
        rows = await h.db.list_orders(GRID.name, limit=1000)
        assert len(rows) >= 4 and {r.status for r in rows} == {"FAILED"} and bot.open_orders == []
        await h.desk.tick_all()
        assert {o["orderLinkId"] for o in sim.orders("test-key")} == {o.client_order_id for o in bot.open_orders}
        assert len(bot.open_orders) >= 4
    finally:
        await h.close()


async def test_ladder_candle_analysis_waits_for_the_cpu_budget(sim, tmp_path):
    from traderagent.orchestrator.budget import AnalysisBudget

    sim.set_price("XRPUSDT", Decimal("0.5"))
    h = await build_desk(sim.base_url, tmp_path / "desk.db", [GRID])
    try:
        bot = h.desk.bots[GRID.name].bot
        await h.desk.tick_all()
        seen = bot._last_candle_ms
        assert seen is not None
        now = [100.0]
        bot.analysis_budget = budget = AnalysisBudget(window=1.0, share=0.5, clock=lambda: now[0])
        budget.spend(1.0)  # the desk just spent its whole share on other analyses
        sim.step_all(1)
        await h.desk.tick_all()
        assert bot._last_candle_ms == seen and budget.deferred == 1  # deferred, not skipped
        assert len(bot.open_orders) >= 4  # the ladder is still managed meanwhile
        now[0] += 2.0
        await h.desk.tick_all()
        assert bot._last_candle_ms is not None and bot._last_candle_ms > seen
    finally:
        await h.close()


async def _cancel_mid_write(db: Any, call: Callable[[], Awaitable[Any]]) -> None:
    """Run ``call`` and cancel it (a stop, a timeout) while its write inserts trade rows; the group
    commit goes on with the write and commits it once released."""
    writers = db._group._writers
    insert_trades = writers["trades"]
    entered, release = asyncio.Event(), asyncio.Event()

    async def held(session: Any, items: list[Any]) -> Any:
        entered.set()
        await release.wait()
        return await insert_trades(session, items)

    writers["trades"] = held
    task = asyncio.create_task(call())
    try:
        await asyncio.wait_for(entered.wait(), 30)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    finally:
        writers["trades"] = insert_trades
        release.set()


async def test_a_write_whose_caller_is_cancelled_midway_is_booked_once(sim, tmp_path):
    """A tick is cancelled while its write (a fill, and the trade row it opens) is being committed: the
    bot books that write's outcome once, so its next write inserts no second trade row, and the trade
    is announced once."""
    sim.set_price("XRPUSDT", Decimal("0.5"))
    h = await build_desk(sim.base_url, tmp_path / "desk.db", [GRID])
    try:
        bot = h.desk.bots[GRID.name].bot
        await _settle(h)
        top = max((o for o in bot.open_orders if o.side == "buy"), key=lambda o: o.price)
        sim.set_price("XRPUSDT", top.price)  # the top buy fills: its trade row is written with its booking
        await _cancel_mid_write(h.db, h.desk.tick_all)
        await bot.save()  # the bot's next write
        await h.desk.tick_all()
        trades = await h.db.list_open_trades(GRID.name)
        assert len(trades) == len(bot.strategy.get_active_positions()) == 1
        assert bot._trade_ids == {trades[0].tag: [trades[0].id, str(trades[0].fees)]}
        assert (await h.db.get_order(top.client_order_id)).status == "FILLED"
        await h.desk.event_bus.drain(5)
        assert len(h.of(EventType.TRADE_OPENED)) == 1
    finally:
        await h.close()


async def test_a_funding_booking_cancelled_midway_is_booked_once(sim, tmp_path):
    sim.set_price("XRPUSDT", Decimal("0.5"))
    h = await build_desk(sim.base_url, tmp_path / "desk.db", [GRID])
    try:
        bot = h.desk.bots[GRID.name].bot
        charge = FundingCharge("exec-1", "XRPUSDT", "long", Decimal("10"), Decimal("0.5"), Decimal("0.0001"),
                               Decimal("-0.0005"), datetime.now(UTC))
        await _cancel_mid_write(h.db, lambda: bot.book_funding([charge]))
        assert await bot.book_funding([charge]) == 0  # the settlement is booked already
        rows = [t for t in await h.db.list_trades(GRID.name, limit=10) if t.tag == charge.trade_row()["tag"]]
        assert len(rows) == 1 and bot._realized == charge.pnl
    finally:
        await h.close()


async def test_the_grid_table_kept_between_ticks_is_the_one_a_rebuild_gives(sim, tmp_path):
    """The grid rows are rebuilt only when the intents, the orders or the price band moved: across fills,
    counter orders and price moves within and across levels, the kept rows equal freshly built ones."""
    sim.set_price("XRPUSDT", Decimal("0.5"))
    h = await build_desk(sim.base_url, tmp_path / "desk.db", [GRID])
    try:
        await _settle(h)
        bot = h.desk.bots[GRID.name].bot
        kept = bot._grid_rows()
        assert kept and bot._grid_rows() is kept  # nothing moved: not rebuilt
        for price in ("0.5001", "0.4985", "0.4950", "0.4951", "0.5030", "0.5060", "0.5"):
            sim.set_price("XRPUSDT", Decimal(price))
            await h.desk.tick_all()
            kept = bot._grid_rows()
            bot._grid_memo = None
            assert kept == bot._grid_rows(), price
    finally:
        await h.close()
