"""Oracles: the official pybit client and ccxt must trade against the simulator unmodified."""

from __future__ import annotations

import asyncio
import json
import time
from decimal import Decimal

import pytest

from tests.sim.helpers import SignedClient

pybit_http = pytest.importorskip("pybit.unified_trading")
ccxt_async = pytest.importorskip("ccxt.async_support")


def _pybit(sim_url: str, key: str = "test-key", secret: str = "test-secret"):
    session = pybit_http.HTTP(testnet=False, api_key=key, api_secret=secret, max_retries=1, retry_delay=0,
                              timeout=5)
    session.endpoint = sim_url  # pybit has no base-URL argument (docs/exchange.md section 8)
    return session


async def test_pybit_limit_order_lifecycle_and_balance(sim_url, sim):
    s = _pybit(sim_url)
    placed = await asyncio.to_thread(s.place_order, category="linear", symbol="BTCUSDT", side="Buy",
                                     orderType="Limit", qty="0.001", price="50000", timeInForce="GTC",
                                     orderLinkId="pybit-1", reduceOnly=False, positionIdx=0)
    assert placed["retCode"] == 0
    oid = placed["result"]["orderId"]
    open_orders = await asyncio.to_thread(s.get_open_orders, category="linear", symbol="BTCUSDT")
    assert [o["orderId"] for o in open_orders["result"]["list"]] == [oid]
    assert open_orders["result"]["list"][0]["orderLinkId"] == "pybit-1"
    cancelled = await asyncio.to_thread(s.cancel_order, category="linear", symbol="BTCUSDT", orderId=oid)
    assert cancelled["result"]["orderId"] == oid
    open_orders = await asyncio.to_thread(s.get_open_orders, category="linear", symbol="BTCUSDT")
    assert open_orders["result"]["list"] == []
    bal = await asyncio.to_thread(s.get_wallet_balance, accountType="UNIFIED", coin="USDT")
    assert Decimal(bal["result"]["list"][0]["coin"][0]["walletBalance"]) == Decimal("100000")
    assert sim.orders("test-key", open_only=False)[0]["orderStatus"] == "Cancelled"


async def test_pybit_error_codes_and_rate_limit_headers(sim_url):
    from pybit.exceptions import InvalidRequestError

    s = _pybit(sim_url)
    with pytest.raises(InvalidRequestError) as err:
        await asyncio.to_thread(s.place_order, category="linear", symbol="BTCUSDT", side="Buy",
                                orderType="Limit", qty="0.0015", price="50000")
    assert err.value.status_code == 10001
    bad = _pybit(sim_url, secret="wrong")
    with pytest.raises(InvalidRequestError) as err:
        await asyncio.to_thread(bad.get_wallet_balance, accountType="UNIFIED")
    assert err.value.status_code == 10004
    s_headers = pybit_http.HTTP(testnet=False, api_key="test-key", api_secret="test-secret", max_retries=1,
                                return_response_headers=True)
    s_headers.endpoint = sim_url
    _, _, headers = await asyncio.to_thread(s_headers.get_positions, category="linear", symbol="ETHUSDT")
    assert headers["X-Bapi-Limit"] == "50" and int(headers["X-Bapi-Limit-Reset-Timestamp"]) > 0


