"""Private-call authentication exactly as ByBit: signature over the raw query/body, timestamp window, keys."""

from __future__ import annotations

import json

import pytest

from tests.sim.helpers import SignedClient, bybit_sign
from traderagent.sim.auth import sign

WALLET = "/v5/account/wallet-balance"


@pytest.mark.parametrize("payload, expected", [
    ("accountType=UNIFIED&coin=USDT", "5e3368dc6513523693e132a7282a050c40c53c95b5ab65bf70a921fdd91b45a6"),
    ('{"category":"linear","symbol":"BTCUSDT","side":"Buy","orderType":"Limit","qty":"0.001","price":"50000"}',
     "fe172ebf8dc38479ddc8b550c111c0d0824d0255ce49985dd452f0786bb11a55"),
    ("", "d8d5e71d8f986368aa5c13405f059ab6adb4f41df59d2f11bb056226b63457d6"),
])
def test_sign_matches_bybit_doc_vectors(payload, expected):
    assert sign("test-secret", "1700000000000", "test-key", "5000", payload) == expected


async def test_signed_get_accepted_with_rate_limit_headers(client):
    status, body, headers = await client.get(WALLET, "accountType=UNIFIED&coin=USDT")
    assert status == 200 and body["retCode"] == 0
    assert headers["X-Bapi-Limit"] == "50"
    assert int(headers["X-Bapi-Limit-Status"]) == 49
    assert abs(int(headers["X-Bapi-Limit-Reset-Timestamp"]) - body["time"]) < 2000


async def test_query_is_signed_in_the_order_sent(client):
    """pybit sorts keys, ccxt keeps insertion order: the server must verify the raw string either way."""
    for query in ("accountType=UNIFIED&coin=USDT", "coin=USDT&accountType=UNIFIED"):
        status, body, _ = await client.get(WALLET, query)
        assert body["retCode"] == 0, body


async def test_post_body_signed_raw_with_spaces(client):
    body = json.dumps({"category": "linear", "symbol": "BTCUSDT", "buyLeverage": "5", "sellLeverage": "5"})
    assert ", " in body  # pybit-style spaced JSON is hashed as sent, never re-serialised
    status, res, headers = await client.post("/v5/position/set-leverage", body)
    assert res["retCode"] == 0 and res["result"] == {}
    assert headers["X-Bapi-Limit"] == "10"


async def test_tampered_signature_is_10004(client):
    _, body, _ = await client.get(WALLET, "accountType=UNIFIED", sign="0" * 64)
    assert body["retCode"] == 10004 and body["result"] == {}
    assert "test-secret" not in body["retMsg"]


async def test_body_changed_after_signing_is_10004(client):
    signed = '{"category":"linear","symbol":"BTCUSDT","buyLeverage":"5","sellLeverage":"5"}'
    _, body, _ = await client.post("/v5/position/set-leverage", signed, sent_body=signed.replace("5", "6"))
    assert body["retCode"] == 10004


async def test_wrong_secret_is_10004(sim_url):
    async with SignedClient(sim_url, secret="not-the-secret") as c:
        _, body, _ = await c.get(WALLET, "accountType=UNIFIED")
    assert body["retCode"] == 10004


async def test_unknown_key_is_10003(sim_url):
    async with SignedClient(sim_url, key="other-key") as c:
        status, body, _ = await c.get(WALLET, "accountType=UNIFIED")
    assert status == 200 and body["retCode"] == 10003 and body["retMsg"] == "API key is invalid."


@pytest.mark.parametrize("offset_ms", [-6000, 1500])
async def test_timestamp_outside_window_is_10002(client, offset_ms):
    _, body, _ = await client.get(WALLET, "accountType=UNIFIED", ts_offset_ms=offset_ms)
    assert body["retCode"] == 10002
    assert "req_timestamp[" in body["retMsg"] and "recv_window[5000]" in body["retMsg"]


async def test_bigger_recv_window_accepts_old_timestamp(sim_url):
    async with SignedClient(sim_url, recv_window="20000") as c:
        _, body, _ = await c.get(WALLET, "accountType=UNIFIED", ts_offset_ms=-6000)
        assert body["retCode"] == 0
        _, body, _ = await c.get(WALLET, "accountType=UNIFIED", ts_offset_ms=1500)  # future: still rejected
        assert body["retCode"] == 10002


async def test_day_old_timestamp_refused_whatever_recv_window_it_claims(sim_url):
    """A huge recv_window is capped (MAX_RECV_WINDOW): a replayed day-old request is refused with 10002."""
    async with SignedClient(sim_url, recv_window="999999999") as c:
        _, body, _ = await c.get(WALLET, "accountType=UNIFIED", ts_offset_ms=-86_400_000)
        assert body["retCode"] == 10002 and "recv_window[999999999]" in body["retMsg"]
        _, body, _ = await c.get(WALLET, "accountType=UNIFIED", ts_offset_ms=-30_000)  # inside the cap
        assert body["retCode"] == 0


async def test_missing_auth_headers_is_http_401(client):
    status, body, _ = await client.get(WALLET, "accountType=UNIFIED", signed=False)
    assert status == 401


async def test_helper_signer_agrees_with_server_signer():
    assert bybit_sign("s", "1", "k", "5000", "a=b") == sign("s", "1", "k", "5000", "a=b")
