"""Start-up reconciliation (in process): the desk is closed, the world changes, a new desk starts."""

from __future__ import annotations

import asyncio
from collections import Counter
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from tests.database.writes import create_order, update_order
from traderagent.orchestrator.events import EventType
from traderagent.orchestrator.orders import PENDING_GRACE_S
from traderagent.orchestrator.state import BotState

from .helpers import DCA, GRID, SIM_KEY, TREND, Clock, build_desk, run_ticks, sim_orders_by_link


async def test_restart_reconciles_pending_and_books_fills_made_while_down(sim, tmp_path):
    db_path = tmp_path / "rec.db"
    h = await build_desk(sim.base_url, db_path, [GRID, DCA])
    await run_ticks(h, sim, 2)
    grid = h.desk.bots["xrp-grid"].bot
    prefix = grid.prefix
    buys = sorted((o for o in grid.open_orders if o.side == "buy"), key=lambda o: o.price)
    top, second = buys[-1], buys[-2]
    await h.desk.pause_bot("sol-dca")
    await h.close()

    # crash between send and record: the row is still PENDING although the exchange has the order
    await _reopen_db(db_path, lambda db: update_order(db, second.client_order_id, status="PENDING",
                                                       exchange_order_id=None))
    # crash between write-ahead and send: PENDING rows the exchange never saw, one written long ago (its
    # create can no longer arrive) and one just now (it still could: a killed process may have signed it)
    ghost, young = prefix + "0" * 20, prefix + "1" * 20
    long_ago = datetime.now(UTC) - timedelta(seconds=PENDING_GRACE_S + 60)

    async def add_ghosts(db):
        await create_order(db, "xrp-grid", ghost, "XRPUSDT", "buy", "limit", Decimal("10"), Decimal("1"),
                           tag="grid:ghost:buy", created_at=long_ago)
        await create_order(db, "xrp-grid", young, "XRPUSDT", "buy", "limit", Decimal("10"), Decimal("1"),
                           tag="grid:young:buy")

    await _reopen_db(db_path, add_ghosts)
    # while the desk is down the market fills the top buy
    sim.set_price("XRPUSDT", top.price)

    # the desk's clock stands still: the young ghost stays inside its window however slow the machine
    h2 = await build_desk(sim.base_url, db_path, [GRID, DCA], start=False, clock=Clock(datetime.now(UTC)))
    try:
        report = await h2.desk.start(schedule=False)
        assert report["xrp-grid"]["failed"] == 1 and report["xrp-grid"]["unseen"] == 1
        assert report["xrp-grid"]["filled_while_down"] == 1
        assert (await h2.db.get_order(ghost)).status == "FAILED"
        assert (await h2.db.get_order(young)).status == "PENDING"  # tracked, looked for again by the ticks
        adopted = await h2.db.get_order(second.client_order_id)
        assert adopted.status == "OPEN" and adopted.exchange_order_id
        assert (await h2.db.get_order(top.client_order_id)).status == "FILLED"
        grid2 = h2.desk.bots["xrp-grid"].bot
        assert len(grid2.strategy.get_active_positions()) == 1  # the fill made while down is booked
        assert h2.desk.bots["sol-dca"].bot.state is BotState.PAUSED  # states come back from the DB
        await run_ticks(h2, sim, 1)
        # the counter sell of the booked fill goes out, and no intent got a second order
        tags = Counter(o.tag for o in grid2.open_orders)
        assert tags[f"grid:{int(top.tag.split(':')[1]) + 1}:sell"] == 1
        assert all(n == 1 for n in tags.values())
        assert (await h2.db.get_order(young)).status == "PENDING"  # still inside its window
        on_book = sim.orders(SIM_KEY, symbol="XRPUSDT")
        assert len(on_book) == len(grid2.open_orders) - 1  # all but the young ghost
        assert len(await h2.db.list_open_trades("xrp-grid")) == 1
    finally:
        await h2.close()


