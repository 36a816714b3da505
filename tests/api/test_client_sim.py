"""Every public method over HTTP against the exchange simulator (fixtures `sim`, `sim_url`)."""

from __future__ import annotations

import asyncio
import time
from decimal import Decimal as D

import pytest

from tests.conftest import SIM_KEY, SIM_SECRET
from traderagent.api import bybit_direct_client as mod
from traderagent.api import exceptions as ex
from traderagent.api.bybit_direct_client import ByBitDirectClient
from traderagent.api.markets import klines_to_frame

FAST = {"backoff_base": 0.01, "backoff_max": 0.05}


def _link(o: dict) -> str:
    return o.get("orderLinkId") or o.get("order_link_id") or o.get("client_order_id") or ""


def _book(sim) -> list[dict]:
    return list(sim.orders(api_key=SIM_KEY))


# ------------------------------------------------------------------ markets / market data
async def test_markets_linear(linear):
    m = await linear.fetch_markets()
    assert {"BTCUSDT", "ETHUSDT", "XRPUSDT", "SOLUSDT"} <= set(m)
    btc, xrp = m["BTCUSDT"], m["XRPUSDT"]
    assert (btc["qty_step"], btc["tick_size"], btc["min_qty"], btc["min_notional"]) == (
        D("0.001"), D("0.10"), D("0.001"), D("5"))
    assert (xrp["qty_step"], xrp["tick_size"], xrp["min_qty"]) == (D("1"), D("0.0001"), D("1"))
    assert btc["market_type"] == "linear" and btc["base"] == "BTC" and btc["quote"] == "USDT"


async def test_markets_spot_use_base_precision(spot):
    m = await spot.fetch_markets()
    btc = m["BTCUSDT"]
    assert btc["market_type"] == "spot" and btc["min_notional"] > 0 and btc["qty_step"] > 0


@pytest.mark.parametrize("symbol", ["BTC/USDT", "BTCUSDT", "BTC/USDT:USDT"])
async def test_ticker_linear(sim, linear, symbol):
    sim.set_price("BTCUSDT", D("50000"))
    t = await linear.fetch_ticker(symbol)
    assert t["symbol"] == "BTCUSDT" and t["last"] == D("50000")
    for k in ("last", "bid", "ask", "high", "low", "volume", "mark"):
        assert isinstance(t[k], D)
    assert t["bid"] <= t["ask"] and isinstance(t["timestamp"], int)


async def test_ticker_spot(sim, spot):
    sim.set_price("ETHUSDT", D("3000"))
    t = await spot.fetch_ticker("ETH/USDT")
    assert t["last"] == D("3000") and "mark" not in t


async def test_klines_oldest_first_and_paginated(linear):
    rows = await linear.fetch_klines("BTC/USDT", "1m", limit=1500)
    assert len(rows) == 1500
    ts = [r[0] for r in rows]
    assert ts == sorted(ts) and len(set(ts)) == 1500
    assert all(b - a == 60_000 for a, b in zip(ts, ts[1:], strict=False))
    assert all(isinstance(x, D) for x in rows[-1][1:]) and isinstance(rows[0][0], int)
    df = klines_to_frame(rows)
    assert len(df) == 1500 and str(df.index.tz) == "UTC" and (df["high"] >= df["low"]).all()
    hourly = await linear.fetch_klines("BTCUSDT", "1h", limit=50)
    assert len(hourly) == 50 and hourly[1][0] - hourly[0][0] == 3_600_000


async def test_balance(linear):
    bal = await linear.fetch_balance()
    assert bal["total"]["USDT"] == D("100000") and bal["free"]["USDT"] == D("100000")
    assert bal["used"]["USDT"] == D("0")


# ------------------------------------------------------------------ order lifecycle
async def test_limit_order_lifecycle(sim, linear):
    sim.set_price("BTCUSDT", D("50000"))
    o = await linear.create_limit_order("BTC/USDT", "buy", D("0.0019"), D("40000.17"))
    assert o["status"] == "open" and o["amount"] == D("0.001") and o["price"] == D("40000.10")
    assert o["client_order_id"] and len(o["client_order_id"]) <= 36 and o["id"]
    book = _book(sim)
    assert [_link(b) for b in book] == [o["client_order_id"]]
    opens = await linear.fetch_open_orders("BTCUSDT")
    assert [x["id"] for x in opens] == [o["id"]] and opens[0]["status"] == "open"
    assert [x["id"] for x in await linear.fetch_open_orders()] == [o["id"]]
    by_id = await linear.fetch_order("BTCUSDT", order_id=o["id"])
    by_link = await linear.fetch_order("BTC/USDT", client_order_id=o["client_order_id"])
    assert by_id["client_order_id"] == by_link["client_order_id"] == o["client_order_id"]
    assert by_id["price"] == D("40000.10") and by_id["amount"] == D("0.001") and by_id["side"] == "buy"
    cancelled = await linear.cancel_order(o["id"], "BTCUSDT")
    assert cancelled["status"] == "cancelled" and cancelled["id"] == o["id"]
    assert await linear.fetch_open_orders("BTCUSDT") == []
    after = await linear.fetch_order("BTCUSDT", order_id=o["id"])
    assert after is not None and after["status"] == "cancelled"
    assert await linear.fetch_order("BTCUSDT", client_order_id="never-existed") is None


