"""Wire edges the simulator cannot produce, against a canned aiohttp server on 127.0.0.1."""

from __future__ import annotations

import asyncio
import json
import logging
import socket
import time
from decimal import Decimal as D

import pytest
from pybit._http_manager import generate_signature

from tests.api.canned import INSTRUMENT, Canned, envelope
from tests.api.conftest import KEY, SECRET
from traderagent.api import exceptions as ex
from traderagent.api.bybit_direct_client import ByBitDirectClient

ONE_PER_CLASS = [
    (10002, ex.InvalidTimestampError), (10003, ex.AuthenticationError), (10005, ex.AuthenticationError),
    (10010, ex.AuthenticationError), (33004, ex.AuthenticationError), (-2015, ex.AuthenticationError),
    (110007, ex.InsufficientFundsError), (170131, ex.InsufficientFundsError), (110094, ex.InvalidOrderError),
    (170140, ex.InvalidOrderError), (110003, ex.InvalidOrderError), (110001, ex.OrderNotFoundError),
    (170213, ex.OrderNotFoundError), (110072, ex.DuplicateOrderError), (170141, ex.DuplicateOrderError),
    (110017, ex.InvalidOrderError), (10001, ex.InvalidOrderError), (10032, ex.NotSupportedError),
    (10017, ex.ExchangeAPIError), (110008, ex.InvalidOrderError),
]


@pytest.mark.parametrize(("code", "cls"), ONE_PER_CLASS)
async def test_envelope_errors_map_over_the_wire(canned, canned_client, code, cls):
    # 10002 is re-synced and resent once, so queue it twice
    for _ in range(2 if code == 10002 else 1):
        canned.push("/v5/order/cancel", Canned(body=envelope(code=code, msg=f"msg {code}")))
    with pytest.raises(cls) as info:
        await canned_client.cancel_order("abc", "BTCUSDT")
    err = info.value
    assert (err.ret_code, err.ret_msg, err.endpoint) == (code, f"msg {code}", "/v5/order/cancel")
    assert canned_client.get_statistics()["errors"][cls.__name__] >= 1


async def test_bad_signature_message_hides_key_and_secret(canned, canned_client, caplog):
    caplog.set_level(logging.DEBUG)
    canned.push("/v5/order/cancel", Canned(body=envelope(
        code=10004, msg=f"error sign! origin_string[1700000000000{KEY}10000{{}}] {SECRET}")))
    with pytest.raises(ex.AuthenticationError) as info:
        await canned_client.cancel_order("abc", "BTCUSDT")
    for text in (str(info.value), repr(info.value), info.value.ret_msg, caplog.text):
        assert KEY not in text and SECRET not in text


@pytest.mark.parametrize("answer", [
    Canned(status=502, body="<html>Bad Gateway</html>"),
    Canned(status=200, body="<html>cloudflare</html>"),
    Canned(status=503, body=""),
])
async def test_5xx_and_non_json_are_network_errors_and_retried(canned, canned_client, answer):
    canned.push("/v5/market/tickers", answer, answer, answer)
    with pytest.raises(ex.NetworkError):
        await canned_client.fetch_ticker("BTCUSDT")
    assert len(canned.requests_to("/v5/market/tickers")) == 3  # 1 + max_retries(2)
    assert canned_client.get_statistics()["retries"] == 2


async def test_retry_then_success(canned, canned_client):
    ticker = envelope({"list": [{"symbol": "BTCUSDT", "lastPrice": "50000.1", "bid1Price": "50000",
                                 "ask1Price": "50000.2", "highPrice24h": "51000", "lowPrice24h": "49000",
                                 "volume24h": "12.5", "markPrice": "50000.05"}]})
    canned.push("/v5/market/tickers", Canned(status=500), Canned(status=429), Canned(body=ticker))
    t = await canned_client.fetch_ticker("BTC/USDT")
    assert t["last"] == D("50000.1") and t["mark"] == D("50000.05") and isinstance(t["timestamp"], int)
    stats = canned_client.get_statistics()
    assert stats["retries"] == 2 and stats["errors"] == {"NetworkError": 1, "RateLimitError": 1}


