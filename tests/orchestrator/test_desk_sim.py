"""A paper desk on the in-process simulator (speed 0, stepped between ticks)."""

from __future__ import annotations

import pytest

from traderagent.orchestrator.events import EventType
from traderagent.orchestrator.state import BotState

from .helpers import DCA, GRID, SIM_KEY, TREND, assert_db_matches_sim, build_desk, run_ticks


async def test_paper_desk_orders_identical_on_sim_and_db(sim, tmp_path):
    h = await build_desk(sim.base_url, tmp_path / "desk.db", [GRID, DCA, TREND])
    try:
        await run_ticks(h, sim, 60)
        await h.desk.tick_all()  # book what the last step filled
        await h.desk.event_bus.drain(5)
        n = await assert_db_matches_sim(h, sim)
        assert n > 10
        tags = {r.tag for r in await h.db.list_orders(limit=10_000)}
        assert any(t.startswith("grid:") for t in tags)
        assert any(t.startswith("dca:") for t in tags)
        assert any(t.startswith("entry-") for t in tags)  # the trend bot traded
        for bot in ("xrp-grid", "sol-dca", "btc-trend"):
            assert h.of(EventType.ORDER_PLACED, bot), bot
            assert h.of(EventType.ORDER_FILLED, bot), bot
        assert h.of(EventType.TRADE_CLOSED, "btc-trend")
        assert h.of(EventType.SIGNAL_GENERATED, "btc-trend")
        # order links carry the bot's prefix and are unique
        links = [r.client_order_id for r in await h.db.list_orders(limit=10_000)]
        assert len(links) == len(set(links))
        assert all(len(link) <= 36 for link in links)
        # the trades table mirrors the strategies: closed trend trades have pnl, open positions a row
        trades = await h.db.list_trades("btc-trend", limit=1000)
        closed = [t for t in trades if t.closed_at is not None]
        assert closed and all(t.pnl is not None for t in closed)
        bot = h.desk.bots["btc-trend"].bot
        assert len([t for t in trades if t.closed_at is None]) == len(bot.strategy.get_active_positions())
        # grid levels are persisted with the resting order of each active level
        levels = await h.db.get_grid_levels("xrp-grid")
        resting = {o.client_order_id for o in h.desk.bots["xrp-grid"].bot.open_orders}
        linked = {lv.client_order_id for lv in levels if lv.client_order_id}
        assert levels and linked == resting
        # the capital manager saw the closed trades
        report = await h.desk.capital_report()
        closed = await h.db.list_trades(limit=1000, closed_only=True)
        assert report.current is not None and report.current.total_trades == len(closed)
    finally:
        await h.close()


async def test_paused_bot_manages_exits_but_opens_nothing(sim, tmp_path):
    h = await build_desk(sim.base_url, tmp_path / "p.db", [GRID])
    try:
        grid = h.desk.bots["xrp-grid"].bot
        await run_ticks(h, sim, 1)
        buys = [o for o in grid.open_orders if o.side == "buy"]
        assert buys
        await h.desk.pause_bot("xrp")
        assert grid.state is BotState.PAUSED
        top = max(buys, key=lambda o: o.price)
        sim.set_price("XRPUSDT", top.price)  # fills the highest buy
        await h.desk.tick_all()
        sells = [o for o in grid.open_orders if o.side == "sell"]
        assert len(sells) == 1  # the exit (counter sell) is placed while paused
        async def buy_rows() -> int:
            return len([o for o in await h.db.list_orders("xrp-grid", limit=1000) if o.side == "buy"])

        assert await buy_rows() == len(buys)  # no new buy (entry) went out
        sim.set_price("XRPUSDT", sells[0].price)  # the pair completes while paused
        await h.desk.tick_all()
        assert not [o for o in grid.open_orders if o.side == "sell"]
        assert await buy_rows() == len(buys)  # the re-buy is an entry: it waits for the resume
        await h.desk.event_bus.drain(5)
        assert h.of(EventType.TRADE_CLOSED, "xrp-grid")
        await h.desk.start_bot("xrp-grid")
        await h.desk.tick_all()
        assert await buy_rows() == len(buys) + 1
    finally:
        await h.close()


