"""Exchange-held protection in the simulator: trading-stop, conditional orders, execution on trigger."""

from __future__ import annotations

import asyncio
from decimal import Decimal as D

import pytest

from tests.sim.helpers import SignedClient

CREATE, STOP = "/v5/order/create", "/v5/position/trading-stop"


async def long_btc(client, sim, qty: str = "0.01") -> None:
    sim.set_price("BTCUSDT", D("60000"))
    await client.ok("POST", CREATE, {"category": "linear", "symbol": "BTCUSDT", "side": "Buy", "orderType": "Market",
                                     "qty": qty, "positionIdx": 0})


def tpsl(**kw) -> dict:
    return {"category": "linear", "symbol": "BTCUSDT", "tpslMode": "Full", "positionIdx": 0} | kw


async def position(client) -> dict:
    res = await client.ok("GET", "/v5/position/list", {"category": "linear", "symbol": "BTCUSDT"})
    return res["list"][0]


async def stop_orders(client, category: str = "linear") -> list[dict]:
    res = await client.ok("GET", "/v5/order/realtime", {"category": category, "symbol": "BTCUSDT",
                                                         "orderFilter": "StopOrder"})
    return res["list"]


async def test_trading_stop_is_held_as_untriggered_orders_and_shown_on_the_position(client, sim):
    await long_btc(client, sim)
    assert await client.ok("POST", STOP, tpsl(stopLoss="58000", takeProfit="63000", slTriggerBy="MarkPrice")) == {}
    pos = await position(client)
    assert (pos["stopLoss"], pos["takeProfit"], pos["tpslMode"]) == ("58000", "63000", "Full")
    held = {o["stopOrderType"]: o for o in await stop_orders(client)}
    assert set(held) == {"StopLoss", "TakeProfit"}
    sl = held["StopLoss"]
    assert (sl["orderStatus"], sl["side"], sl["triggerPrice"], sl["triggerBy"], sl["triggerDirection"],
            sl["reduceOnly"], sl["closeOnTrigger"]) == ("Untriggered", "Sell", "58000", "MarkPrice", 2, True, True)
    assert held["TakeProfit"]["triggerDirection"] == 1
    only_active = await client.ok("GET", "/v5/order/realtime", {"category": "linear", "symbol": "BTCUSDT",
                                                                "orderFilter": "Order"})
    assert only_active["list"] == []
    # the same values again: not modified; "0" cancels one side
    assert (await client.code("POST", STOP, tpsl(stopLoss="58000", takeProfit="63000",
                                                   slTriggerBy="MarkPrice")))[0] == 34040
    await client.ok("POST", STOP, tpsl(takeProfit="0"))
    assert [o["stopOrderType"] for o in await stop_orders(client)] == ["StopLoss"]
    assert (await position(client))["takeProfit"] == "0.00"


async def test_trading_stop_refusals(client, sim):
    assert (await client.code("POST", STOP, tpsl(stopLoss="58000")))[0] == 10001  # no position
    await long_btc(client, sim)
    code, msg = await client.code("POST", STOP, tpsl(stopLoss="61000"))  # a long's stop above the price
    assert code == 10001 and "should be lower" in msg
    assert (await client.code("POST", STOP, tpsl(stopLoss="58000", positionIdx=1)))[0] == 10001
    assert (await client.code("POST", STOP, tpsl(category="spot", stopLoss="58000")))[0] == 10001
    assert (await client.code("POST", STOP, tpsl(stopLoss="58000.05")))[0] == 10001  # off the tick


async def test_a_refused_trading_stop_changes_nothing(client, sim):
    """A request with one bad level is refused whole: the valid level beside it is not set either."""
    await long_btc(client, sim)
    await client.ok("POST", STOP, tpsl(stopLoss="58000", takeProfit="63000"))
    code, msg = await client.code("POST", STOP, tpsl(takeProfit="64000", stopLoss="61000"))  # the stop is wrong
    assert code == 10001 and "StopLoss" in msg
    code, _ = await client.code("POST", STOP, tpsl(trailingStop="500", activePrice="59000", takeProfit="64000"))
    assert code == 10001
    pos = await position(client)
    assert (pos["stopLoss"], pos["takeProfit"], pos["trailingStop"]) == ("58000", "63000", "0.00")
    assert sorted(o["triggerPrice"] for o in await stop_orders(client)) == ["58000", "63000"]


