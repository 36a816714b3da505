"""A position the exchange liquidates is booked by the desk once (reason liquidation, PnL with fees), from
the tick's look at the exchange, from the reconcile after a restart, and at once from the private stream;
no phantom position or reduce-only exit follows, and the risk rails pause the bot or not."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from decimal import Decimal

import aiohttp
import pytest

from traderagent.orchestrator import protection
from traderagent.orchestrator.events import EventType
from traderagent.orchestrator.risk import RiskRails
from traderagent.orchestrator.state import BotState
from traderagent.ports import StreamFill

from .helpers import SIM_KEY, TREND, build_desk
from .test_fill_stream import Streamed
from .test_protection import open_trend

LEVERED = replace(TREND, leverage=Decimal("10"))


def liquidate(sim, pos) -> dict:
    """Move the price past the position's liquidation price; returns the exchange's BustTrade row."""
    (row,) = sim.positions(SIM_KEY)
    liq = Decimal(row["liqPrice"])
    sim.set_price("BTCUSDT", liq - 100 if pos.is_long else liq + 100)
    assert sim.positions(SIM_KEY) == []
    (bust,) = [x for x in sim.executions(SIM_KEY) if x["execType"] == "BustTrade"]
    return bust


def expected_pnl(pos, bust: dict) -> Decimal:
    gross = (Decimal(bust["execPrice"]) - pos.entry_price) * pos.size * (1 if pos.is_long else -1)
    return gross - pos.fees - Decimal(bust["execFee"])


async def booked_once(h, bot, pos, bust: dict) -> None:
    await h.desk.event_bus.drain(5)
    closes = [e.data for e in h.of(EventType.TRADE_CLOSED, "btc-trend") if e.data.position_id == pos.position_id]
    assert len(closes) == 1
    close = closes[0]
    assert (close.reason, close.exit_price) == ("liquidation", Decimal(bust["execPrice"]))
    assert close.pnl == expected_pnl(pos, bust) < 0 and "liquidation" in close.summary()
    assert bot.strategy.get_active_positions() == [] and bot._wanted() is None  # no phantom position
    assert not h.of(EventType.ORDER_FAILED) and not h.of(EventType.ERROR)  # no reduce-only exit tried
    trades = [t for t in await h.db.list_trades("btc-trend", limit=100) if t.tag == pos.position_id]
    assert len(trades) == 1 and trades[0].pnl == close.pnl


@pytest.mark.parametrize("restart", [False, True], ids=["running", "restarted"])
async def test_a_liquidation_is_booked_once_and_the_bot_carries_on(sim, tmp_path, restart):
    db_path = tmp_path / "liq.db"
    h = await build_desk(sim.base_url, db_path, [LEVERED])
    try:
        bot = await open_trend(h, sim)
        (pos,) = bot.strategy.get_active_positions()
        if restart:
            await h.close()
        bust = liquidate(sim, pos)
        if restart:
            h = await build_desk(sim.base_url, db_path, [LEVERED])
            bot = h.desk.bots["btc-trend"].bot
        orders = len(sim.orders(SIM_KEY, open_only=False))
        for _ in range(3):
            await h.desk.tick_all()
        await booked_once(h, bot, pos, bust)
        assert len(sim.orders(SIM_KEY, open_only=False)) == orders  # nothing sent to close what is gone
        assert bot.state is BotState.RUNNING  # the loss is within the daily rail
    finally:
        await h.close()


async def test_a_liquidation_past_the_daily_loss_rail_pauses_the_bot(sim, tmp_path):
    rails = RiskRails(Decimal("0.01"), Decimal("5"), Decimal("0.001"))
    h = await build_desk(sim.base_url, tmp_path / "rail.db", [LEVERED], rails=rails)
    try:
        bot = await open_trend(h, sim)
        (pos,) = bot.strategy.get_active_positions()
        bust = liquidate(sim, pos)
        for _ in range(2):
            await h.desk.tick_all()
        await booked_once(h, bot, pos, bust)
        assert bot.state is BotState.PAUSED and bot.paused_by == "risk"
        (hit,) = h.of(EventType.RISK_LIMIT, "btc-trend")
        assert hit.data.rail == "max_daily_loss"
    finally:
        await h.close()


async def test_the_private_stream_books_a_liquidation_at_once(sim, tmp_path, monkeypatch):
    monkeypatch.setattr(protection, "RECONCILE_S", 3600.0)  # no reconcile: the stream alone tells
    async with aiohttp.ClientSession() as session:
        streamed = Streamed(session)
        h = await build_desk(sim.base_url, tmp_path / "stream.db", [LEVERED], start=False)
        h.desk.open_fill_stream = streamed
        await h.desk.start(schedule=False)
        try:
            await asyncio.wait_for(streamed.reconciled.get(), 30)
            bot = await open_trend(h, sim)
            (pos,) = bot.strategy.get_active_positions()
            # a part of the position auto-deleveraged (the position still open): no close of the bot's
            adl = StreamFill("adl-1", "", "o-1", "BTCUSDT", "sell" if pos.is_long else "buy", sim.price("BTCUSDT"),
                             pos.size / 2, Decimal(0), pos.size / 2, Decimal(0), 0, 0, "AdlTrade")
            assert streamed.fills is not None
            await streamed.fills.on_fill(adl)
            await streamed.fills.drain()
            assert bot.strategy.get_active_positions() == [pos] and not h.of(EventType.TRADE_CLOSED)
            closed = asyncio.Event()

            async def on_event(event) -> None:
                if event.event_type == EventType.TRADE_CLOSED:
                    closed.set()

            h.desk.event_bus.subscribe(on_event, name="closed")
            bust = liquidate(sim, pos)
            await asyncio.wait_for(closed.wait(), 30)  # no tick ran: the stream's liquidation booked it
            await booked_once(h, bot, pos, bust)
            await h.desk.tick_all()
            await booked_once(h, bot, pos, bust)
        finally:
            await h.close()
