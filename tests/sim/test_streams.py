"""The simulator's V5 WebSocket endpoints, spoken to with raw frames (no traderagent.api) and by pybit."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import queue
import threading
import time
from decimal import Decimal

import aiohttp
import pytest

from tests.conftest import SIM_KEY, SIM_SECRET
from tests.sim.helpers import SignedClient


async def off_loop(call, *args, **kwargs):
    """A blocking pybit call on a daemon thread, bounded: pybit's subscribe waits for its socket with no
    end, and a thread stuck in the loop's default executor (asyncio.to_thread) hangs the test run at
    teardown instead of failing the test."""
    loop = asyncio.get_running_loop()
    done = loop.create_future()

    def settle(set_outcome, value) -> None:
        if not done.done():
            set_outcome(value)

    def run() -> None:
        try:
            result = call(*args, **kwargs)
        except BaseException as exc:  # noqa: BLE001 -- handed to the awaiting test
            loop.call_soon_threadsafe(settle, done.set_exception, exc)
        else:
            loop.call_soon_threadsafe(settle, done.set_result, result)

    threading.Thread(target=run, daemon=True).start()
    return await asyncio.wait_for(done, 60)


def ack_safe(ws):
    """pybit sends a subscribe, then records its req_id and the topic's callback; on loopback the
    simulator's acknowledgement and first push can beat that bookkeeping and kill pybit's reader with a
    KeyError (remote ByBit is never that fast). Record the req_id first; the reader waits for the callback."""
    app_send, set_callback, get_callback = ws.ws.send, ws._set_callback, ws._get_callback
    known = threading.Condition()

    def send(data, *args, **kwargs):
        msg = json.loads(data)
        if msg.get("op") == "subscribe" and msg.get("req_id"):
            ws.subscriptions[msg["req_id"]] = data
        return app_send(data, *args, **kwargs)

    def set_cb(topic, callback):
        with known:
            set_callback(topic, callback)
            known.notify_all()

    def get_cb(topic):
        with known:
            known.wait_for(lambda: topic in ws.callback_directory, timeout=30)
        return get_callback(topic)

    ws.ws.send, ws._set_callback, ws._get_callback = send, set_cb, get_cb
    return ws


def auth_args(secret: str = SIM_SECRET, expires: int | str | None = None) -> list:
    expires = expires if expires is not None else int(time.time() * 1000) + 10_000
    return [SIM_KEY, expires, hmac.new(secret.encode(), f"GET/realtime{expires}".encode(), hashlib.sha256).hexdigest()]


class Raw:
    def __init__(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        self.ws = ws

    async def ask(self, msg: dict) -> dict:
        await self.ws.send_str(json.dumps(msg))
        return await self.next()

    async def next(self, topic: str | None = None) -> dict:
        while True:
            data = json.loads((await self.ws.receive(timeout=30)).data)
            if topic is None or data.get("topic") == topic:
                return data


@pytest.fixture
async def connect(sim_url):
    session = aiohttp.ClientSession()
    ws_base = sim_url.replace("http", "ws")

    async def open_(path: str) -> Raw:
        return Raw(await session.ws_connect(ws_base + path))
    yield open_
    await session.close()


async def test_private_auth_ping_subscribe_shapes(connect):
    ws = await connect("/v5/private")
    ok = await ws.ask({"req_id": "a1", "op": "auth", "args": auth_args()})
    assert ok["success"] is True and ok["op"] == "auth" and ok["ret_msg"] == "" and ok["req_id"] == "a1"
    assert ok["conn_id"]
    pong = await ws.ask({"req_id": "p", "op": "ping"})
    assert pong["op"] == "pong" and pong["req_id"] == "p" and pong["args"][0].isdigit()
    sub = await ws.ask({"req_id": "s", "op": "subscribe", "args": ["order", "execution", "position", "wallet"]})
    assert sub == {"success": True, "ret_msg": "", "op": "subscribe", "conn_id": ok["conn_id"], "req_id": "s"}
    bad = await ws.ask({"req_id": "dcp.future", "op": "subscribe", "args": ["dcp.future"]})
    assert bad["success"] is False and bad["ret_msg"] == "error:handler not found,topic:dcp.future"


@pytest.mark.parametrize("args", [
    auth_args(secret="wrong"),  # bad signature
    auth_args(expires=int(time.time() * 1000) - 1000),  # expires already past (a lagging clock)
    ["nobody", 9999999999999, "00"],
])
async def test_private_auth_failure_is_params_error(connect, args):
    ws = await connect("/v5/private")
    reply = await ws.ask({"op": "auth", "args": args})
    assert reply["success"] is False and reply["ret_msg"] == "Params Error" and reply["op"] == "auth"
    refused = await ws.ask({"op": "subscribe", "args": ["execution"]})
    assert refused["success"] is False


async def test_auth_accepts_expires_as_string_like_ccxt(connect):
    ws = await connect("/v5/private")
    expires = str(int(time.time() * 1000) + 10_000)
    assert (await ws.ask({"op": "auth", "args": auth_args(expires=expires)}))["success"] is True


async def test_public_pong_and_subscribe_shapes(connect):
    linear, spot = await connect("/v5/public/linear"), await connect("/v5/public/spot")
    pong = await linear.ask({"req_id": "1", "op": "ping"})
    assert pong["ret_msg"] == "pong" and pong["op"] == "ping" and pong["req_id"] == "1"
    assert "req_id" not in await spot.ask({"op": "ping"})
    sub = await spot.ask({"op": "subscribe", "args": ["kline.1.BTCUSDT"]})
    assert sub["success"] is True and sub["ret_msg"] == "subscribe"


async def test_fill_pushes_order_execution_position_wallet(connect, sim):
    ws = await connect("/v5/private")
    await ws.ask({"op": "auth", "args": auth_args()})
    await ws.ask({"op": "subscribe", "args": ["order", "execution", "position", "wallet"]})
    async with SignedClient(sim.base_url) as http:
        await http.post("/v5/order/create", {"category": "linear", "symbol": "BTCUSDT", "side": "Buy",
                                             "orderType": "Limit", "qty": "0.01", "price": "1000",
                                             "orderLinkId": "ws-1"})
    new = await ws.next("order")
    assert new["data"][0]["orderStatus"] == "New" and isinstance(new["creationTime"], int)
    sim.fill(SIM_KEY, "ws-1")
    execution = (await ws.next("execution"))["data"][0]
    assert execution["orderLinkId"] == "ws-1" and Decimal(execution["execQty"]) == Decimal("0.01") and execution["leavesQty"] == "0"
    assert execution["execType"] == "Trade" and isinstance(execution["seq"], int)
    assert (await ws.next("position"))["data"][0]["size"] == "0.010"
    assert (await ws.next("wallet"))["data"][0]["accountType"] == "UNIFIED"


async def test_public_ticker_snapshot_and_closed_kline(connect, sim):
    ws = await connect("/v5/public/linear")
    await ws.ask({"op": "subscribe", "args": ["tickers.BTCUSDT", "kline.1.BTCUSDT"]})
    first = await ws.next("tickers.BTCUSDT")
    assert first["type"] == "snapshot" and isinstance(first["data"], dict) and "cs" in first
    sim.set_price("BTCUSDT", Decimal("20000"))
    assert (await ws.next("tickers.BTCUSDT"))["data"]["lastPrice"] == "20000.00"
    assert (await ws.next("kline.1.BTCUSDT"))["data"][0]["confirm"] is False
    sim.step("BTCUSDT")
    closed = (await ws.next("kline.1.BTCUSDT"))["data"][0]
    assert closed["confirm"] is True and closed["end"] - closed["start"] == 59_999


async def test_drop_all_closes_every_socket(connect, sim):
    sockets = [await connect("/v5/private"), await connect("/v5/public/linear")]
    await sockets[0].ask({"op": "ping"})
    await sockets[1].ask({"op": "ping"})
    assert await sim.streams.drop_all() == 2
    for s in sockets:
        assert (await s.ws.receive(timeout=30)).type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED)


async def test_pybit_websocket_hears_a_fill(sim, monkeypatch):
    """Oracle: pybit's own WebSocket (auth, subscribe, callbacks), pointed at the simulator through the URL
    template it formats its host into (it has no base-URL argument)."""
    from pybit import unified_trading

    ws_base = sim.base_url.replace("http", "ws")
    monkeypatch.setattr(unified_trading, "PRIVATE_WSS", ws_base + "/v5/private")
    got: queue.Queue[dict] = queue.Queue()
    ws = ack_safe(await off_loop(unified_trading.WebSocket, channel_type="private", testnet=False,
                                 api_key=SIM_KEY, api_secret=SIM_SECRET, retries=3, trace_logging=False,
                                 private_auth_expire=10))  # pybit's 1 s default expires on a loaded machine
    try:
        await off_loop(ws.execution_stream, callback=got.put)
        async with SignedClient(sim.base_url) as http:
            _, body, _ = await http.post("/v5/order/create", {"category": "linear", "symbol": "BTCUSDT",
                                                              "side": "Buy", "orderType": "Limit", "qty": "0.01",
                                                              "price": "1000", "orderLinkId": "pybit-ws"})
        assert body["retCode"] == 0
        await asyncio.wait_for(sim.streams.subscribed("execution"), 30)
        sim.fill(SIM_KEY, "pybit-ws")
        msg = await off_loop(got.get, timeout=30)  # a bound, not a wait: it returns at the message
        assert msg["topic"] == "execution" and msg["data"][0]["orderLinkId"] == "pybit-ws"
    finally:
        await off_loop(ws.exit)



async def test_kline_of_every_interval_closes_with_its_own_candle(connect, sim, sim_url):
    """kline.5 confirms a candle only when its 5 minutes end, and it is the candle REST then lists."""
    series = sim.series["BTCUSDT"]
    while (series.live.ts // 60_000 + 1) % 5 or (series.live.ts // 60_000 + 1) % 60 == 0:
        sim.step("BTCUSDT")  # up to the last minute of a 5m candle that does not end an hour
    ws = await connect("/v5/public/linear")
    await ws.ask({"op": "subscribe", "args": ["kline.1.BTCUSDT", "kline.5.BTCUSDT", "kline.60.BTCUSDT"]})
    sim.set_price("BTCUSDT", sim.price("BTCUSDT"))  # a move: every interval pushes its forming candle
    pushed = [(await ws.next())["data"][0] for _ in range(3)]  # the longest interval first, 1m (the clock) last
    assert [(b["interval"], b["confirm"]) for b in pushed] == [("60", False), ("5", False), ("1", False)]
    forming5 = pushed[1]
    assert (forming5["start"] % 300_000, forming5["end"] - forming5["start"]) == (0, 299_999)
    sim.step("BTCUSDT")  # the 5m candle ends with this minute; the hour goes on
    pushed = [(await ws.next())["data"][0] for _ in range(5)]
    assert [(b["interval"], b["confirm"]) for b in pushed] == [("60", False), ("5", True), ("5", False),
                                                                ("1", True), ("1", False)]
    closed, nxt = pushed[1:3]
    assert (closed["start"], nxt["start"]) == (forming5["start"], forming5["start"] + 300_000)
    async with aiohttp.ClientSession() as http:
        async with http.get(f"{sim_url}/v5/market/kline", params={"category": "linear", "symbol": "BTCUSDT",
                                                                  "interval": "5", "limit": "2"}) as r:
            rest = (await r.json())["result"]["list"][1]  # newest first: the one after the forming one
    assert rest == [str(closed["start"]), closed["open"], closed["high"], closed["low"], closed["close"],
                    closed["volume"], closed["turnover"]]
    refused = await ws.ask({"op": "subscribe", "args": ["kline.7.BTCUSDT"]})
    assert refused["success"] is False and refused["ret_msg"] == "error:handler not found,topic:kline.7.BTCUSDT"


async def test_linear_ticker_deltas_carry_the_changed_fields_spot_snapshots(connect, sim):
    linear, spot = await connect("/v5/public/linear"), await connect("/v5/public/spot")
    await linear.ask({"op": "subscribe", "args": ["tickers.BTCUSDT"]})
    await spot.ask({"op": "subscribe", "args": ["tickers.BTCUSDT"]})
    snapshot = await linear.next("tickers.BTCUSDT")
    assert snapshot["type"] == "snapshot" and {"lastPrice", "markPrice", "fundingRate"} <= set(snapshot["data"])
    assert (await spot.next("tickers.BTCUSDT"))["type"] == "snapshot"
    sim.set_price("BTCUSDT", Decimal("20000"))
    delta = await linear.next("tickers.BTCUSDT")
    assert delta["type"] == "delta" and delta["data"]["lastPrice"] == "20000.00"
    assert delta["data"]["symbol"] == "BTCUSDT" and "fundingRate" not in delta["data"]  # unchanged: not sent
    spot_push = await spot.next("tickers.BTCUSDT")
    assert spot_push["type"] == "snapshot" and spot_push["data"]["lastPrice"] == "20000.00"


async def test_position_and_wallet_after_every_order_change_and_funding(connect, sim):
    ws = await connect("/v5/private")
    await ws.ask({"op": "auth", "args": auth_args()})
    await ws.ask({"op": "subscribe", "args": ["position", "wallet"]})
    async with SignedClient(sim.base_url) as http:
        await http.post("/v5/order/create", {"category": "linear", "symbol": "BTCUSDT", "side": "Buy",
                                             "orderType": "Limit", "qty": "0.01", "price": "1000",
                                             "orderLinkId": "pos-1"})
        flat = (await ws.next("position"))["data"][0]  # pushed though nothing changed, as ByBit does
        assert (flat["size"], flat["side"], flat["category"]) == ("0.000", "", "linear")
        placed = (await ws.next("wallet"))["data"][0]["coin"][0]
        assert Decimal(placed["totalOrderIM"]) > 0 and Decimal(placed["totalPositionIM"]) == 0  # its margin
        await http.post("/v5/order/create", {"category": "linear", "symbol": "BTCUSDT", "side": "Buy",
                                             "orderType": "Market", "qty": "0.01"})
    held = (await ws.next("position"))["data"][0]
    assert held["size"] == "0.010" and held["side"] == "Buy" and "avgPrice" not in held
    assert Decimal(held["entryPrice"]) > 0 and Decimal(held["liqPrice"]) > 0 and isinstance(held["seq"], int)
    wallet = (await ws.next("wallet"))["data"][0]
    assert wallet["accountType"] == "UNIFIED" and Decimal(wallet["coin"][0]["totalPositionIM"]) > 0
    assert sim.charge_funding("BTCUSDT") == 1
    funded = (await ws.next("position"))["data"][0]
    assert funded["seq"] > held["seq"] and Decimal(funded["cumRealisedPnl"]) < Decimal(held["cumRealisedPnl"])
    after = (await ws.next("wallet"))["data"][0]["coin"][0]
    assert Decimal(after["walletBalance"]) < Decimal(wallet["coin"][0]["walletBalance"])  # longs paid


async def test_pybit_public_websocket_merges_ticker_deltas_and_hears_klines(sim, monkeypatch):
    """Oracle: pybit's public WebSocket, its ticker cache merging the simulator's deltas into the snapshot."""
    from pybit import unified_trading

    monkeypatch.setattr(unified_trading, "PUBLIC_WSS", sim.base_url.replace("http", "ws") + "/v5/public/{CHANNEL_TYPE}")
    tickers: queue.Queue[dict] = queue.Queue()
    klines: queue.Queue[dict] = queue.Queue()
    ws = ack_safe(await off_loop(unified_trading.WebSocket, channel_type="linear", testnet=False, retries=3,
                                 trace_logging=False))
    try:
        await off_loop(ws.ticker_stream, symbol="BTCUSDT", callback=tickers.put)
        await off_loop(ws.kline_stream, interval=5, symbol="BTCUSDT", callback=klines.put)
        await asyncio.wait_for(sim.streams.subscribed("kline.5.BTCUSDT"), 30)
        snapshot = await off_loop(tickers.get, timeout=30)
        sim.set_price("BTCUSDT", Decimal("20000"))
        merged = await off_loop(tickers.get, timeout=30)
        assert merged["data"]["lastPrice"] == "20000.00"
        assert merged["data"]["fundingRate"] == snapshot["data"]["fundingRate"]  # kept from the snapshot
        bar = (await off_loop(klines.get, timeout=30))["data"][0]
        assert bar["interval"] == "5" and bar["confirm"] is False and bar["close"] == "20000.00"
    finally:
        await off_loop(ws.exit)