async def test_a_stop_executes_at_market_once_the_price_crosses_it(client, sim):
    await long_btc(client, sim)
    await client.ok("POST", STOP, tpsl(stopLoss="58000", takeProfit="63000"))
    sim.set_price("BTCUSDT", D("59000"))
    assert (await position(client))["size"] == "0.010"  # not reached yet
    assert sim.set_price("BTCUSDT", D("57990")) == 1  # a jump through the stop: filled at the market then
    pos = await position(client)
    assert (pos["size"], pos["stopLoss"], pos["takeProfit"]) == ("0.000", "0.00", "0.00")
    hist = await client.ok("GET", "/v5/order/history", {"category": "linear", "symbol": "BTCUSDT"})
    by_type = {o["stopOrderType"]: o for o in hist["list"]}
    sl, tp = by_type["StopLoss"], by_type["TakeProfit"]
    assert (sl["orderStatus"], sl["orderType"], sl["createType"], sl["cumExecQty"]) == \
        ("Filled", "Market", "CreateByStopLoss", "0.010")
    slip = sim.config.slippage
    assert D(sl["avgPrice"]) == (D("57990") * (1 - slip)).quantize(D("0.10"), rounding="ROUND_FLOOR")
    assert (tp["orderStatus"], tp["cancelType"]) == ("Deactivated", "CancelByTpSlTsClear")
    fills = await client.ok("GET", "/v5/execution/list", {"category": "linear", "symbol": "BTCUSDT"})
    assert (fills["list"][0]["stopOrderType"], fills["list"][0]["createType"]) == ("StopLoss", "CreateByStopLoss")
    assert await stop_orders(client) == []


async def test_a_candle_through_the_stop_fills_at_the_stop_not_at_the_low(client, sim):
    await long_btc(client, sim)
    await client.ok("POST", STOP, tpsl(stopLoss="59000"))
    sim.engine.match("BTCUSDT", D("58000"), D("60000"))  # a candle's range that contains the stop
    fill = sim.executions("test-key")[0]
    assert D(fill["execPrice"]) == (D("59000") * (1 - sim.config.slippage)).quantize(D("0.10"), rounding="ROUND_FLOOR")


async def test_a_desk_exit_clears_the_position_stops(client, sim):
    await long_btc(client, sim)
    await client.ok("POST", STOP, tpsl(stopLoss="58000"))
    await client.ok("POST", CREATE, {"category": "linear", "symbol": "BTCUSDT", "side": "Sell", "orderType": "Market",
                                     "qty": "0.01", "reduceOnly": True, "positionIdx": 0})
    assert await stop_orders(client) == []
    assert sim.set_price("BTCUSDT", D("50000")) == 0


async def test_spot_conditional_sell_triggers_on_the_fall_and_can_be_deactivated(client, sim):
    sim.set_price("BTCUSDT", D("60000"))
    await client.ok("POST", CREATE, {"category": "spot", "symbol": "BTCUSDT", "side": "Buy", "orderType": "Market",
                                     "qty": "0.02", "marketUnit": "baseCoin"})
    stop = await client.ok("POST", CREATE, {"category": "spot", "symbol": "BTCUSDT", "side": "Sell",
                                            "orderType": "Market", "qty": "0.01", "triggerPrice": "58000",
                                            "orderFilter": "StopOrder", "orderLinkId": "sl-1"})
    other = await client.ok("POST", CREATE, {"category": "spot", "symbol": "BTCUSDT", "side": "Sell",
                                             "orderType": "Market", "qty": "0.005", "triggerPrice": "65000",
                                             "orderFilter": "tpslOrder"})
    assert {o["orderLinkId"] for o in await stop_orders(client, "spot")} == {"sl-1"}
    res = await client.ok("GET", "/v5/order/realtime", {"category": "spot", "symbol": "BTCUSDT",
                                                        "orderFilter": "tpslOrder"})
    assert [(o["stopOrderType"], o["triggerDirection"]) for o in res["list"]] == [("tpslOrder", 1)]
    await client.ok("POST", "/v5/order/cancel", {"category": "spot", "symbol": "BTCUSDT",
                                                 "orderId": other["orderId"]})
    sim.set_price("BTCUSDT", D("57000"))
    hist = await client.ok("GET", "/v5/order/history", {"category": "spot", "symbol": "BTCUSDT"})
    by_id = {o["orderId"]: o for o in hist["list"]}
    assert by_id[other["orderId"]]["orderStatus"] == "Deactivated"
    done = by_id[stop["orderId"]]
    assert (done["orderStatus"], done["stopOrderType"], done["cumExecQty"]) == ("Filled", "Stop", "0.010000")


async def test_linear_conditional_order_checks_its_direction(client, sim):
    sim.set_price("BTCUSDT", D("60000"))
    body = {"category": "linear", "symbol": "BTCUSDT", "side": "Buy", "orderType": "Market", "qty": "0.01",
            "triggerPrice": "59000", "triggerDirection": 1, "positionIdx": 0}
    assert (await client.code("POST", CREATE, body))[0] == 110092
    assert (await client.code("POST", CREATE, body | {"triggerDirection": 2, "triggerPrice": "61000"}))[0] == 110093
    await client.ok("POST", CREATE, body | {"triggerPrice": "61000"})
    sim.set_price("BTCUSDT", D("61500"))
    assert sim.positions("test-key")[0]["size"] == "0.010"


