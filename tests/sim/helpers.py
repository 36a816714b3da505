"""A minimal signed ByBit V5 HTTP client for the simulator tests (deliberately independent of traderagent.api)."""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from typing import Any
from urllib.parse import urlencode

import aiohttp
from pybit.unified_trading import HTTP
from yarl import URL


def bybit_sign(secret: str, ts: str, key: str, recv: str, payload: str | bytes) -> str:
    raw = payload if isinstance(payload, bytes) else payload.encode()
    return hmac.new(secret.encode(), f"{ts}{key}{recv}".encode() + raw, hashlib.sha256).hexdigest()


class SignedClient:
    """Signs exactly the bytes it sends; ``ts_offset_ms`` / ``tamper`` let tests break things on purpose."""

    def __init__(self, base_url: str, key: str = "test-key", secret: str = "test-secret",
                 recv_window: str = "5000") -> None:
        self.base_url = base_url
        self.key = key
        self.secret = secret
        self.recv_window = recv_window
        self.session = aiohttp.ClientSession()

    async def close(self) -> None:
        await self.session.close()

    async def __aenter__(self) -> SignedClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    def _headers(self, payload: str, ts_offset_ms: int, sign: str | None) -> dict[str, str]:
        ts = str(int(time.time() * 1000) + ts_offset_ms)
        return {"X-BAPI-API-KEY": self.key, "X-BAPI-TIMESTAMP": ts, "X-BAPI-RECV-WINDOW": self.recv_window,
                "X-BAPI-SIGN": sign or bybit_sign(self.secret, ts, self.key, self.recv_window, payload),
                "Content-Type": "application/json"}

    async def get(self, path: str, params: dict | str | None = None, *, ts_offset_ms: int = 0,
                  signed: bool = True, sign: str | None = None,
                  timeout: float = 10) -> tuple[int, Any, dict[str, str]]:
        query = params if isinstance(params, str) else urlencode(params or {})
        url = URL(f"{self.base_url}{path}?{query}" if query else f"{self.base_url}{path}", encoded=True)
        headers = self._headers(query, ts_offset_ms, sign) if signed else {}
        async with self.session.get(url, headers=headers, timeout=aiohttp.ClientTimeout(total=timeout)) as r:
            return r.status, await _body(r), dict(r.headers)

    async def post(self, path: str, body: dict | str, *, ts_offset_ms: int = 0, sign: str | None = None,
                   sent_body: str | None = None, timeout: float = 10) -> tuple[int, Any, dict[str, str]]:
        raw = body if isinstance(body, str) else json.dumps(body, separators=(",", ":"))
        headers = self._headers(raw, ts_offset_ms, sign)
        async with self.session.post(f"{self.base_url}{path}", data=(sent_body or raw).encode(), headers=headers,
                                     timeout=aiohttp.ClientTimeout(total=timeout)) as r:
            return r.status, await _body(r), dict(r.headers)

    async def ok(self, method: str, path: str, params: dict) -> dict:
        """Call and assert retCode 0; returns result."""
        status, body, _ = await (self.get(path, params) if method == "GET" else self.post(path, params))
        assert status == 200, body
        assert body["retCode"] == 0, body
        return body["result"]

    async def code(self, method: str, path: str, params: dict) -> tuple[int, str]:
        status, body, _ = await (self.get(path, params) if method == "GET" else self.post(path, params))
        assert status == 200, body
        return body["retCode"], body["retMsg"]


async def _body(r: aiohttp.ClientResponse) -> Any:
    text = await r.text()
    try:
        return json.loads(text)
    except ValueError:
        return text


def pybit_session(sim_url: str) -> HTTP:
    """pybit's HTTP client (an oracle: not ours) pointed at the simulator with the test account."""
    session = HTTP(testnet=False, api_key="test-key", api_secret="test-secret", max_retries=1, retry_delay=0,
                   timeout=5)
    session.endpoint = sim_url  # pybit has no base-URL argument
    return session