async def test_cancel_unknown_order(linear):
    with pytest.raises(ex.OrderNotFoundError) as info:
        await linear.cancel_order("00000000-0000-0000-0000-000000000000", "BTCUSDT")
    assert info.value.ret_code == 110001 and info.value.endpoint == "/v5/order/cancel"


async def test_cancel_by_client_order_id_and_cancel_all(sim, linear):
    sim.set_price("BTCUSDT", D("50000"))
    a = await linear.create_limit_order("BTCUSDT", "buy", D("0.001"), D("40000"), client_order_id="mine-1")
    b = await linear.create_limit_order("BTCUSDT", "sell", D("0.001"), D("60000"))
    c = await linear.cancel_order(None, "BTCUSDT", client_order_id="mine-1")
    assert c["status"] == "cancelled" and c["id"] == a["id"]
    assert await linear.cancel_all_orders("BTC/USDT") == [b["id"]]
    assert await linear.fetch_open_orders() == []


async def test_rounding_step_one_and_tick_0001(sim, linear):
    sim.set_price("XRPUSDT", D("0.6"))
    o = await linear.create_limit_order("XRP/USDT", "buy", D("12.7"), D("0.51237"))
    assert o["amount"] == D("12") and o["price"] == D("0.5123")
    seen = await linear.fetch_order("XRPUSDT", order_id=o["id"])
    assert seen["amount"] == D("12") and seen["price"] == D("0.5123")
    assert linear.amount_to_precision("XRP/USDT", "12.99") == D("12")
    assert linear.price_to_precision("BTCUSDT", D("50000.19")) == D("50000.10")


@pytest.mark.parametrize(("symbol", "amount", "price", "limit"), [
    ("BTCUSDT", D("0.0004"), D("50000"), "qty_step"),    # rounds to zero on 0.001
    ("SOLUSDT", D("0.05"), D("150"), "qty_step"),        # rounds to zero on 0.1
    ("XRPUSDT", D("0.9"), D("0.5"), "qty_step"),         # rounds to zero on 1
    ("BTCUSDT", D("0.001"), D("4000"), "min_notional"),  # 4 USDT < 5
    ("XRPUSDT", D("5"), D("0.5"), "min_notional"),       # 2.5 USDT < 5
    ("ETHUSDT", D("0.01"), D("0.001"), "tick_size"),     # price rounds to zero on 0.01
])
async def test_refused_before_sending(sim, linear, symbol, amount, price, limit):
    before = linear.get_statistics()["requests"]
    with pytest.raises(ex.InvalidOrderError, match=limit) as info:
        await linear.create_limit_order(symbol, "buy", amount, price)
    assert info.value.ret_code is None  # our own refusal, not the exchange's
    assert linear.get_statistics()["requests"] == before  # nothing left the client
    assert _book(sim) == []


async def test_min_qty_refusal_on_non_round_step(sim, sim_url):
    client = ByBitDirectClient(SIM_KEY, SIM_SECRET, base_url=sim_url, **FAST)
    await client.initialize()
    try:
        m = client.market("BTCUSDT")
        # a market whose min_qty exceeds one step: patch the loaded rules, as ByBit often has min > step
        client._markets["BTCUSDT"] = type(m)(**{**m.as_dict(), "min_qty": D("0.005")})
        before = client.get_statistics()["requests"]
        with pytest.raises(ex.InvalidOrderError, match=r"amount 0.004 is below min_qty 0.005"):
            await client.create_limit_order("BTCUSDT", "buy", D("0.0049"), D("50000"))
        assert client.get_statistics()["requests"] == before and _book(sim) == []
    finally:
        await client.close()


