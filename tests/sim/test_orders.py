"""Orders, validation codes, matching, balances, positions and PnL (hand-checked arithmetic)."""

from __future__ import annotations

from decimal import Decimal as D

import pytest

CREATE, CANCEL = "/v5/order/create", "/v5/order/cancel"


def lin(**kw) -> dict:
    return {"category": "linear", "symbol": "BTCUSDT", "side": "Buy", "orderType": "Limit", "qty": "0.01",
            "price": "59000"} | kw


def spot(**kw) -> dict:
    return {"category": "spot", "symbol": "BTCUSDT", "side": "Buy", "orderType": "Limit", "qty": "0.01",
            "price": "59000"} | kw


async def order(client, oid: str, category: str = "linear") -> dict:
    res = await client.ok("GET", "/v5/order/realtime", {"category": category, "orderId": oid})
    (o,) = res["list"]
    return o


async def wallet(client, coin: str = "USDT") -> dict:
    res = await client.ok("GET", "/v5/account/wallet-balance", {"accountType": "UNIFIED", "coin": coin})
    return res["list"][0]["coin"][0]


async def position(client, symbol: str = "BTCUSDT") -> dict:
    res = await client.ok("GET", "/v5/position/list", {"category": "linear", "symbol": symbol})
    return res["list"][0]


# --- validation --------------------------------------------------------------------------------------
@pytest.mark.parametrize("params, code", [
    (lin(category="futures"), 10001),
    (lin(symbol="DOGEUSDT"), 10001),
    (lin(side="buy"), 10001),
    (lin(orderType="Stop"), 10001),
    (lin(qty="0.0105"), 10001),          # not on qtyStep
    (lin(qty="0.0001"), 110017),         # truncates to zero
    (lin(qty="abc"), 10001),
    (lin(qty="1191"), 10001),            # above maxOrderQty
    (lin(orderType="Market", qty="501", price=None), 10001),  # above maxMktOrderQty
    (lin(price="59000.05"), 10001),      # not on tickSize
    (lin(price="70000"), 110003),        # buy far through the market
    (lin(price=None), 10001),            # limit without price
    (lin(qty="0.001", price="4000"), 110094),  # notional 4 < 5
    (lin(orderLinkId="x" * 37), 10001),
    (lin(orderLinkId="bad id!"), 10001),
    (lin(reduceOnly=True), 110017),      # no position
    (lin(qty="20"), 110007),             # 20 * 59000 / 10 = 118000 > 100000
    (lin(positionIdx=1), 10001),
    (lin(timeInForce="GTD"), 10001),
    (spot(symbol="DOGEUSDT"), 170121),
    (spot(side="BUY"), 170117),
    (spot(orderType="Stop"), 170116),
    (spot(timeInForce="XYZ"), 170115),
    (spot(qty="0.0000001"), 170137),     # finer than basePrecision
    (spot(qty=None), 170105),
    (spot(price="59000.01"), 170134),
    (spot(price="70000"), 170132),
    (spot(side="Sell", price="50000"), 170133),
    (spot(qty="0.00008"), 170140),       # 4.72 USDT < minOrderAmt
    (spot(orderType="Market", qty="4", price=None), 170140),  # quote amount below 5
    (spot(orderType="Market", qty="10.00000001", price=None), 170148),
    (spot(qty="84"), 170124),            # above maxLimitOrderQty
    (spot(qty="2"), 170131),             # 118000 USDT > 100000
    (spot(side="Sell", price="61000"), 170131),  # no BTC
])
async def test_create_validation_codes(client, params, code):
    params = {k: v for k, v in params.items() if v is not None}
    got, msg = await client.code("POST", CREATE, params)
    assert got == code, msg


async def test_duplicate_order_link_id(client):
    await client.ok("POST", CREATE, lin(orderLinkId="dup-1"))
    assert (await client.code("POST", CREATE, lin(orderLinkId="dup-1")))[0] == 110072
    await client.ok("POST", CREATE, spot(orderLinkId="dup-2"))
    assert (await client.code("POST", CREATE, spot(orderLinkId="dup-2")))[0] == 170141