async def test_restart_rebuilds_every_strategy_without_new_orders(sim, tmp_path):
    db_path = tmp_path / "rb.db"
    h = await build_desk(sim.base_url, db_path, [GRID, DCA, TREND])
    await run_ticks(h, sim, 40)
    await h.desk.tick_all()  # catch up with the last step: the desk is now in step with the market
    before = {name: (b.bot.strategy.get_state(), sorted(o.client_order_id for o in b.bot.open_orders))
              for name, b in h.desk.bots.items()}
    n_orders = len(await h.db.list_orders(limit=10_000))
    await h.close()

    h2 = await build_desk(sim.base_url, db_path, [GRID, DCA, TREND])
    try:
        for name, b in h2.desk.bots.items():
            state, orders = before[name]
            assert b.bot.strategy.get_state() == state, name  # grid levels, DCA cycle, positions
            assert sorted(o.client_order_id for o in b.bot.open_orders) == orders, name
        await h2.desk.tick_all()  # the market did not move: nothing new is needed
        assert len(await h2.db.list_orders(limit=10_000)) == n_orders
        links = sim_orders_by_link(sim)
        assert len(links) == n_orders - len([o for o in await h2.db.list_orders(limit=10_000)
                                            if o.status in ("FAILED", "REJECTED")])
        await h2.desk.event_bus.drain(5)
        assert not h2.of(EventType.ERROR)
    finally:
        await h2.close()


async def _reopen_db(path, action):
    from traderagent.database.manager import DatabaseManager

    db = DatabaseManager(f"sqlite+aiosqlite:///{path}")
    await db.initialize()
    try:
        await action(db)
    finally:
        await db.close()


async def test_a_create_held_in_the_network_across_a_restart_is_adopted_not_failed(sim, tmp_path):
    """The bug: a desk killed right after sending its ladder; the exchange receives the signed create only
    after the restarted desk's reconcile looked for it (and did not find it). The order is live: the new
    desk keeps it tracked and adopts it, it never calls it FAILED."""
    sim.set_price("XRPUSDT", Decimal("0.5"))
    db_path = tmp_path / "held.db"
    clock = Clock(datetime.now(UTC))  # stands still: the held creates stay inside their window
    # the exchange's window is wide enough (60 s, its cap) for the held request to be accepted late
    h1 = await build_desk(sim.base_url, db_path, [GRID], clock=clock, client_kwargs={"recv_window": 60_000})
    arrived, release = asyncio.Event(), asyncio.Event()

    async def hold_the_ladder(request: Any) -> None:
        if request.path.startswith("/v5/order/create") and not arrived.is_set():
            arrived.set()
            await release.wait()

    sim.on_request = hold_the_ladder
    dying = asyncio.create_task(h1.desk.tick_all())
    try:
        await asyncio.wait_for(arrived.wait(), 30)
        written = {r.client_order_id for r in await h1.db.list_non_final_orders(GRID.name)}
        assert written and not sim.orders(SIM_KEY)
        h1.desk.gate.holds = lambda bot: False  # the first desk is dead: it writes nothing more

        h2 = await build_desk(sim.base_url, db_path, [GRID], clock=clock, start=False)
        try:
            report = await h2.desk.start(schedule=False)
            assert report[GRID.name]["unseen"] == len(written) and report[GRID.name]["failed"] == 0
            release.set()  # the held create reaches the exchange now, after the reconcile
            await asyncio.wait_for(dying, 30)
            on_book = {o["orderLinkId"] for o in sim.orders(SIM_KEY)}
            assert on_book == written
            await h2.desk.tick_all()
            rows = [await h2.db.get_order(link) for link in written]
            assert {r.status for r in rows} <= {"OPEN", "FILLED"} and all(r.exchange_order_id for r in rows)
            assert {o.client_order_id for o in h2.desk.bots[GRID.name].bot.open_orders} == written
            await h2.desk.event_bus.drain(5)
            assert not h2.of(EventType.ORDER_FAILED)
        finally:
            await h2.close()
    finally:
        release.set()
        sim.on_request = None
        if not dying.done():
            dying.cancel()
        await asyncio.gather(dying, return_exceptions=True)
        await h1.client.close()
        await h1.db.close()