async def test_market_order_position_trades_leverage(sim, linear):
    sim.set_price("BTCUSDT", D("50000"))
    assert await linear.set_leverage("BTC/USDT", 5) == D("5")
    assert await linear.set_leverage("BTCUSDT", 5) == D("5")  # 110043 "not modified" is success
    o = await linear.create_market_order("BTC/USDT", "buy", D("0.0105"))
    assert o["amount"] == D("0.010") and o["type"] == "market" and o["price"] is None
    got = await _wait_status(linear, "BTCUSDT", o["id"], "filled")
    assert got["filled"] == D("0.010") and got["avg_price"] > 0 and got["fee"] > 0
    pos = await linear.fetch_positions("BTC/USDT")
    assert len(pos) == 1 and pos[0]["side"] == "long" and pos[0]["size"] == D("0.010")
    assert pos[0]["leverage"] == D("5") and pos[0]["entry_price"] > 0
    assert [p["symbol"] for p in await linear.fetch_positions()] == ["BTCUSDT"]
    trades = await linear.fetch_my_trades("BTCUSDT")
    assert len(trades) >= 1 and trades[0]["order_id"] == o["id"] and trades[0]["side"] == "buy"
    assert sum(t["amount"] for t in trades) == D("0.010")
    close = await linear.create_market_order("BTCUSDT", "sell", D("0.01"), reduce_only=True)
    assert close["reduce_only"] is True
    await _wait_status(linear, "BTCUSDT", close["id"], "filled")
    assert await linear.fetch_positions("BTCUSDT") == []


async def test_market_order_checks_the_notional_at_a_given_price_without_a_ticker_request(sim, linear):
    sim.set_price("BTCUSDT", D("50000"))
    tickers = sim.request_counts["/v5/market/tickers"]
    with pytest.raises(ex.InvalidOrderError, match="min_notional"):  # 0.001 x 4000 = 4 USDT < 5
        await linear.create_market_order("BTCUSDT", "buy", D("0.001"), reference_price=D("4000"))
    o = await linear.create_market_order("BTCUSDT", "buy", D("0.001"), reference_price=D("50000"))
    await _wait_status(linear, "BTCUSDT", o["id"], "filled")
    assert sim.request_counts["/v5/market/tickers"] == tickers
    await linear.create_market_order("BTCUSDT", "sell", D("0.001"), reduce_only=True)  # no price: one is fetched
    assert sim.request_counts["/v5/market/tickers"] == tickers + 1


async def test_reduce_only_without_position_is_invalid_order(sim, linear):
    sim.set_price("BTCUSDT", D("50000"))
    with pytest.raises(ex.InvalidOrderError) as info:
        await linear.create_market_order("BTCUSDT", "sell", D("0.001"), reduce_only=True)
    assert info.value.ret_code == 110017


async def test_limit_fill_on_price_move(sim, linear):
    sim.set_price("ETHUSDT", D("3000"))
    o = await linear.create_limit_order("ETH/USDT", "buy", D("0.1"), D("2900"))
    sim.set_price("ETHUSDT", D("2890"))
    got = await _wait_status(linear, "ETHUSDT", o["id"], "filled")
    assert got["filled"] == D("0.1") and got["avg_price"] == D("2900")


async def test_insufficient_funds(sim, linear):
    sim.set_price("BTCUSDT", D("50000"))
    await linear.set_leverage("BTCUSDT", 1)
    with pytest.raises(ex.InsufficientFundsError) as info:
        await linear.create_limit_order("BTCUSDT", "buy", D("10"), D("49000"))  # 490k at 1x > 100k
    assert info.value.ret_code == 110007


async def test_duplicate_client_order_id_on_first_send(sim, linear):
    sim.set_price("BTCUSDT", D("50000"))
    await linear.create_limit_order("BTCUSDT", "buy", D("0.001"), D("40000"), client_order_id="dup-1")
    with pytest.raises(ex.DuplicateOrderError) as info:
        await linear.create_limit_order("BTCUSDT", "buy", D("0.001"), D("40000"), client_order_id="dup-1")
    assert info.value.ret_code == 110072 and len(_book(sim)) == 1