async def test_stop_cancels_entry_orders_on_the_exchange(sim, tmp_path):
    h = await build_desk(sim.base_url, tmp_path / "s.db", [GRID])
    try:
        grid = h.desk.bots["xrp-grid"].bot
        await run_ticks(h, sim, 1)
        top = max((o for o in grid.open_orders if o.side == "buy"), key=lambda o: o.price)
        sim.set_price("XRPUSDT", top.price)
        await h.desk.tick_all()
        await h.desk.stop_bot("xrp-grid")
        on_book = sim.orders(SIM_KEY, symbol="XRPUSDT")
        assert on_book and all(o["side"] == "Sell" for o in on_book)  # the exit stays, entries are gone
        assert {o["orderLinkId"] for o in on_book} == {o.client_order_id for o in grid.open_orders}
        assert await grid.tick() is False
        await h.desk.event_bus.drain(5)
        assert h.of(EventType.ORDER_CANCELLED, "xrp-grid")
    finally:
        await h.close()


async def test_exception_in_tick_moves_to_error_and_desk_keeps_running(sim, tmp_path, monkeypatch):
    h = await build_desk(sim.base_url, tmp_path / "e.db", [GRID, DCA])
    try:
        grid = h.desk.bots["xrp-grid"].bot

        def broken(*_a, **_k):
            raise RuntimeError("strategy bug")

        monkeypatch.setattr(grid.strategy, "desired_orders", broken)
        await run_ticks(h, sim, 2)
        assert grid.state is BotState.ERROR
        assert h.desk.bots["sol-dca"].bot.state is BotState.RUNNING  # the other bot is unaffected
        errors = h.of(EventType.ERROR, "xrp-grid")
        assert errors and "strategy bug" in errors[0].data.error
        assert (await h.db.get_bot("xrp-grid")).state == "ERROR"
        assert h.desk.capital.metrics.errors_count == 1  # errors gate scaling
        ticks = grid.ticks
        await run_ticks(h, sim, 1)
        assert grid.ticks == ticks  # ERROR does not tick until an operator starts it
        monkeypatch.undo()
        await h.desk.start_bot("xrp-grid")
        await run_ticks(h, sim, 1)
        assert grid.state is BotState.RUNNING and grid.open_orders
    finally:
        await h.close()


@pytest.mark.parametrize("fault", ["error_rate", "ratelimit_rate"])
async def test_transient_exchange_faults_do_not_duplicate(sim, tmp_path, fault):
    h = await build_desk(sim.base_url, tmp_path / "f.db", [GRID, DCA],
                         client_kwargs={"backoff_base": 0.01, "backoff_max": 0.05, "max_reset_wait": 0.1})
    try:
        setattr(sim.faults, fault, 0.2)
        await run_ticks(h, sim, 25)
        setattr(sim.faults, fault, 0.0)
        await run_ticks(h, sim, 2)
        await assert_db_matches_sim(h, sim)
        for bot in h.desk.bots.values():
            tags = [o.tag for o in bot.bot.open_orders]
            assert len(tags) == len(set(tags))  # one resting order per intent
        on_book = sim.orders(SIM_KEY)
        keyed = [(o["symbol"], o["side"], o["price"], o["qty"]) for o in on_book]
        assert len(keyed) == len(set(keyed))
    finally:
        await h.close()


async def test_events_tell_cause_before_effect(sim, tmp_path):
    """A fill is announced before the position it opens and before the counter order it triggers."""
    h = await build_desk(sim.base_url, tmp_path / "order.db", [GRID, DCA])
    try:
        await run_ticks(h, sim, 40)
        await h.desk.tick_all()
        await h.desk.event_bus.drain(5)
        events = [e for e in h.events if e.bot_name in ("xrp-grid", "sol-dca")]
        fills = [i for i, e in enumerate(events) if e.event_type is EventType.ORDER_FILLED]
        assert fills
        for i, event in enumerate(events):
            if event.event_type is EventType.TRADE_OPENED:  # some fill of that bot came first
                assert any(j < i and events[j].bot_name == event.bot_name for j in fills), event
        # a grid buy's counter sell is placed after the buy's fill event
        for i in fills:
            filled = events[i]
            if filled.bot_name == "xrp-grid" and filled.data.order.side == "buy":
                level = int(filled.data.order.tag.split(":")[1])
                earlier_fill = max((j for j in fills[: fills.index(i)]
                                    if events[j].data.order.tag == filled.data.order.tag), default=-1)
                counter = [j for j, e in enumerate(events) if j > earlier_fill
                           and e.event_type is EventType.ORDER_PLACED and e.data.order.tag == f"grid:{level + 1}:sell"]
                assert counter and counter[0] > i, (i, counter)
                break
        else:
            pytest.fail("no grid buy filled in 40 steps")
    finally:
        await h.close()