async def test_403_ip_ban_is_not_retried_and_blocks_further_calls(canned, canned_client):
    canned.push("/v5/market/tickers", Canned(status=403, body="access too frequent"))
    with pytest.raises(ex.IPBannedError):
        await canned_client.fetch_ticker("BTCUSDT")
    assert len(canned.requests_to("/v5/market/tickers")) == 1
    with pytest.raises(ex.IPBannedError):
        await canned_client.fetch_balance()
    assert canned.requests_to("/v5/account/wallet-balance") == []  # waited out locally, nothing sent


async def test_403_other_is_access_denied(canned, canned_client):
    canned.push("/v5/market/tickers", Canned(status=403, body="403 Forbidden"))
    with pytest.raises(ex.AccessDeniedError):
        await canned_client.fetch_ticker("BTCUSDT")
    assert len(canned.requests_to("/v5/market/tickers")) == 1


@pytest.mark.parametrize(("status", "cls"), [(401, ex.AuthenticationError), (404, ex.ExchangeAPIError)])
async def test_http_4xx(canned, canned_client, status, cls):
    canned.push("/v5/account/wallet-balance", Canned(status=status, body="nope"))
    with pytest.raises(cls) as info:
        await canned_client.fetch_balance()
    assert type(info.value) is cls and len(canned.requests_to("/v5/account/wallet-balance")) == 1


async def test_timeout_is_network_error(canned, canned_client):
    canned.push("/v5/account/wallet-balance", *[Canned(delay=1.5)] * 3)
    started = time.monotonic()
    with pytest.raises(ex.NetworkError, match="timeout"):
        await canned_client.fetch_balance()
    assert time.monotonic() - started < 4.0


async def test_connection_refused_is_network_error():
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()  # nothing listens there now
    client = ByBitDirectClient("k", "s", base_url=f"http://127.0.0.1:{port}", max_retries=1, backoff_base=0.01)
    try:
        with pytest.raises(ex.NetworkError):
            await client.fetch_ticker("BTCUSDT")
        assert client.get_statistics()["errors"]["NetworkError"] == 2
    finally:
        await client.close()


async def test_rate_limit_waits_until_reset_header(canned, canned_client):
    reset = int(time.time() * 1000) + 400
    canned.push("/v5/account/wallet-balance",
                Canned(body=envelope(code=10006, msg="Too many visits!"),
                       headers={"X-Bapi-Limit-Reset-Timestamp": str(reset)}))
    started = time.monotonic()
    await canned_client.fetch_balance()
    assert time.monotonic() - started >= 0.3
    seen = canned.requests_to("/v5/account/wallet-balance")
    assert len(seen) == 2 and seen[1].at - seen[0].at >= 0.3
    assert canned_client.get_statistics()["rate_limit_waits"] >= 1


async def test_10002_resyncs_clock_and_resends_once(canned, canned_client):
    before = len(canned.requests_to("/v5/market/time"))
    canned.push("/v5/account/wallet-balance", Canned(body=envelope(code=10002, msg="invalid request, timestamp")))
    assert await canned_client.fetch_balance() == {"free": {}, "used": {}, "total": {}}
    assert len(canned.requests_to("/v5/market/time")) == before + 1
    assert len(canned.requests_to("/v5/account/wallet-balance")) == 2


def _pybit_sign(seen) -> str:
    h = seen.headers
    payload = seen.raw_query if seen.method == "GET" else seen.body.decode()
    return generate_signature(False, SECRET, h["X-BAPI-TIMESTAMP"] + KEY + h["X-BAPI-RECV-WINDOW"] + payload)


