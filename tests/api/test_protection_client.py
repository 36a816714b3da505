"""The client's exchange-held protection methods over HTTP against the simulator."""

from __future__ import annotations

from decimal import Decimal as D

import pytest

from traderagent.api import exceptions as ex
from traderagent.ports import HeldStops


async def test_trading_stop_set_read_moved_and_executed(linear, sim):
    sim.set_price("BTCUSDT", D("60000"))
    assert await linear.fetch_held_stops("BTCUSDT") is None
    await linear.create_market_order("BTCUSDT", "sell", D("0.01"))
    await linear.set_trading_stop("BTCUSDT", stop_loss=D("61000"), take_profit=D("58000.07"))  # rounded to tick
    assert await linear.fetch_held_stops("BTCUSDT") == HeldStops("short", D("0.01"), D("61000"), D("58000"))
    await linear.set_trading_stop("BTCUSDT", stop_loss=D("61000"), take_profit=D("58000"))  # 34040: success
    await linear.set_trading_stop("BTCUSDT", stop_loss=D("60500"), take_profit=None)  # trailed; target removed
    assert await linear.fetch_held_stops("BTCUSDT") == HeldStops("short", D("0.01"), D("60500"), None)
    with pytest.raises(ex.InvalidOrderError):  # a short's stop below the price
        await linear.set_trading_stop("BTCUSDT", stop_loss=D("59000"), take_profit=None)
    assert await linear.fetch_stop_executions("BTCUSDT") == []
    sim.set_price("BTCUSDT", D("60600"))
    assert await linear.fetch_held_stops("BTCUSDT") is None
    (done,) = await linear.fetch_stop_executions("BTCUSDT")
    assert (done["stop_order_type"], done["side"], done["filled"], done["status"]) == ("StopLoss", "buy", D("0.01"),
                                                                                     "filled")
    # the price jumped past the trigger: a market order at the price then (60600), slipped 0.02 % up to the tick
    assert done["avg_price"] == D("60612.20")


async def test_spot_conditional_sell_is_held_and_executes(spot, sim):
    sim.set_price("BTCUSDT", D("60000"))
    await spot.create_market_order("BTCUSDT", "buy", D("0.01"))
    placed = await spot.create_conditional_order("BTCUSDT", "sell", D("0.009"), D("59000"), client_order_id="pbot-s1")
    assert placed["client_order_id"] == "pbot-s1"
    (held,) = await spot.fetch_open_orders("BTCUSDT")
    assert (held["client_order_id"], held["status"]) == ("pbot-s1", "open")
    sim.set_price("BTCUSDT", D("58900"))
    (done,) = await spot.fetch_stop_executions("BTCUSDT")
    assert (done["client_order_id"], done["stop_order_type"], done["filled"]) == ("pbot-s1", "Stop", D("0.009"))
    assert await spot.fetch_held_stops("BTCUSDT") is None  # spot has no position to hold a stop on
    with pytest.raises(ex.InvalidOrderError):
        await spot.set_trading_stop("BTCUSDT", stop_loss=D("1"), take_profit=None)