async def test_bad_json_body_is_10001(client):
    status, body, _ = await client.post(CREATE, "{not json")
    assert body["retCode"] == 10001


# --- linear matching ---------------------------------------------------------------------------------
async def test_market_round_trip_slippage_fees_and_pnl(client, sim):
    res = await client.ok("POST", CREATE, lin(orderType="Market", price=None, orderLinkId="open-1"))
    o = await order(client, res["orderId"])
    # fills at 60000 * (1 + 0.0002) = 60012.0 (rounded up to the tick), taker fee 600.12 * 0.00055
    assert o["orderStatus"] == "Filled" and D(o["avgPrice"]) == D("60012")
    assert D(o["cumExecFee"]) == D("0.330066") and o["cumExecQty"] == "0.010"
    assert o["timeInForce"] == "IOC" and o["orderLinkId"] == "open-1"
    w = await wallet(client)
    assert D(w["walletBalance"]) == D("100000") - D("0.330066")
    assert D(w["totalPositionIM"]) == D("60.012")  # 600.12 / 10x
    pos = await position(client)
    assert (pos["side"], pos["size"], D(pos["avgPrice"]), pos["leverage"]) == ("Buy", "0.010", D("60012"), "10")
    sim.set_price("BTCUSDT", D("61000"))
    pos = await position(client)
    assert D(pos["unrealisedPnl"]) == D("9.88")  # (61000 - 60012) * 0.01
    assert D((await wallet(client))["equity"]) == D("100000") - D("0.330066") + D("9.88")
    await client.ok("POST", CREATE, lin(side="Sell", orderType="Market", price=None, reduceOnly=True))
    # closes at 61000 * 0.9998 = 60987.8: pnl 9.758, fee 609.878 * 0.00055 = 0.3354329
    pos = await position(client)
    assert pos["side"] == "" and D(pos["size"]) == 0 and pos["liqPrice"] == ""
    assert D(pos["cumRealisedPnl"]) == D("9.758") - D("0.330066") - D("0.3354329")
    w = await wallet(client)
    assert D(w["walletBalance"]) == D("100000") + D("9.758") - D("0.330066") - D("0.3354329")
    assert D(w["totalPositionIM"]) == 0
    execs = await client.ok("GET", "/v5/execution/list", {"category": "linear", "symbol": "BTCUSDT"})
    closing, opening = execs["list"]
    assert closing["execPrice"] == "60987.80" and closing["closedSize"] == "0.010" and not closing["isMaker"]
    assert opening["execPrice"] == "60012.00" and D(opening["execFee"]) == D("0.330066")
    assert opening["feeRate"] == "0.00055"


async def test_limit_rests_then_fills_as_maker_when_price_touches(client, sim):
    res = await client.ok("POST", CREATE, lin(price="59000"))
    w = await wallet(client)
    assert D(w["totalOrderIM"]) == D("59")  # 0.01 * 59000 / 10
    assert len(sim.orders("test-key")) == 1
    assert sim.set_price("BTCUSDT", D("59000.1")) == 0
    assert (await order(client, res["orderId"]))["orderStatus"] == "New"
    assert sim.set_price("BTCUSDT", D("58990")) == 1
    o = await order(client, res["orderId"])
    assert o["orderStatus"] == "Filled" and D(o["avgPrice"]) == D("59000") and D(o["cumExecFee"]) == D("0.118")
    assert sim.orders("test-key") == []
    pos = await position(client)
    assert D(pos["avgPrice"]) == D("59000") and D(pos["unrealisedPnl"]) == D("-0.1")
    w = await wallet(client)
    assert D(w["walletBalance"]) == D("100000") - D("0.118") and D(w["totalOrderIM"]) == 0
    ex = (await client.ok("GET", "/v5/execution/list", {"category": "linear"}))["list"][0]
    assert ex["isMaker"] is True and ex["feeRate"] == "0.0002"


