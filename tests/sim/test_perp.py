"""Perpetual-futures mechanics over HTTP: position mode and positionIdx, leverage as margin, funding rows,
liquidation at the bankruptcy price (hand-checked arithmetic)."""

from __future__ import annotations

from decimal import Decimal as D

from tests.conftest import SIM_KEY

CREATE, MODE, LEVERAGE = "/v5/order/create", "/v5/position/switch-mode", "/v5/position/set-leverage"


def market(side: str = "Buy", qty: str = "0.1", **kw) -> dict:
    return {"category": "linear", "symbol": "BTCUSDT", "side": side, "orderType": "Market", "qty": qty} | kw


async def rows(client, symbol: str = "BTCUSDT") -> list[dict]:
    res = await client.ok("GET", "/v5/position/list", {"category": "linear", "symbol": symbol})
    return res["list"]


async def executions(client, **kw) -> list[dict]:
    res = await client.ok("GET", "/v5/execution/list", {"category": "linear", "symbol": "BTCUSDT"} | kw)
    return res["list"]


async def usdt(client) -> D:
    res = await client.ok("GET", "/v5/account/wallet-balance", {"accountType": "UNIFIED", "coin": "USDT"})
    return D(res["list"][0]["coin"][0]["walletBalance"])


# --- position mode -------------------------------------------------------------------------------
async def test_one_way_is_the_default_and_refuses_hedge_indexes(client):
    (row,) = await rows(client)
    assert row["positionIdx"] == 0 and row["side"] == ""
    assert (await client.code("POST", CREATE, market(positionIdx=1)))[0] == 10001
    assert await client.code("POST", MODE, {"category": "linear", "symbol": "BTCUSDT", "mode": 0}) == \
        (110025, "Position mode has not been modified")


async def test_hedge_mode_needs_index_and_keeps_two_sides(client, sim):
    await client.ok("POST", MODE, {"category": "linear", "symbol": "BTCUSDT", "mode": 3})
    assert [r["positionIdx"] for r in await rows(client)] == [1, 2]
    code, msg = await client.code("POST", CREATE, market(positionIdx=0))
    assert (code, msg) == (10001, "position idx not match position mode")
    assert (await client.code("POST", CREATE, market()))[0] == 10001  # no index at all
    await client.ok("POST", CREATE, market("Buy", "0.1", positionIdx=1))
    await client.ok("POST", CREATE, market("Sell", "0.2", positionIdx=2))
    long, short = await rows(client)
    assert (long["side"], long["size"], short["side"], short["size"]) == ("Buy", "0.100", "Sell", "0.200")
    await client.ok("POST", CREATE, market("Sell", "0.1", positionIdx=1))  # against its side: reduces it
    long, short = await rows(client)
    assert long["size"] == "0.000" and short["size"] == "0.200"
    # a position, then an open order, block switching back
    code, _ = await client.code("POST", MODE, {"category": "linear", "symbol": "BTCUSDT", "mode": 0})
    assert code == 110024
    await client.ok("POST", CREATE, market("Buy", "0.2", positionIdx=2))
    price = str((sim.price("BTCUSDT") * D("0.95")).quantize(D("0.1")))
    await client.ok("POST", CREATE, market("Buy", "0.1", positionIdx=1, orderType="Limit", price=price))
    assert (await client.code("POST", MODE, {"category": "linear", "coin": "USDT", "mode": 0}))[0] == 110028


# --- leverage ------------------------------------------------------------------------------------
async def test_leverage_sets_the_margin_and_not_modified_is_110043(client, sim):
    body = {"category": "linear", "symbol": "BTCUSDT", "buyLeverage": "5", "sellLeverage": "5"}
    await client.ok("POST", LEVERAGE, body)
    assert (await client.code("POST", LEVERAGE, body))[0] == 110043
    await client.ok("POST", CREATE, market())
    (row,) = await rows(client)
    assert row["leverage"] == "5"
    assert D(row["positionIM"]) == D(row["positionValue"]) / 5


# --- funding -------------------------------------------------------------------------------------
async def test_funding_every_eight_hours_is_a_funding_row_and_hits_the_wallet(client, sim):
    await client.ok("POST", CREATE, market("Buy", "0.1"))
    before = await usdt(client)
    due = sim.next_funding["BTCUSDT"]
    steps = 0
    while sim.series["BTCUSDT"].live.ts < due:
        sim.step("BTCUSDT")
        steps += 1
    assert steps <= 480
    (row,) = await executions(client, execType="Funding")
    mark = D(row["markPrice"])
    fee = (D("0.1") * mark * D("0.0001"))
    assert D(row["execFee"]) == fee.normalize() and row["side"] == "Buy"
    assert row["orderType"] == "UNKNOWN" and D(row["execQty"]) == D("0.1")
    assert await usdt(client) == before - fee
    trades = await executions(client, execType="Trade")
    assert trades and all(r["execType"] == "Trade" for r in trades)
    assert sim.next_funding["BTCUSDT"] == due + 8 * 3_600_000


async def test_short_receives_positive_funding(client, sim):
    await client.ok("POST", CREATE, market("Sell", "0.1"))
    before = await usdt(client)
    assert sim.charge_funding("BTCUSDT") == 1
    (row,) = await executions(client, execType="Funding")
    assert D(row["execFee"]) < 0 and await usdt(client) == before - D(row["execFee"])


# --- liquidation ---------------------------------------------------------------------------------
async def test_liquidation_takes_the_position_over_at_bankruptcy_price(client, sim):
    await client.ok("POST", LEVERAGE, {"category": "linear", "symbol": "BTCUSDT", "buyLeverage": "50",
                                       "sellLeverage": "50"})
    await client.ok("POST", CREATE, market("Buy", "0.1"))
    (row,) = await rows(client)
    entry, liq, im = D(row["avgPrice"]), D(row["liqPrice"]), D(row["positionIM"])
    assert entry * D("0.97") < liq < entry
    wallet = await usdt(client)
    sim.set_price("BTCUSDT", liq + 50)  # not yet
    assert (await rows(client))[0]["size"] == "0.100"
    sim.set_price("BTCUSDT", liq - 1)
    (row,) = await rows(client)
    assert row["size"] == "0.000" and row["side"] == ""
    bust = next(r for r in await executions(client) if r["execType"] == "BustTrade")
    assert bust["side"] == "Sell" and bust["createType"] == "CreateByLiq" and D(bust["execQty"]) == D("0.1")
    bust_px = (entry * (1 - D(1) / 50) / D("0.1")).to_integral_value() * D("0.1")
    assert D(bust["execPrice"]) == bust_px
    assert abs(await usdt(client) - (wallet - im)) < D("0.1")  # the margin is lost, within a tick's rounding
    assert sim.positions(SIM_KEY) == []