async def test_signatures_cover_the_exact_bytes_sent(canned, canned_client):
    canned.push("/v5/order/create", Canned(body=envelope({"orderId": "x1", "orderLinkId": "my-id"})))
    await canned_client.create_limit_order("BTCUSDT", "buy", D("0.0015"), D("50000.17"), client_order_id="my-id")
    await canned_client.fetch_balance()
    post = canned.requests_to("/v5/order/create")[0]
    get = canned.requests_to("/v5/account/wallet-balance")[0]
    for seen in (post, get):
        assert seen.headers["X-BAPI-SIGN"] == _pybit_sign(seen)
        assert seen.headers["X-BAPI-RECV-WINDOW"] == "10000"
        assert seen.headers["X-BAPI-API-KEY"] == KEY
    body = json.loads(post.body)
    assert body["qty"] == "0.001" and body["price"] == "50000.10" and body["reduceOnly"] is False
    assert body["orderLinkId"] == "my-id" and body["positionIdx"] == 0
    assert get.raw_query == "accountType=UNIFIED"


async def test_instruments_paginate_with_verbatim_cursor_and_filter(canned):
    cursor = "page_args%3Dfd43%26symbol%3D6%26"
    other = [{**INSTRUMENT, "symbol": "BTCUSDT-27DEC24", "contractType": "LinearFutures"},
             {**INSTRUMENT, "symbol": "BTCPERP", "settleCoin": "USDC"},
             {**INSTRUMENT, "symbol": "NEWUSDT", "status": "PreLaunch"}]
    canned.push("/v5/market/instruments-info",
                Canned(body=envelope({"list": [INSTRUMENT, *other], "nextPageCursor": cursor})),
                Canned(body=envelope({"list": [{**INSTRUMENT, "symbol": "ETHUSDT"}], "nextPageCursor": ""})))
    client = ByBitDirectClient(KEY, SECRET, base_url=canned.url)
    try:
        await client.initialize()
        assert set(await client.fetch_markets()) == {"BTCUSDT", "ETHUSDT"}
        pages = canned.requests_to("/v5/market/instruments-info")
        assert pages[1].raw_query.endswith("cursor=" + cursor)
    finally:
        await client.close()


async def test_kline_pagination_with_end(canned, canned_client):
    step = 60_000
    newest = 1_700_000_000_000

    def rows(start_ts: int, n: int) -> list[list[str]]:  # newest first
        return [[str(start_ts - i * step), "1", "2", "0.5", "1.5", "3", "4"] for i in range(n)]

    canned.push("/v5/market/kline", Canned(body=envelope({"list": rows(newest, 1000)})),
                Canned(body=envelope({"list": rows(newest - 1000 * step, 500)})))
    out = await canned_client.fetch_klines("BTC/USDT", "1m", limit=1500)
    assert len(out) == 1500 and [r[0] for r in out] == sorted(r[0] for r in out)
    assert out[-1][0] == newest and out[0][0] == newest - 1499 * step
    assert isinstance(out[0][0], int) and out[0][4] == D("1.5")
    second = canned.requests_to("/v5/market/kline")[1].raw_query
    assert f"end={newest - 999 * step - 1}" in second and "limit=500" in second and "interval=1" in second


async def test_order_limiter_keeps_rolling_second_under_limit(canned, canned_client):
    await asyncio.gather(*(canned_client.cancel_all_orders("BTCUSDT") for _ in range(25)))
    times = sorted(s.at for s in canned.requests_to("/v5/order/cancel-all"))
    assert len(times) == 25
    worst = max(sum(1 for t in times if start <= t < start + 1.0) for start in times)
    assert worst <= 10


async def test_requests_are_not_serialised(canned, canned_client):
    canned.push("/v5/position/list", *[Canned(delay=0.3, body=envelope({"list": []}))] * 10)
    started = time.monotonic()
    await asyncio.gather(*(canned_client.fetch_positions("BTCUSDT") for _ in range(10)))
    assert time.monotonic() - started < 1.5  # 10 x 0.3 s in parallel, not 3 s in series


async def test_logs_never_show_secrets(canned, canned_client, caplog):
    caplog.set_level(logging.DEBUG)
    canned.push("/v5/account/wallet-balance", Canned(status=500))
    await canned_client.fetch_balance()
    await canned_client.fetch_open_orders()
    assert caplog.records and KEY not in caplog.text and SECRET not in caplog.text