async def test_limit_fills_on_the_candle_whose_range_crosses_it(client, sim):
    series = sim.series["ETHUSDT"]
    limit = (sim.price("ETHUSDT") * D("0.995")).quantize(D("0.01"))
    res = await client.ok("POST", CREATE, lin(symbol="ETHUSDT", qty="0.1", price=str(limit)))
    steps = 0
    while sim.orders("test-key"):  # (the harness view: polling HTTP this fast would hit 10006)
        assert steps < 3000, "the replay never reached the limit price"
        sim.step("ETHUSDT")
        steps += 1
    o = await order(client, res["orderId"])
    assert o["orderStatus"] == "Filled"
    rows = series.klines(1, None, None, steps + 1)[1:]  # the n completed candles since the order, newest first
    assert D(rows[0][3]) <= limit  # the filling candle's low touched the limit
    assert all(D(r[3]) > limit for r in rows[1:])  # no earlier candle did
    assert o["avgPrice"] == str(limit)


async def test_price_moves_within_a_candle_and_completed_candles_are_unchanged(sim):
    """Between candle closes the live candle walks its replay path; history is the same as without it."""
    from traderagent.sim import ExchangeSimulator, SimConfig

    twin = ExchangeSimulator(SimConfig(seed=1, speed=0.0, start_time_ms=sim.config.start_time_ms))
    series, other = sim.series["ETHUSDT"], twin.series["ETHUSDT"]
    assert series.klines(1, None, None, 50) == other.klines(1, None, None, 50)
    prices = set()
    for _ in range(20):
        lo_seen = hi_seen = series.live.o
        for f in (0.2, 0.4, 0.6, 0.8):
            low, high = series.advance(f)
            lo_seen, hi_seen = min(lo_seen, low), max(hi_seen, high)
            assert (series.live.l, series.live.h) == (lo_seen, hi_seen)  # the forming candle keeps its range
            assert series.live.l <= series.live.c <= series.live.h
            prices.add(series.live.c)
        assert series.advance(0.5) is None  # never backwards
        sim.step("ETHUSDT")
        other.step()
        assert series.klines(1, None, None, 2)[1] == other.klines(1, None, None, 2)[1]
    assert len(prices) > 40  # the ticker really moved between closes


async def test_a_limit_below_a_low_already_passed_does_not_fill_at_the_close(client, sim):
    """Matching at the close covers only the rest of the path, not the part walked before the order."""
    from traderagent.sim.market import _path_between

    series, tick = sim.series["ETHUSDT"], D("0.01")
    for _ in range(3000):
        row = series._future_row()
        sim.advance_all(0.5)
        rest = [series._ticks(x) for x in _path_between(row, 0.5, 1.0)]
        nxt = series._ticks(float(series.future[series.cur + 1][0]))
        floor = min(*rest, nxt)
        if series.live.l < floor - 1:
            break
        sim.step("ETHUSDT")
    else:
        pytest.fail("no candle dipped early and recovered")
    price = tick * (floor - 1)  # above the low already walked, below everything still to come
    res = await client.ok("POST", CREATE, lin(symbol="ETHUSDT", qty="0.1", price=str(price)))
    assert sim.step("ETHUSDT") == 0
    assert (await order(client, res["orderId"]))["orderStatus"] == "New"


