"""Fault injection (5xx, late answers, injected 10006), real per-endpoint rate limits, and the CLI process."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path

import aiohttp
import pytest

from tests import forkserver
from tests.sim.helpers import SignedClient

REPO = Path(__file__).resolve().parents[2]


def create_body(link: str) -> dict:
    return {"category": "linear", "symbol": "BTCUSDT", "side": "Buy", "orderType": "Limit", "qty": "0.001",
            "price": "55000", "orderLinkId": link}


async def test_gateway_errors_are_non_json_and_not_executed(client, sim):
    sim.faults.error_rate = 1.0
    statuses = set()
    for i in range(8):
        status, body, _ = await client.post("/v5/order/create", create_body(f"e-{i}"))
        statuses.add(status)
        assert isinstance(body, str) and ("Bad Gateway" in body or "Unavailable" in body)
    assert statuses <= {502, 503} and statuses
    status, body, _ = await client.get("/v5/market/time", signed=False)
    assert status in (502, 503)
    assert sim.orders("test-key") == []
    sim.faults.error_rate = 0.0
    assert (await client.get("/v5/market/time", signed=False))[0] == 200


async def test_error_rate_is_a_seeded_probability(client, sim):
    sim.faults.error_rate = 0.3
    results = [(await client.get("/v5/market/time", signed=False))[0] for _ in range(200)]
    failures = sum(s != 200 for s in results)
    assert 30 <= failures <= 90


async def test_timeout_still_executes_the_create(client, sim):
    """The client gives up, but the order exists: this is how duplicates happen in real life."""
    sim.faults.timeout_rate = 1.0
    sim.faults.timeout_seconds = 3.0
    with pytest.raises(asyncio.TimeoutError):
        await client.post("/v5/order/create", create_body("t-1"), timeout=0.5)
    (o,) = sim.orders("test-key")
    assert o["orderLinkId"] == "t-1"
    sim.faults.timeout_rate = 0.0
    code, _ = await client.code("POST", "/v5/order/create", create_body("t-1"))
    assert code == 110072  # the blind resend is caught by the unique orderLinkId
    res = await client.ok("GET", "/v5/order/realtime", {"category": "linear", "orderLinkId": "t-1"})
    assert res["list"][0]["orderStatus"] == "New"


async def test_injected_ratelimit_has_headers_on_private_calls(client, sim):
    sim.faults.ratelimit_rate = 1.0
    status, body, headers = await client.post("/v5/order/create", create_body("r-1"))
    assert status == 200 and body["retCode"] == 10006
    assert headers["X-Bapi-Limit-Status"] == "0"
    assert int(headers["X-Bapi-Limit-Reset-Timestamp"]) >= body["time"]
    assert sim.orders("test-key") == []  # not executed
    status, body, headers = await client.get("/v5/market/tickers", {"category": "linear"}, signed=False)
    assert body["retCode"] == 10006 and "X-Bapi-Limit" not in headers


async def test_per_endpoint_rate_limit_10006(client, sim):
    sim.config.rate_limits["/v5/order/create"] = 3
    codes, remaining = [], []
    for i in range(4):
        status, body, headers = await client.post("/v5/order/create", create_body(f"rl-{i}"))
        codes.append(body["retCode"])
        remaining.append(headers["X-Bapi-Limit-Status"])
        assert headers["X-Bapi-Limit"] == "3"
    assert codes == [0, 0, 0, 10006]
    assert remaining == ["2", "1", "0", "0"]
    reset = int(headers["X-Bapi-Limit-Reset-Timestamp"])
    assert body["time"] <= reset <= body["time"] + 1000
    assert len(sim.orders("test-key")) == 3
    # other endpoints and other accounts have their own budgets
    assert (await client.code("GET", "/v5/order/realtime", {"category": "linear", "symbol": "BTCUSDT"}))[0] == 0
    sim.add_account("other", "other-secret", {"USDT": 1000})
    async with SignedClient(client.base_url, key="other", secret="other-secret") as other:
        assert (await other.code("POST", "/v5/order/create", create_body("o-1")))[0] == 0
    await asyncio.sleep(max(0.0, (reset - body["time"]) / 1000) + 0.05)
    assert (await client.code("POST", "/v5/order/create", create_body("rl-9")))[0] == 0


async def test_spot_orders_have_a_separate_larger_budget(client, sim):
    body = {"category": "spot", "symbol": "XRPUSDT", "side": "Buy", "orderType": "Limit", "qty": "10",
            "price": "1.0"}
    _, res, headers = await client.post("/v5/order/create", body)
    assert res["retCode"] == 0 and headers["X-Bapi-Limit"] == "20"


def test_cli_runs_standalone_and_serves(tmp_path):
    """`traderagent sim --port 0` prints its URL, serves ByBit calls and exits cleanly on SIGINT."""
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    proc = forkserver.popen([sys.executable, "-m", "traderagent", "sim", "--port", "0", "--speed", "50",
                             "--api-key", "cli-key", "--api-secret", "cli-secret"],
                            cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line = proc.stdout.readline()
        assert line.startswith("simulator listening on http://127.0.0.1:"), line
        url = line.split()[-1]
        assert "cli-key" in proc.stdout.readline()

        async def probe() -> tuple[dict, dict]:
            async with SignedClient(url, key="cli-key", secret="cli-secret") as c:
                t1 = await c.ok("GET", "/v5/market/kline", {"symbol": "BTCUSDT", "interval": "1", "limit": "1"})
                await asyncio.sleep(0.5)  # speed 50: the replay moves by itself
                t2 = await c.ok("GET", "/v5/market/kline", {"symbol": "BTCUSDT", "interval": "1", "limit": "1"})
                bal = await c.ok("GET", "/v5/account/wallet-balance", {"accountType": "UNIFIED"})
                return (t1, t2), bal

        (t1, t2), bal = asyncio.run(probe())
        assert int(t2["list"][0][0]) > int(t1["list"][0][0])
        assert bal["list"][0]["coin"][0]["walletBalance"] == "10000"
    finally:
        proc.send_signal(2)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            raise
    assert proc.returncode == 0


async def test_unknown_method_on_private_path(sim_url):
    async with aiohttp.ClientSession() as s, s.get(f"{sim_url}/v5/order/create") as r:
        assert r.status == 405
