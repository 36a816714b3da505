"""Start-up reconciliation (in process): the desk is closed, the world changes, a new desk starts."""

from __future__ import annotations

from collections import Counter
from decimal import Decimal

from tests.database.writes import create_order, update_order
from traderagent.orchestrator.events import EventType
from traderagent.orchestrator.state import BotState

from .helpers import DCA, GRID, SIM_KEY, TREND, build_desk, run_ticks, sim_orders_by_link


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
    # crash between write-ahead and send: a PENDING row the exchange never saw
    ghost = prefix + "0" * 20

    async def add_ghost(db):
        await create_order(db, "xrp-grid", ghost, "XRPUSDT", "buy", "limit", Decimal("10"), Decimal("1"),
                              tag="grid:ghost:buy")

    await _reopen_db(db_path, add_ghost)
    # while the desk is down the market fills the top buy
    sim.set_price("XRPUSDT", top.price)

    h2 = await build_desk(sim.base_url, db_path, [GRID, DCA], start=False)
    try:
        report = await h2.desk.start(schedule=False)
        assert report["xrp-grid"]["failed"] == 1
        assert report["xrp-grid"]["filled_while_down"] == 1
        assert (await h2.db.get_order(ghost)).status == "FAILED"
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
        on_book = sim.orders(SIM_KEY, symbol="XRPUSDT")
        assert len(on_book) == len(grid2.open_orders)
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
