"""A ladder goes to the exchange in batch requests and is repriced with amend, keeping one write-ahead row and
one orderLinkId per order; a partly refused batch books each order's own outcome (desk over the simulator)."""

from __future__ import annotations

from decimal import Decimal

from traderagent.orchestrator.events import EventType

from .helpers import GRID, SIM_KEY, assert_db_matches_sim, build_desk, run_ticks

CREATE, BATCH, AMEND = "/v5/order/create", "/v5/order/create-batch", "/v5/order/amend"


async def test_a_grid_ladder_is_placed_in_one_batch(sim, tmp_path):
    h = await build_desk(sim.base_url, tmp_path / "b.db", [GRID])
    try:
        await run_ticks(h, sim, 1)
        resting = sim.orders(SIM_KEY)
        assert len(resting) > 2 and sim.request_counts[BATCH] == 1 and sim.request_counts[CREATE] == 0
        assert await assert_db_matches_sim(h, sim) == len(resting)  # one row per order, same orderLinkId
    finally:
        await h.close()


async def test_a_partly_refused_batch_books_each_order_as_it_went(sim, tmp_path):
    sim.config.rate_limits[BATCH] = 3  # the exchange's bucket holds 3: the batch's later orders answer 10006
    # no retries: the refused items stay refused (the client sends them again otherwise, next test)
    h = await build_desk(sim.base_url, tmp_path / "p.db", [GRID], client_kwargs={"max_retries": 0})
    try:
        await run_ticks(h, sim, 1)
        placed = h.of(EventType.ORDER_PLACED, GRID.name)
        failed = h.of(EventType.ORDER_FAILED, GRID.name)
        assert len(placed) == len(sim.orders(SIM_KEY)) == 3 and failed
        assert all("10006" in e.data.error for e in failed)
        rows = {r.client_order_id: r.status for r in await h.db.list_orders(limit=10_000)}
        assert sorted(rows.values()) == sorted(["OPEN"] * 3 + ["FAILED"] * len(failed))
        await assert_db_matches_sim(h, sim)
    finally:
        await h.close()


async def test_items_a_full_bucket_refused_are_placed_a_window_later(sim, tmp_path):
    sim.config.rate_limits[BATCH] = 3
    h = await build_desk(sim.base_url, tmp_path / "w.db", [GRID])
    try:
        await run_ticks(h, sim, 1)
        rows = {r.client_order_id: r.status for r in await h.db.list_orders(limit=10_000)}
        assert len(rows) > 3 and set(rows.values()) == {"OPEN"}, rows
        assert not h.of(EventType.ORDER_FAILED, GRID.name) and sim.request_counts[BATCH] >= 2
        assert len(sim.orders(SIM_KEY)) == len(rows)
        await assert_db_matches_sim(h, sim)
    finally:
        await h.close()


async def test_a_moved_level_is_amended_in_place(sim, tmp_path):
    h = await build_desk(sim.base_url, tmp_path / "a.db", [GRID])
    try:
        await run_ticks(h, sim, 1)
        bot = h.desk.bots[GRID.name].bot
        order = next(o for o in bot.open_orders if o.side == "buy")
        tick = sim.specs[GRID.symbol].tick_size
        price = bot.last_price
        intents = [i if i.tag != order.tag else i.__class__(i.tag, i.side, i.order_type, i.qty, i.price - tick,
                                                              i.reduce_only)
                   for i in bot.strategy.desired_orders(price, await bot._balance())]
        await bot._apply_intents(intents, price, price, price)
        assert sim.request_counts[AMEND] == 1 and sim.request_counts[BATCH] == 1
        on_sim = next(o for o in sim.orders(SIM_KEY) if o["orderLinkId"] == order.client_order_id)
        assert Decimal(on_sim["price"]) == order.price and order.client_order_id in {o.client_order_id
                                                                                     for o in bot.open_orders}
        row = await h.db.get_order(order.client_order_id)
        assert row is not None and row.price == order.price
    finally:
        await h.close()
