"""The simulator's transaction log (/v5/account/transaction-log, UTA) read by pybit (an oracle: not our
client), and a liquidation as ByBit makes it: the symbol's active orders cancelled first, its TP/SL cleared,
its fill pushed on the private stream."""

from __future__ import annotations

import asyncio
from decimal import Decimal as D

import pytest
from pybit.exceptions import InvalidRequestError

from tests.conftest import SIM_KEY
from tests.sim.helpers import SignedClient, pybit_session

CREATE, LEVERAGE = "/v5/order/create", "/v5/position/set-leverage"


def market(side: str = "Buy", qty: str = "0.1") -> dict:
    return {"category": "linear", "symbol": "BTCUSDT", "side": side, "orderType": "Market", "qty": qty}


async def log(s, **kw) -> list[dict]:
    res = await asyncio.to_thread(s.get_transaction_log, accountType="UNIFIED", category="linear", **kw)
    return res["result"]["list"]


async def test_pybit_reads_trades_funding_and_liquidation_with_bybit_signs(sim_url, sim):
    s = pybit_session(sim_url)
    async with SignedClient(sim_url) as c:
        await c.ok("POST", LEVERAGE, {"category": "linear", "symbol": "BTCUSDT", "buyLeverage": "50",
                                      "sellLeverage": "50"})
        await c.ok("POST", CREATE, market("Buy", "0.1"))
        assert sim.charge_funding("BTCUSDT") == 1
        (pos,) = (await c.ok("GET", "/v5/position/list", {"category": "linear", "symbol": "BTCUSDT"}))["list"]
    wallet = sim.balance(SIM_KEY)["USDT"]
    sim.set_price("BTCUSDT", D(pos["liqPrice"]) - 1)
    liquidation, settlement, trade = await log(s)  # newest first
    assert [r["type"] for r in (trade, settlement, liquidation)] == ["TRADE", "SETTLEMENT", "LIQUIDATION"]
    assert (trade["side"], D(trade["qty"]), D(trade["size"]), D(trade["cashFlow"])) == ("Buy", D("0.1"), D("0.1"), 0)
    assert D(trade["change"]) == -D(trade["fee"]) and D(trade["fee"]) > 0
    funding_fee = next(x for x in sim.executions(SIM_KEY) if x["execType"] == "Funding")["execFee"]
    assert D(settlement["funding"]) == -D(funding_fee) < 0  # > 0 received: a long pays a positive rate
    assert D(settlement["change"]) == D(settlement["funding"]) and D(settlement["cashBalance"]) == wallet
    assert D(liquidation["size"]) == 0 and D(liquidation["cashFlow"]) < 0 and D(liquidation["fee"]) == 0
    assert D(liquidation["cashBalance"]) == sim.balance(SIM_KEY)["USDT"] == wallet + D(liquidation["change"])
    assert len({r["id"] for r in (trade, settlement, liquidation)}) == 3
    (only,) = await log(s, type="SETTLEMENT")
    assert only == settlement
    first = await asyncio.to_thread(s.get_transaction_log, accountType="UNIFIED", limit=2)
    assert [r["id"] for r in first["result"]["list"]] == [liquidation["id"], settlement["id"]]
    rest = await log(s, cursor=first["result"]["nextPageCursor"])
    assert [r["id"] for r in rest] == [trade["id"]]
    t = int(trade["transactionTime"])
    assert await log(s, startTime=t - 2 * 86_400_000) == []  # startTime alone: 24 h from it
    with pytest.raises(InvalidRequestError) as info:
        await log(s, startTime=t - 8 * 86_400_000, endTime=t)
    assert info.value.status_code == 10001


async def test_a_liquidation_clears_the_positions_stop_and_is_pushed_as_a_fill(sim_url, sim):
    pushed = []
    sim.engine.on_change = lambda acct, o, ex: pushed.append((o.create_type, ex and ex.exec_type))
    async with SignedClient(sim_url) as c:
        await c.ok("POST", CREATE, market("Buy", "0.1"))
        (pos,) = (await c.ok("GET", "/v5/position/list", {"category": "linear", "symbol": "BTCUSDT"}))["list"]
        await c.ok("POST", "/v5/position/trading-stop", {"category": "linear", "symbol": "BTCUSDT", "tpslMode": "Full",
                                                         "positionIdx": 0, "stopLoss": str(D(pos["liqPrice"]) - 100)})
        await c.ok("POST", CREATE, market("Sell", "0.05") | {"orderType": "Limit", "price": str(D(pos["avgPrice"]) * 2),
                                                             "orderLinkId": "resting"})
        sim.set_price("BTCUSDT", D(pos["liqPrice"]) - 200)  # past both: the liquidation comes first
        orders = (await c.ok("GET", "/v5/order/history", {"category": "linear", "symbol": "BTCUSDT"}))["list"]
    stop = next(o for o in orders if o["stopOrderType"] == "StopLoss")
    assert (stop["orderStatus"], stop["cancelType"]) == ("Deactivated", "CancelByTpSlTsClear")
    resting = next(o for o in orders if o["orderLinkId"] == "resting")  # active orders go first, as ByBit does
    assert (resting["orderStatus"], resting["cancelType"]) == ("Cancelled", "CancelAllBeforeLiq")
    assert pushed[-1] == ("CreateByLiq", "BustTrade")
    assert sim.positions(SIM_KEY) == []