async def test_spot_orders(sim, spot):
    sim.set_price("BTCUSDT", D("50000"))
    m = spot.market("BTC/USDT")
    o = await spot.create_limit_order("BTC/USDT", "buy", D("0.0012345678"), D("40000.123"))
    assert o["amount"] == D("0.0012345678") - D("0.0012345678") % m.qty_step
    assert o["price"] == spot.price_to_precision("BTCUSDT", D("40000.123"))
    assert (await spot.cancel_order(o["id"], "BTCUSDT"))["status"] == "cancelled"
    mkt = await spot.create_market_order("BTCUSDT", "buy", D("0.01"))
    got = await _wait_status(spot, "BTCUSDT", mkt["id"], "filled")
    assert got["filled"] == D("0.01")  # base units: marketUnit=baseCoin was sent
    bal = await spot.fetch_balance()
    assert bal["total"]["BTC"] > D("0.0099")
    assert await spot.fetch_positions() == []
    with pytest.raises(ex.InvalidOrderError, match="min_notional"):
        await spot.create_limit_order("BTCUSDT", "buy", D("0.00002"), D("50000"))


async def _wait_status(client, symbol, order_id, status, timeout=5.0):
    deadline = time.monotonic() + timeout
    while True:
        got = await client.fetch_order(symbol, order_id=order_id)
        if got and got["status"] == status:
            return got
        if time.monotonic() > deadline:
            raise AssertionError(f"order {order_id} never reached {status}: {got}")
        await asyncio.sleep(0.05)


# ------------------------------------------------------------------ faults: retries without duplicates
async def test_injected_errors_and_rate_limits_never_duplicate(sim, sim_url):
    sim.set_price("BTCUSDT", D("50000"))
    client = ByBitDirectClient(SIM_KEY, SIM_SECRET, base_url=sim_url, max_retries=25, **FAST)
    await client.initialize()
    try:
        sim.faults.error_rate = 0.15
        sim.faults.ratelimit_rate = 0.1
        orders = await asyncio.gather(*(
            client.create_limit_order("BTCUSDT", "buy", D("0.001"), D("40000") + i) for i in range(20)))
        sim.faults.error_rate = sim.faults.ratelimit_rate = 0.0
        links = [_link(o) for o in _book(sim)]
        assert len(links) == 20 and len(set(links)) == 20
        assert {o["client_order_id"] for o in orders} == set(links)
        stats = client.get_statistics()
        assert stats["retries"] > 0 and sum(stats["errors"].values()) > 0
    finally:
        await client.close()


async def test_create_timeout_then_lookup_makes_exactly_one_order(sim, sim_url):
    sim.set_price("BTCUSDT", D("50000"))
    client = ByBitDirectClient(SIM_KEY, SIM_SECRET, base_url=sim_url, timeout=0.5, max_retries=10, **FAST)
    await client.initialize()
    try:
        sim.faults.timeout_seconds = 1.0
        sim.faults.timeout_rate = 1.0
        task = asyncio.create_task(
            client.create_limit_order("BTCUSDT", "buy", D("0.001"), D("40000"), client_order_id="once-only"))
        await asyncio.sleep(0.7)  # the first create (at least) has timed out on our side
        sim.faults.timeout_rate = 0.0
        order = await task
        await asyncio.sleep(1.2)  # let any delayed request finish on the server
        book = [o for o in _book(sim) if _link(o) == "once-only"]
        assert len(book) == 1 and len(_book(sim)) == 1
        assert order["client_order_id"] == "once-only"
        found = await client.fetch_order("BTCUSDT", client_order_id="once-only")
        assert found["id"] == order["id"]
        assert client.get_statistics()["errors"].get("NetworkError", 0) >= 1
    finally:
        await client.close()


# ------------------------------------------------------------------ clock
_real_time = time.time


class _SkewedTime:
    """The client's view of `time` only (the simulator keeps the real clock)."""

    monotonic = staticmethod(time.monotonic)
    perf_counter = staticmethod(time.perf_counter)

    def __init__(self, skew_s: float) -> None:
        self.skew = skew_s

    def time(self) -> float:
        return _real_time() + self.skew


@pytest.mark.parametrize("skew", [30.0, -30.0, 2.0])
async def test_skewed_client_clock_is_corrected(sim, sim_url, monkeypatch, skew):
    monkeypatch.setattr(mod, "time", _SkewedTime(skew))
    client = ByBitDirectClient(SIM_KEY, SIM_SECRET, base_url=sim_url, **FAST)
    await client.initialize()
    try:
        assert abs(client.time_offset_ms + skew * 1000) < 1000
        assert (await client.fetch_balance())["total"]["USDT"] == D("100000")
        assert "InvalidTimestampError" not in client.get_statistics()["errors"]
    finally:
        await client.close()


