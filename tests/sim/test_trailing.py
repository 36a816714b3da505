"""The simulator's trailing stop (trading-stop ``trailingStop`` + ``activePrice``) as ByBit documents it:
a distance in price from the best last price since it armed; pybit sets one (an oracle: not our client)."""

from __future__ import annotations

import asyncio
from decimal import Decimal as D

from tests.conftest import SIM_KEY
from tests.sim.helpers import SignedClient, pybit_session
from tests.sim.test_protection import STOP, long_btc, position, stop_orders, tpsl


def trailing(orders: list[dict]) -> dict:
    (o,) = [o for o in orders if o["stopOrderType"] == "TrailingStop"]
    return o


def stop_at(orders: list[dict]) -> D:
    return D(trailing(orders)["triggerPrice"])


async def test_a_trailing_stop_follows_the_peak_and_executes_at_peak_minus_distance(client, sim):  # noqa: F811
    await long_btc(client, sim)  # at 60000
    await client.ok("POST", STOP, tpsl(trailingStop="500"))
    assert (await position(client))["trailingStop"] == "500"
    o = trailing(await stop_orders(client))
    assert (o["orderStatus"], o["side"], D(o["triggerPrice"]), o["triggerDirection"]) == ("Untriggered", "Sell", 59500, 2)
    sim.set_price("BTCUSDT", D("61000"))  # a new peak moves the stop up...
    assert stop_at(await stop_orders(client)) == 60500
    sim.set_price("BTCUSDT", D("60600"))  # ...a fall above it does not move it down
    assert stop_at(await stop_orders(client)) == 60500
    assert sim.positions(SIM_KEY)
    sim.set_price("BTCUSDT", D("60000"))  # a jump through it: market sell of the whole position at the market
    assert sim.positions(SIM_KEY) == []
    (fill,) = [x for x in sim.executions(SIM_KEY) if x["stopOrderType"] == "TrailingStop"]
    assert (fill["createType"], fill["side"], D(fill["execQty"])) == ("CreateByTrailingStop", "Sell", D("0.01"))
    assert D(fill["execPrice"]) == (D("60000") * (1 - sim.config.slippage)).quantize(D("0.10"), rounding="ROUND_FLOOR")
    assert await stop_orders(client) == []


async def test_a_range_through_the_trailing_stop_fills_at_the_stop(client, sim):  # noqa: F811
    await long_btc(client, sim)
    await client.ok("POST", STOP, tpsl(trailingStop="500"))
    sim.engine.match("BTCUSDT", D("59000"), D("62000"))  # its low reached the stop before the high moved it
    (fill,) = sim.executions(SIM_KEY)[:1]
    assert D(fill["execPrice"]) == (D("59500") * (1 - sim.config.slippage)).quantize(D("0.10"), rounding="ROUND_FLOOR")


async def test_an_activation_price_arms_the_trailing_stop_only_once_reached(client, sim):  # noqa: F811
    await long_btc(client, sim)
    code, msg = await client.code("POST", STOP, tpsl(trailingStop="500", activePrice="59000"))
    assert code == 10001 and "should be higher" in msg  # a long's activation price is above the price
    await client.ok("POST", STOP, tpsl(trailingStop="500", activePrice="61000"))
    assert stop_at(await stop_orders(client)) == 61000  # the activation price, until armed
    sim.set_price("BTCUSDT", D("59000"))  # below 59500, but not armed: nothing happens
    assert sim.positions(SIM_KEY)
    sim.set_price("BTCUSDT", D("61200"))  # armed; the peak so far is 61200
    assert stop_at(await stop_orders(client)) == 60700
    assert (await client.code("POST", STOP, tpsl(trailingStop="500")))[0] == 34040  # not modified
    await client.ok("POST", STOP, tpsl(trailingStop="0"))  # "0" cancels it
    assert await stop_orders(client) == [] and (await position(client))["trailingStop"] == "0.00"


async def test_pybit_sets_a_trailing_stop(sim_url, sim, client):  # noqa: F811
    await long_btc(client, sim)
    s = pybit_session(sim_url)
    ok = await asyncio.to_thread(s.set_trading_stop, category="linear", symbol="BTCUSDT", tpslMode="Full",
                                 positionIdx=0, trailingStop="300", activePrice="60100")
    assert ok["retCode"] == 0 and ok["result"] == {}
    rows = await asyncio.to_thread(s.get_open_orders, category="linear", symbol="BTCUSDT", orderFilter="StopOrder")
    (o,) = rows["result"]["list"]
    assert (o["stopOrderType"], o["triggerPrice"]) == ("TrailingStop", "60100")
    pos = (await asyncio.to_thread(s.get_positions, category="linear", symbol="BTCUSDT"))["result"]["list"][0]
    assert pos["trailingStop"] == "300"


async def test_a_trailing_stop_and_the_transaction_log_survive_a_simulator_restart(tmp_path, sim, client):  # noqa: F811
    from traderagent.sim import ExchangeSimulator, SimConfig

    await long_btc(client, sim)
    await client.ok("POST", STOP, tpsl(trailingStop="500"))
    sim.set_price("BTCUSDT", D("61000"))
    log = (await client.ok("GET", "/v5/account/transaction-log", {}))["list"]
    sim.keep_state(tmp_path / "state.json")
    sim.save_state()
    again = ExchangeSimulator(SimConfig(seed=1, speed=0.0))
    again.add_account(SIM_KEY, "test-secret")
    again.keep_state(tmp_path / "state.json")
    assert again.positions(SIM_KEY)[0]["trailingStop"] == "500"
    url = await again.start()
    try:
        async with SignedClient(url) as c:
            assert (await c.ok("GET", "/v5/account/transaction-log", {}))["list"] == log
            assert stop_at(await stop_orders(c)) == 60500  # the peak it had reached
        assert again.set_price("BTCUSDT", D("60400")) == 1
        assert again.positions(SIM_KEY) == []
    finally:
        await again.stop()
