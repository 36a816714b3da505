"""The client's perpetual-futures calls over HTTP against the simulator: position mode, risk fields of a
position, funding apart from trades (from the transaction log), liquidations."""

from __future__ import annotations

from decimal import Decimal as D

from tests.conftest import SIM_KEY
from tests.sim.helpers import SignedClient


async def test_position_mode_one_way_then_hedge(sim_url, linear):
    assert await linear.position_mode("BTCUSDT") == "one-way"
    async with SignedClient(sim_url) as raw:  # the operator switches the account in ByBit's settings
        await raw.ok("POST", "/v5/position/switch-mode", {"category": "linear", "symbol": "BTCUSDT", "mode": 3})
    assert await linear.position_mode("BTC/USDT") == "hedge"
    assert await linear.position_mode("ETHUSDT") == "one-way"


async def test_position_shows_liquidation_mark_and_margin(sim, linear):
    sim.set_price("BTCUSDT", D("50000"))
    await linear.set_leverage("BTCUSDT", 10)
    await linear.create_market_order("BTCUSDT", "sell", D("0.1"))
    (pos,) = await linear.fetch_positions("BTCUSDT")
    assert pos["side"] == "short" and pos["position_idx"] == 0
    assert pos["mark_price"] == D("50000")
    entry = pos["entry_price"]
    assert pos["liq_price"] == (entry * (1 + D("0.1") - D("0.005")) / D("0.1")).to_integral_value() * D("0.1")
    assert pos["margin"] == entry * D("0.1") / 10
    assert pos["maintenance_margin"] == entry * D("0.1") * D("0.005")


async def test_funding_apart_from_trades(sim, linear):
    sim.set_price("BTCUSDT", D("50000"))
    await linear.create_market_order("BTCUSDT", "buy", D("0.1"))
    sim.charge_funding("BTCUSDT")
    sim.charge_funding("BTCUSDT")
    trades = await linear.fetch_my_trades("BTCUSDT")
    assert len(trades) == 1 and trades[0]["amount"] == D("0.1")  # execType=Trade: no funding row
    funding = await linear.fetch_funding("BTCUSDT")
    assert len(funding) == 2 and len({f["id"] for f in funding}) == 2
    assert all(f["fee"] == D("0.5") and f["rate"] == D("0.0001") for f in funding)  # 0.1 x 50000 x 0.0001
    log = (await linear._request("GET", "/v5/account/transaction-log", {"type": "SETTLEMENT"}))["list"]
    assert {f["id"] for f in funding} == {r["id"] for r in log}  # the transaction log's ids: one source
    later = max(f["timestamp"] for f in funding)
    assert await linear.fetch_funding("BTCUSDT", later) == [f for f in funding if f["timestamp"] >= later]
    assert await linear.fetch_funding("ETHUSDT") == []


async def test_liquidations_one_per_order_with_price_and_side(sim, linear):
    sim.set_price("BTCUSDT", D("50000"))
    await linear.set_leverage("BTCUSDT", 10)
    await linear.create_market_order("BTCUSDT", "buy", D("0.1"))
    assert await linear.fetch_liquidations("BTCUSDT") == []
    (pos,) = await linear.fetch_positions("BTCUSDT")
    sim.set_price("BTCUSDT", pos["liq_price"] - 10)
    (liq,) = await linear.fetch_liquidations("BTC/USDT")
    (bust,) = [x for x in sim.executions(SIM_KEY) if x["execType"] == "BustTrade"]
    assert liq == {"id": bust["orderId"], "exec_type": "BustTrade", "side": "sell", "qty": D("0.1"), "fee": D(0),
                   "timestamp": int(bust["execTime"]), "avg_price": D(bust["execPrice"])}
    assert await linear.fetch_liquidations("BTCUSDT", liq["timestamp"] + 1) == []
    assert await linear.fetch_my_trades("BTCUSDT") and all(t["id"] != bust["execId"]
                                                           for t in await linear.fetch_my_trades("BTCUSDT"))


async def test_funding_of_every_symbol_in_one_read_and_the_next_settlement_in_the_ticker(sim, linear):
    sim.set_price("BTCUSDT", D("50000"))
    await linear.create_market_order("BTCUSDT", "buy", D("0.1"))
    await linear.create_market_order("ETHUSDT", "sell", D("1"))
    sim.charge_funding("BTCUSDT")
    sim.charge_funding("ETHUSDT")
    asked = sim.request_counts["/v5/account/transaction-log"]
    funding = await linear.fetch_funding(None)
    assert sim.request_counts["/v5/account/transaction-log"] - asked == 1
    assert sorted(f["symbol"] for f in funding) == ["BTCUSDT", "ETHUSDT"]
    each = [*await linear.fetch_funding("BTCUSDT"), *await linear.fetch_funding("ETHUSDT")]
    assert sorted(funding, key=lambda f: f["id"]) == sorted(each, key=lambda f: f["id"])
    assert (await linear.fetch_ticker("BTCUSDT"))["next_funding"] == sim.next_funding["BTCUSDT"]
