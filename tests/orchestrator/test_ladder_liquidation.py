"""The exchange closing a ladder's inventory itself, against the simulator through the real client: a grid or DCA
bot on a linear perp that ByBit liquidates books its inventory closed at the liquidation's price (reason
liquidation, PnL with fees), cancels its ladder and pauses with one never-muted alert, from the tick, the
start-up reconcile and the private stream, once; an auto-deleveraging that only reduces a position (grid or
signal bot) books the reduced part as a partial close and keeps the rest."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from decimal import Decimal

import aiohttp
import pytest

from traderagent.orchestrator import protection
from traderagent.orchestrator.events import EventType, never_muted
from traderagent.orchestrator.state import BotState
from traderagent.sim import perp

from .helpers import DCA, GRID, SIM_KEY, build_desk, creates
from .test_fill_stream import Streamed, streamed_desk, wait
from .test_liquidation import LEVERED
from .test_protection import open_trend

LEVERED_GRID = replace(GRID, leverage=Decimal("10"))
LEVERED_DCA = replace(DCA, leverage=Decimal("10"))


def the_bust(sim) -> dict:
    (bust,) = [x for x in sim.executions(SIM_KEY) if x["execType"] == "BustTrade"]
    return bust


def liquidate(sim, symbol: str) -> dict:
    """Crash the price through the account's liquidation price (the ladder's buys on the way fill first)."""
    (row,) = sim.positions(SIM_KEY)
    sim.set_price(symbol, Decimal(row["liqPrice"]) * Decimal("0.98"))
    assert sim.positions(SIM_KEY) == []
    return the_bust(sim)


async def grid_holding(h, sim):
    """The grid placed its ladder and the price fell through part of it: lots held, counter sells resting."""
    bot = h.desk.bots["xrp-grid"].bot
    await h.desk.tick_all()
    price = sim.price("XRPUSDT")
    sim.set_price("XRPUSDT", price * Decimal("0.99"))
    await h.desk.tick_all()
    await h.desk.tick_all()
    assert bot.strategy.get_active_positions(), "no buy of the grid filled"
    assert any(o.reduce_only for o in bot.open_orders)
    return bot


async def booked_once(h, sim, bot, bust: dict, lots_before: int) -> None:
    """The whole inventory closed at the bust price, once; paused; one alert; nothing left on the book."""
    await h.desk.event_bus.drain(5)
    price = Decimal(bust["execPrice"])
    (told,) = h.of(EventType.LIQUIDATED, bot.name)
    assert never_muted(told) and told.data.state is BotState.PAUSED and told.data.rest == 0
    assert (told.data.qty, told.data.price, told.data.how) == (Decimal(bust["execQty"]), price, "liquidated")
    assert f"/start {bot.name}" in told.data.summary() and "PAUSED" in told.data.summary()
    closes = [e.data for e in h.of(EventType.TRADE_CLOSED, bot.name) if e.data.reason == "liquidation"]
    assert len(closes) == told.data.lots >= lots_before and all(c.exit_price == price for c in closes)
    assert not any(never_muted(e) for e in h.of(EventType.TRADE_CLOSED, bot.name))  # the one alert tells them
    assert sum(c.pnl for c in closes) == told.data.pnl < 0
    assert sum(c.qty for c in closes) == told.data.qty
    assert bot.strategy.get_active_positions() == []
    assert bot.state is BotState.PAUSED and bot.paused_by == "liquidation"
    assert not h.of(EventType.ORDER_FAILED) and not h.of(EventType.ERROR)  # no reduce-only exit was tried
    assert [o for o in sim.orders(SIM_KEY) if o["symbol"] == bot.symbol] == []  # its ladder is gone
    rows = [t for t in await h.db.list_trades(bot.name, limit=200) if not (t.tag or "").startswith("funding:")]
    assert all(t.closed_at is not None for t in rows)
    liquidated = [t for t in rows if t.exit_price == price]
    assert len(liquidated) == len(closes) and sum(t.pnl for t in liquidated) == told.data.pnl


@pytest.mark.parametrize("restart", [False, True], ids=["running", "restarted"])
async def test_a_liquidated_grid_books_its_lots_once_cancels_its_ladder_and_pauses(sim, tmp_path, restart):
    db_path = tmp_path / "grid.db"
    h = await build_desk(sim.base_url, db_path, [LEVERED_GRID])
    try:
        start_price = sim.price("XRPUSDT")
        bot = await grid_holding(h, sim)
        lots = len(bot.strategy.get_active_positions())
        if restart:
            await h.close()
        bust = liquidate(sim, "XRPUSDT")
        if restart:
            h = await build_desk(sim.base_url, db_path, [LEVERED_GRID])
            bot = h.desk.bots["xrp-grid"].bot
        sent = creates(sim)
        for _ in range(3):
            await h.desk.tick_all()
        assert creates(sim) == sent  # the ladder was not placed again, nor an exit of what is gone
        await booked_once(h, sim, bot, bust, lots)
    finally:
        await h.close()
    h = await build_desk(sim.base_url, db_path, [LEVERED_GRID])  # booked once, also after a restart
    try:
        bot = h.desk.bots["xrp-grid"].bot
        for _ in range(2):
            await h.desk.tick_all()
        await h.desk.event_bus.drain(5)
        assert not h.of(EventType.LIQUIDATED) and not h.of(EventType.TRADE_CLOSED)
        assert bot.state is BotState.PAUSED and bot.paused_by == "liquidation"
        sim.set_price("XRPUSDT", start_price)  # back in the grid's range
        price = sim.price("XRPUSDT")
        await h.desk.start_bot("xrp-grid")  # the operator restarts the ladder: buys below the price only
        await h.desk.tick_all()
        buys = [o for o in sim.orders(SIM_KEY) if o["symbol"] == "XRPUSDT"]
        assert buys and all(o["side"] == "Buy" and Decimal(o["price"]) < price for o in buys)
    finally:
        await h.close()


async def test_a_liquidated_dca_deal_is_closed_at_the_liquidation_and_the_bot_pauses(sim, tmp_path):
    h = await build_desk(sim.base_url, tmp_path / "dca.db", [LEVERED_DCA])
    try:
        bot = h.desk.bots["sol-dca"].bot
        await h.desk.tick_all()
        await h.desk.tick_all()
        (deal,) = bot.strategy.get_active_positions()  # the base order filled; safety orders and TP rest
        assert bot.strategy.deal is not None and any(o.tag == "dca:tp" for o in bot.open_orders)
        bust = liquidate(sim, "SOLUSDT")
        sent = creates(sim)
        for _ in range(3):
            await h.desk.tick_all()
        assert creates(sim) == sent
        await booked_once(h, sim, bot, bust, 1)
        assert bot.strategy.deal is None and bot.strategy.status in ("idle", "cooldown")
        (close,) = [e.data for e in h.of(EventType.TRADE_CLOSED, "sol-dca")]
        assert close.position_id.startswith(deal.position_id)  # the cycle's average, closed whole
    finally:
        await h.close()


async def test_the_private_stream_books_a_grid_liquidation_at_once(sim, tmp_path, monkeypatch):
    monkeypatch.setattr(protection, "RECONCILE_S", 3600.0)  # no periodic look: the stream alone tells
    async with aiohttp.ClientSession() as session:
        streamed = Streamed(session)
        h = await streamed_desk(sim, tmp_path, streamed, [LEVERED_GRID])
        try:
            await wait(streamed.reconciled)
            bot = await grid_holding(h, sim)
            lots = len(bot.strategy.get_active_positions())
            told = asyncio.Event()

            async def on_event(event) -> None:
                if event.event_type == EventType.LIQUIDATED:
                    told.set()

            h.desk.event_bus.subscribe(on_event, name="told")
            bust = liquidate(sim, "XRPUSDT")
            await asyncio.wait_for(told.wait(), 30)  # no tick ran: the stream's liquidation booked it
            assert streamed.fills is not None
            await streamed.fills.drain()
            await booked_once(h, sim, bot, bust, lots)
            await h.desk.tick_all()
            await booked_once(h, sim, bot, bust, lots)
        finally:
            await h.close()


async def test_a_partial_auto_deleveraging_of_a_grid_closes_that_part_and_the_ladder_carries_on(sim, tmp_path,
                                                                                               monkeypatch):
    h = await build_desk(sim.base_url, tmp_path / "adl.db", [LEVERED_GRID])
    try:
        bot = await grid_holding(h, sim)
        held = sum(p.size for p in bot.strategy.get_active_positions())
        lot = bot.strategy.get_active_positions()[0]
        adl = perp.auto_deleverage(sim.engine, sim.engine.accounts[SIM_KEY], "XRPUSDT", lot.size)
        monkeypatch.setattr(protection, "RECONCILE_S", 0.0)  # without a stream: the tick's periodic look
        for _ in range(2):
            await h.desk.tick_all()
        await h.desk.event_bus.drain(5)
        (told,) = h.of(EventType.LIQUIDATED, "xrp-grid")
        assert (told.data.how, told.data.qty, told.data.rest) == ("auto-deleveraged", lot.size, held - lot.size)
        assert told.data.price == adl.price and told.data.state is BotState.RUNNING
        assert "carries on" in told.data.summary()
        (close,) = [e.data for e in h.of(EventType.TRADE_CLOSED, "xrp-grid") if e.data.reason == "liquidation"]
        assert close.pnl == (adl.price - lot.entry_price) * lot.size - lot.fees and close.qty == lot.size
        assert sum(p.size for p in bot.strategy.get_active_positions()) == held - lot.size
        assert bot.state is BotState.RUNNING and not h.of(EventType.ERROR) and not h.of(EventType.ORDER_FAILED)
        (row,) = sim.positions(SIM_KEY)
        sells = [o for o in sim.orders(SIM_KEY) if o["symbol"] == "XRPUSDT" and o["side"] == "Sell"]
        assert sum(Decimal(o["qty"]) for o in sells) == Decimal(row["size"])  # exits match what is held
        for _ in range(2):
            await h.desk.tick_all()
        await h.desk.event_bus.drain(5)
        assert len(h.of(EventType.LIQUIDATED, "xrp-grid")) == 1  # once
    finally:
        await h.close()


async def test_a_partial_auto_deleveraging_of_a_signal_position_is_a_partial_close(sim, tmp_path, monkeypatch):
    h = await build_desk(sim.base_url, tmp_path / "trend-adl.db", [LEVERED])
    try:
        bot = await open_trend(h, sim)
        (pos,) = bot.strategy.get_active_positions()
        size, entry, fees = pos.size, pos.entry_price, pos.fees
        half = size / 2
        adl = perp.auto_deleverage(sim.engine, sim.engine.accounts[SIM_KEY], "BTCUSDT", half)
        monkeypatch.setattr(protection, "RECONCILE_S", 0.0)  # the tick compares with the exchange now
        for _ in range(2):
            await h.desk.tick_all()
        await h.desk.event_bus.drain(5)
        (close,) = [e.data for e in h.of(EventType.TRADE_CLOSED, "btc-trend")]
        sign = 1 if pos.is_long else -1
        assert (close.reason, close.qty, close.exit_price) == ("liquidation", half, adl.price)
        assert close.pnl == (adl.price - entry) * half * sign - fees * half / size
        assert [never_muted(e) for e in h.of(EventType.TRADE_CLOSED, "btc-trend")] == [True]  # its one alert
        (rest,) = bot.strategy.get_active_positions()
        assert rest.position_id == pos.position_id and rest.size == size - half
        assert bot.state is BotState.RUNNING and not h.of(EventType.ERROR)
        trades = await h.db.list_trades("btc-trend", limit=20)
        assert len([t for t in trades if t.closed_at is not None and t.pnl == close.pnl]) == 1
        assert len([t for t in trades if t.closed_at is None]) == 1  # the rest is still the open trade
    finally:
        await h.close()


async def test_a_partial_auto_deleveraging_of_a_dca_deal_keeps_the_deal_on_the_rest(sim, tmp_path, monkeypatch):
    h = await build_desk(sim.base_url, tmp_path / "dca-adl.db", [LEVERED_DCA])
    try:
        bot = h.desk.bots["sol-dca"].bot
        await h.desk.tick_all()
        await h.desk.tick_all()
        sim.set_price("SOLUSDT", sim.price("SOLUSDT") * Decimal("0.995"))  # the first safety order fills
        await h.desk.tick_all()
        (deal,) = bot.strategy.get_active_positions()
        assert bot.strategy.deal is not None and bot.strategy.deal["filled"] >= 1
        size = deal.size
        part = bot.strategy.deal["ladder"][0]["qty"]  # the safety order's part of it
        adl = perp.auto_deleverage(sim.engine, sim.engine.accounts[SIM_KEY], "SOLUSDT", part)
        monkeypatch.setattr(protection, "RECONCILE_S", 0.0)
        for _ in range(2):
            await h.desk.tick_all()
        await h.desk.event_bus.drain(5)
        (close,) = [e.data for e in h.of(EventType.TRADE_CLOSED, "sol-dca")]
        assert (close.reason, close.qty, close.exit_price) == ("liquidation", part, adl.price)
        (rest,) = bot.strategy.get_active_positions()
        assert rest.position_id == deal.position_id and rest.size == size - part and bot.strategy.deal is not None
        (tp,) = [o for o in sim.orders(SIM_KEY) if o["symbol"] == "SOLUSDT" and o["side"] == "Sell"]
        assert Decimal(tp["qty"]) == size - part  # the take profit follows what is held
        assert bot.state is BotState.RUNNING and not h.of(EventType.ERROR) and not h.of(EventType.ORDER_FAILED)
    finally:
        await h.close()