async def test_flip_long_to_short_and_average_price(client, sim):
    await client.ok("POST", CREATE, lin(price="59000"))
    await client.ok("POST", CREATE, lin(price="58000", qty="0.03"))
    sim.set_price("BTCUSDT", D("57000"))
    pos = await position(client)
    assert pos["size"] == "0.040" and D(pos["avgPrice"]) == D("58250")  # (590 + 1740) / 0.04
    sim.set_price("BTCUSDT", D("60000"))
    await client.ok("POST", CREATE, lin(side="Sell", price="59000", qty="0.05"))  # crosses: taker at 60000
    pos = await position(client)
    assert (pos["side"], pos["size"], D(pos["avgPrice"])) == ("Sell", "0.010", D("60000"))
    fees = D("590") * D("0.0002") + D("1740") * D("0.0002") + D("3000") * D("0.00055")
    assert D(pos["cumRealisedPnl"]) == D("70") - fees  # (60000 - 58250) * 0.04
    pos_short_upl_at = D("59500")
    sim.set_price("BTCUSDT", pos_short_upl_at)
    assert D((await position(client))["unrealisedPnl"]) == D("5")  # short 0.01 gains 500 * 0.01


async def test_reduce_only_rules(client, sim):
    await client.ok("POST", CREATE, lin(orderType="Market", price=None))
    assert (await client.code("POST", CREATE, lin(orderType="Market", price=None, reduceOnly=True)))[0] == 110017
    # a reduce-only order bigger than the position closes just the position
    res = await client.ok("POST", CREATE, lin(side="Sell", orderType="Market", price=None, qty="0.05",
                                              reduceOnly=True))
    o = await order(client, res["orderId"])
    assert o["orderStatus"] == "Filled" and o["cumExecQty"] == "0.010"
    assert (await position(client))["size"] == "0.000"


async def test_close_whole_position_with_qty_zero(client):
    await client.ok("POST", CREATE, lin(orderType="Market", price=None, qty="0.02"))
    await client.ok("POST", CREATE, lin(side="Sell", orderType="Market", price=None, qty="0", reduceOnly=True,
                                        closeOnTrigger=True))
    assert (await position(client))["side"] == ""


async def test_post_only_and_ioc(client):
    res = await client.ok("POST", CREATE, lin(price="60500", timeInForce="PostOnly"))
    o = await order(client, res["orderId"])
    assert o["orderStatus"] == "Cancelled" and o["rejectReason"] == "EC_PostOnlyWillTakeLiquidity"
    res = await client.ok("POST", CREATE, lin(price="59000", timeInForce="IOC"))
    assert (await order(client, res["orderId"]))["orderStatus"] == "Cancelled"


async def test_set_leverage(client):
    body = {"category": "linear", "symbol": "BTCUSDT", "buyLeverage": "10", "sellLeverage": "10"}
    assert (await client.code("POST", "/v5/position/set-leverage", body))[0] == 110043  # unchanged
    assert (await client.code("POST", "/v5/position/set-leverage", body | {"buyLeverage": "5"}))[0] == 10001
    assert (await client.code("POST", "/v5/position/set-leverage",
                              body | {"buyLeverage": "101", "sellLeverage": "101"}))[0] == 10001
    await client.ok("POST", "/v5/position/set-leverage", body | {"buyLeverage": "2", "sellLeverage": "2"})
    await client.ok("POST", CREATE, lin(price="59000"))
    assert D((await wallet(client))["totalOrderIM"]) == D("295")  # 590 / 2
    assert (await position(client))["leverage"] == "2"


async def test_position_list_rules(client):
    flat = await position(client, "XRPUSDT")
    assert flat["side"] == "" and D(flat["size"]) == 0 and flat["openTime"] == 0 and flat["positionIdx"] == 0
    res = await client.ok("GET", "/v5/position/list", {"category": "linear", "settleCoin": "USDT"})
    assert res["list"] == []
    assert (await client.code("GET", "/v5/position/list", {"category": "spot", "symbol": "BTCUSDT"}))[0] == 10001
    assert (await client.code("GET", "/v5/position/list", {"category": "linear"}))[0] == 10001
    await client.ok("POST", CREATE, lin(symbol="XRPUSDT", qty="10", orderType="Market", price=None))
    res = await client.ok("GET", "/v5/position/list", {"category": "linear", "settleCoin": "USDT"})
    assert [p["symbol"] for p in res["list"]] == ["XRPUSDT"]
    assert isinstance(res["list"][0]["seq"], int) and isinstance(res["list"][0]["adlRankIndicator"], int)