async def test_clock_jump_after_init_resyncs_on_10002(sim, sim_url, monkeypatch):
    fake = _SkewedTime(0.0)
    monkeypatch.setattr(mod, "time", fake)
    client = ByBitDirectClient(SIM_KEY, SIM_SECRET, base_url=sim_url, **FAST)
    await client.initialize()
    try:
        fake.skew = 60.0  # the local clock jumps a minute ahead
        assert (await client.fetch_balance())["total"]["USDT"] == D("100000")
        assert client.get_statistics()["errors"]["InvalidTimestampError"] == 1
    finally:
        await client.close()


async def test_wrong_key_is_authentication_error(sim_url):
    client = ByBitDirectClient("nobody", "nothing", base_url=sim_url, **FAST)
    try:
        with pytest.raises(ex.AuthenticationError) as info:
            await client.fetch_balance()
        assert info.value.ret_code == 10003 and "nothing" not in str(info.value)
        bad_secret = ByBitDirectClient(SIM_KEY, "wrong-secret", base_url=sim_url, **FAST)
        with pytest.raises(ex.AuthenticationError) as info:
            await bad_secret.fetch_balance()
        assert info.value.ret_code == 10004 and "wrong-secret" not in str(info.value)
        assert SIM_KEY not in str(info.value)
        await bad_secret.close()
    finally:
        await client.close()


async def test_statistics(linear):
    await linear.fetch_ticker("BTCUSDT")
    await linear.fetch_balance()
    s = linear.get_statistics()
    assert s["requests"] >= 4 and s["errors"] == {} and s["retries"] == 0
    assert s["latency_ms"]["mean"] > 0 and s["latency_ms"]["p95"] >= s["latency_ms"]["mean"] * 0.5
    assert set(s) == {"requests", "errors", "retries", "rate_limit_waits", "latency_ms"}


async def test_context_manager(sim_url):
    async with ByBitDirectClient(SIM_KEY, SIM_SECRET, base_url=sim_url) as client:
        assert "BTCUSDT" in await client.fetch_markets()
    assert client._session is None


async def test_open_orders_follow_the_cursor(sim, linear):
    sim.set_price("ETHUSDT", D("3000"))
    made = []
    for i in range(55):  # more than one 50-row page; paced by the client's 10/s order limiter
        made.append(await linear.create_limit_order("ETHUSDT", "buy", D("0.01"), D("2000") + i))
    opens = await linear.fetch_open_orders("ETH/USDT")
    assert sorted(o["id"] for o in opens) == sorted(o["id"] for o in made)
    assert linear.get_statistics()["errors"] == {}  # the limiter kept us inside the sim's 10/s


_ORDER = {"symbol": "BTCUSDT", "side": "Buy", "orderType": "Limit"}


@pytest.mark.parametrize(("path", "body", "code", "cls"), [
    ("/v5/order/create", {"category": "linear", **_ORDER, "qty": "0.001", "price": "4000"}, 110094,
     ex.InvalidOrderError),
    ("/v5/order/create", {"category": "spot", **_ORDER, "qty": "0.00002", "price": "50000"}, 170140,
     ex.InvalidOrderError),
    ("/v5/order/create", {"category": "linear", **_ORDER, "qty": "0.001", "price": "40000.05"}, 10001,
     ex.InvalidOrderError),
    ("/v5/order/cancel", {"category": "spot", "symbol": "BTCUSDT", "orderId": "123"}, 170213,
     ex.OrderNotFoundError),
    ("/v5/position/set-leverage", {"category": "linear", "symbol": "BTCUSDT", "buyLeverage": "10",
                                   "sellLeverage": "10"}, 110043, ex.InvalidOrderError),
])
async def test_sim_retcodes_through_the_raw_path(sim, linear, path, body, code, cls):
    """Codes our pre-validation normally prevents, sent raw to check the mapping end to end."""
    sim.set_price("BTCUSDT", D("50000"))
    with pytest.raises(cls) as info:
        await linear._request("POST", path, body)
    assert info.value.ret_code == code and info.value.endpoint == path


async def test_sim_http_5xx_fault_is_network_error(sim, sim_url):
    client = ByBitDirectClient(SIM_KEY, SIM_SECRET, base_url=sim_url, max_retries=1, **FAST)
    await client.initialize()
    try:
        sim.faults.error_rate = 1.0
        with pytest.raises(ex.NetworkError):
            await client.fetch_balance()
        sim.faults.error_rate = 0.0
        sim.faults.ratelimit_rate = 1.0
        with pytest.raises(ex.RateLimitError) as info:
            await client.fetch_balance()
        assert info.value.ret_code == 10006
        assert client.get_statistics()["retries"] == 2
    finally:
        sim.faults.error_rate = sim.faults.ratelimit_rate = 0.0
        await client.close()