async def test_untriggered_stops_survive_a_simulator_restart(tmp_path, sim):
    from traderagent.sim import ExchangeSimulator, SimConfig

    async with SignedClient(sim.base_url) as client:
        await long_btc(client, sim)
        await client.ok("POST", STOP, tpsl(stopLoss="58000"))
    sim.keep_state(tmp_path / "state.json")
    sim.save_state()
    again = ExchangeSimulator(SimConfig(seed=1, speed=0.0))
    again.add_account("test-key", "test-secret")
    again.keep_state(tmp_path / "state.json")
    assert again.positions("test-key")[0]["stopLoss"] == "58000"
    assert again.set_price("BTCUSDT", D("57000")) == 1
    assert again.positions("test-key") == []


async def test_pybit_sets_a_trading_stop(sim_url, sim):
    """Oracle: pybit's own HTTP client talks to the simulator's trading-stop."""
    from pybit.unified_trading import HTTP  # the test extra

    s = HTTP(testnet=False, api_key="test-key", api_secret="test-secret", max_retries=1, retry_delay=0,
                        timeout=5)
    s.endpoint = sim_url
    async with SignedClient(sim_url) as client:
        await long_btc(client, sim)
    res = await asyncio.to_thread(s.set_trading_stop, category="linear", symbol="BTCUSDT", stopLoss="58000",
                                  takeProfit="64000", slTriggerBy="MarkPrice", tpTriggerBy="LastPrice",
                                  tpslMode="Full", positionIdx=0)
    assert res["retCode"] == 0 and res["result"] == {}
    pos = await asyncio.to_thread(s.get_positions, category="linear", symbol="BTCUSDT")
    assert (pos["result"]["list"][0]["stopLoss"], pos["result"]["list"][0]["takeProfit"]) == ("58000", "64000")
    orders = await asyncio.to_thread(s.get_open_orders, category="linear", symbol="BTCUSDT", orderFilter="StopOrder")
    assert sorted(o["stopOrderType"] for o in orders["result"]["list"]) == ["StopLoss", "TakeProfit"]


@pytest.mark.parametrize(("candle", "gap"), [((D("59800"), D("60100"), D("58500")), False),
                                             ((D("58000"), D("58200"), D("57900")), True)], ids=["wick", "gap"])
async def test_the_backtest_fills_an_exchange_held_stop_as_the_simulator_executes_it(client, sim, candle, gap):
    """Backtest parity: ``check_exits`` on the candle + the backtester's market slippage give the simulator's
    fill of the same trading-stop (to the tick the exchange rounds to)."""
    from traderagent.backtest.fills import FillModel
    from traderagent.strategies.book import PositionBook
    from traderagent.strategies.types import BaseSignal, SignalDirection

    class Book(PositionBook):
        strategy_type = "parity"

    open_, high, low = candle
    await long_btc(client, sim)
    await client.ok("POST", STOP, tpsl(stopLoss="59000"))
    if gap:  # the market jumped to the open, below the stop
        sim.set_price("BTCUSDT", open_)
    else:  # the candle's path went through the stop
        sim.engine.match("BTCUSDT", low, high)
    on_exchange = D(sim.executions("test-key")[0]["execPrice"])

    book = Book()
    signal = BaseSignal(SignalDirection.LONG, D("60000"), D("59000"), None, D("0.01"), 1.0, None, "parity")
    book.open_position(signal, D("0.01"), D("60000"))
    (hit,) = book.check_exits(low, high=high, low=low, open_=open_)
    fm = FillModel(taker_fee=sim.config.taker_fee, maker_fee=sim.config.maker_fee, slippage=sim.config.slippage)
    backtest = fm.slipped("sell", hit.exit_price)
    assert on_exchange == backtest.quantize(D("0.10"), rounding="ROUND_FLOOR")


async def test_a_range_reaching_both_stop_and_target_executes_the_stop(client, sim):
    await long_btc(client, sim)
    await client.ok("POST", STOP, tpsl(stopLoss="59000", takeProfit="61000"))
    assert sim.engine.match("BTCUSDT", D("58000"), D("62000")) == 1
    hist = await client.ok("GET", "/v5/order/history", {"category": "linear", "symbol": "BTCUSDT"})
    by_type = {o["stopOrderType"]: o["orderStatus"] for o in hist["list"]}
    assert by_type == {"StopLoss": "Filled", "TakeProfit": "Deactivated", "UNKNOWN": "Filled"}