# --- spot ----------------------------------------------------------------------------------------------
async def test_spot_lock_cancel_fill_and_fee_in_base(client, sim):
    res = await client.ok("POST", CREATE, spot(qty="0.1", price="59000"))
    assert res["orderId"].isdigit()
    w = await wallet(client)
    assert D(w["locked"]) == D("5900") and D(w["walletBalance"]) == D("100000")
    await client.ok("POST", CANCEL, {"category": "spot", "symbol": "BTCUSDT", "orderId": res["orderId"]})
    assert D((await wallet(client))["locked"]) == 0
    res = await client.ok("POST", CREATE, spot(qty="0.1", price="59000"))
    sim.set_price("BTCUSDT", D("58000"))
    o = await order(client, res["orderId"], "spot")
    assert o["orderStatus"] == "Filled" and o["cumFeeDetail"] == {"BTC": "0.00002"}  # 0.1 * 0.0002 in BTC
    assert "createType" not in o and o["isLeverage"] == "0"
    assert D((await wallet(client))["walletBalance"]) == D("94100")
    assert sim.balance("test-key")["BTC"] == D("0.09998")
    # sell it back at market: fee is in USDT
    await client.ok("POST", CREATE, spot(side="Sell", orderType="Market", qty="0.09998", price=None))
    proceeds = D("0.09998") * D("57988.40")  # 58000 * 0.9998 = 57988.4
    assert sim.balance("test-key")["USDT"] == D("94100") + proceeds - proceeds * D("0.00055")
    assert sim.balance("test-key")["BTC"] == 0
    ex = (await client.ok("GET", "/v5/execution/list", {"category": "spot"}))["list"][0]
    assert ex["feeCurrency"] == "USDT"


async def test_spot_market_buy_in_quote_and_base_units(client, sim):
    sim.set_price("BTCUSDT", D("50000"))
    await client.ok("POST", CREATE, spot(orderType="Market", qty="1000", price=None))  # default: quote coin
    # 1000 / 50010 = 0.019996 BTC (rounded down to basePrecision), fee 0.00055 of it in BTC
    assert sim.balance("test-key")["BTC"] == D("0.019996") * (1 - D("0.00055"))
    assert sim.balance("test-key")["USDT"] == D("100000") - D("0.019996") * D("50010")
    res = await client.ok("POST", CREATE, spot(orderType="Market", qty="0.01", price=None, marketUnit="baseCoin"))
    o = await order(client, res["orderId"], "spot")
    assert o["marketUnit"] == "baseCoin" and D(o["cumExecQty"]) == D("0.01") and D(o["avgPrice"]) == D("50010")


# --- cancel / lists ------------------------------------------------------------------------------------
async def test_cancel_codes_and_cancel_all(client):
    a = await client.ok("POST", CREATE, lin(price="59000", orderLinkId="l-a"))
    await client.ok("POST", CREATE, lin(price="58000"))
    await client.ok("POST", CREATE, lin(symbol="ETHUSDT", qty="1", price="2900"))
    res = await client.ok("POST", CANCEL, {"category": "linear", "symbol": "BTCUSDT", "orderLinkId": "l-a"})
    assert res == {"orderId": a["orderId"], "orderLinkId": "l-a"}
    assert (await client.code("POST", CANCEL, {"category": "linear", "symbol": "BTCUSDT",
                                               "orderId": a["orderId"]}))[0] == 110001  # already cancelled
    assert (await client.code("POST", CANCEL, {"category": "linear", "symbol": "BTCUSDT",
                                               "orderId": "nope"}))[0] == 110001
    assert (await client.code("POST", CANCEL, {"category": "spot", "symbol": "BTCUSDT",
                                               "orderId": "123"}))[0] == 170213
    assert (await client.code("POST", CANCEL, {"category": "linear", "symbol": "BTCUSDT"}))[0] == 10001
    assert (await client.code("POST", "/v5/order/cancel-all", {"category": "linear"}))[0] == 10001
    res = await client.ok("POST", "/v5/order/cancel-all", {"category": "linear", "symbol": "BTCUSDT"})
    assert len(res["list"]) == 1 and res["success"] == "1"
    res = await client.ok("POST", "/v5/order/cancel-all", {"category": "linear", "settleCoin": "USDT"})
    assert len(res["list"]) == 1
    res = await client.ok("POST", "/v5/order/cancel-all", {"category": "linear", "settleCoin": "USDT"})
    assert res["list"] == []