async def test_pybit_signature_helper_bytes_accepted_and_one_byte_change_rejected(sim_url):
    """Sign with pybit's own helper, send those bytes: accepted; change one byte after signing: 10004."""
    from pybit._http_manager import _V5HTTPManager

    mgr = _V5HTTPManager(api_key="test-key", api_secret="test-secret")
    body = json.dumps({"category": "linear", "symbol": "ETHUSDT", "buyLeverage": "3", "sellLeverage": "3"})
    async with SignedClient(sim_url) as c:
        ts = int(time.time() * 1000)
        signature = mgr._auth(payload=body, recv_window=5000, timestamp=ts)
        headers = {"X-BAPI-API-KEY": "test-key", "X-BAPI-SIGN": signature, "X-BAPI-SIGN-TYPE": "2",
                   "X-BAPI-TIMESTAMP": str(ts), "X-BAPI-RECV-WINDOW": "5000", "Content-Type": "application/json"}
        url = f"{sim_url}/v5/position/set-leverage"
        async with c.session.post(url, data=body.encode(), headers=headers) as r:
            assert (await r.json())["retCode"] == 0
        tampered = body.replace('"3"', '"4"', 1)
        assert len(tampered) == len(body) and sum(a != b for a, b in zip(tampered, body, strict=True)) == 1
        async with c.session.post(url, data=tampered.encode(), headers=headers) as r:
            assert (await r.json())["retCode"] == 10004
        query = "accountType=UNIFIED&coin=USDT"
        sig = mgr._auth(payload=query, recv_window=5000, timestamp=ts)
        async with c.session.get(f"{sim_url}/v5/account/wallet-balance?{query}",
                                 headers=headers | {"X-BAPI-SIGN": sig}) as r:
            assert (await r.json())["retCode"] == 0
        async with c.session.get(f"{sim_url}/v5/account/wallet-balance?{query.replace('USDT', 'USDC')}",
                                 headers=headers | {"X-BAPI-SIGN": sig}) as r:
            assert (await r.json())["retCode"] == 10004


def _ccxt(sim_url: str, **options):
    ex = ccxt_async.bybit({"apiKey": "test-key", "secret": "test-secret", "enableRateLimit": False,
                           "options": {"fetchMarkets": {"types": ["spot", "linear"]}, **options}})
    ex.urls["api"] = {k: sim_url for k in ("spot", "futures", "v2", "public", "private")}
    return ex


async def test_ccxt_limit_order_lifecycle_and_balance(sim_url, sim):
    ex = _ccxt(sim_url, adjustForTimeDifference=True)  # also exercises query-api, account/info, coin info
    try:
        await ex.load_markets()
        assert "BTC/USDT:USDT" in ex.markets and "BTC/USDT" in ex.markets
        assert "BTC/USDT:USDT-251226" not in ex.markets or not ex.markets["BTC/USDT:USDT-251226"]["swap"]
        order = await ex.create_order("BTC/USDT:USDT", "limit", "buy", 0.002, 55000, {"orderLinkId": "cc-1"})
        oid = order["id"]
        opened = await ex.fetch_open_orders("BTC/USDT:USDT")
        assert [o["id"] for o in opened] == [oid]
        assert opened[0]["price"] == 55000 and opened[0]["amount"] == 0.002 and opened[0]["clientOrderId"] == "cc-1"
        await ex.cancel_order(oid, "BTC/USDT:USDT")
        assert await ex.fetch_open_orders("BTC/USDT:USDT") == []
        balance = await ex.fetch_balance()
        assert balance["USDT"]["total"] == 100000
        spot_order = await ex.create_order("ETH/USDT", "limit", "buy", 0.5, 2900)
        assert (await ex.fetch_open_orders("ETH/USDT"))[0]["id"] == spot_order["id"]
        balance = await ex.fetch_balance()
        assert balance["USDT"]["used"] == 1450  # 0.5 * 2900 locked by the spot order
        await ex.cancel_order(spot_order["id"], "ETH/USDT")
    finally:
        await ex.close()
    assert sim.request_counts["/v5/order/create"] == 2


async def test_ccxt_market_order_position_and_errors(sim_url, sim):
    import ccxt as ccxt_sync

    ex = _ccxt(sim_url)
    try:
        await ex.load_markets()
        await ex.create_order("SOL/USDT:USDT", "market", "buy", 1)
        positions = await ex.fetch_positions(["SOL/USDT:USDT"])
        assert positions[0]["contracts"] == 1 and positions[0]["side"] == "long"
        with pytest.raises(ccxt_sync.InsufficientFunds):
            await ex.create_order("BTC/USDT:USDT", "limit", "buy", 100, 59000)
        with pytest.raises(ccxt_sync.OrderNotFound):
            await ex.cancel_order("00000000-0000-4000-8000-000000000000", "BTC/USDT:USDT")
    finally:
        await ex.close()