async def test_realtime_history_and_executions_paginate_newest_first(client, sim):
    ids = []
    for i in range(5):
        ids.append((await client.ok("POST", CREATE, lin(price=str(55000 + i), orderLinkId=f"p-{i}")))["orderId"])
    seen, cursor = [], ""
    while True:
        q = "category=linear&symbol=BTCUSDT&limit=2" + (f"&cursor={cursor}" if cursor else "")
        status, body, _ = await client.get("/v5/order/realtime", q)
        assert body["retCode"] == 0, body
        seen += [o["orderId"] for o in body["result"]["list"]]
        cursor = body["result"]["nextPageCursor"]
        if not cursor:
            break
    assert seen == ids[::-1]
    assert (await client.code("GET", "/v5/order/realtime", {"category": "linear"}))[0] == 10001
    await client.ok("POST", CANCEL, {"category": "linear", "symbol": "BTCUSDT", "orderId": ids[0]})
    sim.set_price("BTCUSDT", D("55003"))  # fills p-3 and p-4
    res = await client.ok("GET", "/v5/order/realtime", {"category": "linear", "settleCoin": "USDT"})
    assert [o["orderLinkId"] for o in res["list"]] == ["p-2", "p-1"]
    res = await client.ok("GET", "/v5/order/realtime", {"category": "linear", "symbol": "BTCUSDT", "openOnly": "1"})
    assert [o["orderStatus"] for o in res["list"]] == ["Filled", "Filled", "Cancelled"]
    # a closed order is still found by id on realtime, and on history
    assert (await order(client, ids[0]))["orderStatus"] == "Cancelled"
    hist = await client.ok("GET", "/v5/order/history", {"category": "linear", "orderStatus": "Filled"})
    assert [o["orderLinkId"] for o in hist["list"]] == ["p-4", "p-3"]
    hist = await client.ok("GET", "/v5/order/history", {"category": "linear", "limit": "3"})
    assert len(hist["list"]) == 3 and hist["nextPageCursor"]
    ex = await client.ok("GET", "/v5/execution/list", {"category": "linear", "limit": "1"})
    assert ex["list"][0]["orderLinkId"] in ("p-3", "p-4") and ex["nextPageCursor"]
    status, body, _ = await client.get("/v5/execution/list",
                                       f"category=linear&limit=1&cursor={ex['nextPageCursor']}")
    assert body["result"]["list"][0]["execId"] != ex["list"][0]["execId"]
    assert body["result"]["nextPageCursor"] == ""


async def test_harness_views(client, sim):
    await client.ok("POST", CREATE, lin(price="59000", orderLinkId="h-1"))
    (o,) = sim.orders("test-key")
    assert o["orderLinkId"] == "h-1" and o["category"] == "linear"
    assert sim.orders("test-key", symbol="ETHUSDT") == []
    await client.ok("POST", CREATE, lin(orderType="Market", price=None))
    (p,) = sim.positions("test-key")
    assert p["symbol"] == "BTCUSDT" and p["size"] == "0.010"
    assert len(sim.executions("test-key")) == 1
    assert sim.available("test-key") < sim.balance("test-key")["USDT"]
    assert len(sim.orders(open_only=False)) == 2
