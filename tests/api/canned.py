"""A tiny aiohttp server on 127.0.0.1 returning canned answers (the edge the simulator can't produce)."""

from __future__ import annotations

import asyncio
import json
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web


@dataclass
class Canned:
    status: int = 200
    body: bytes | str | dict = b""
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0


@dataclass
class Seen:
    method: str
    path: str
    raw_query: str
    body: bytes
    headers: dict[str, str]
    at: float = 0.0


def envelope(result: dict | None = None, code: int = 0, msg: str = "OK") -> dict:
    return {"retCode": code, "retMsg": msg, "result": result or {}, "retExtInfo": {}, "time": int(time.time() * 1000)}


INSTRUMENT = {
    "symbol": "BTCUSDT", "contractType": "LinearPerpetual", "status": "Trading", "baseCoin": "BTC",
    "quoteCoin": "USDT", "settleCoin": "USDT", "priceFilter": {"minPrice": "0.10", "maxPrice": "1999999.80", "tickSize": "0.10"},
    "lotSizeFilter": {"maxOrderQty": "1190.000", "minOrderQty": "0.001", "qtyStep": "0.001",
                      "maxMktOrderQty": "500.000", "minNotionalValue": "5"},
}


class CannedServer:
    """Queue answers per path; unqueued paths get a default OK envelope. Records every request."""

    def __init__(self) -> None:
        self.queues: dict[str, deque[Canned]] = {}
        self.defaults: dict[str, Canned] = {
            "/v5/market/time": Canned(body=lambda_time()),
            "/v5/market/instruments-info": Canned(body=envelope({"list": [INSTRUMENT], "nextPageCursor": ""})),
        }
        self.seen: list[Seen] = []
        self._runner: web.AppRunner | None = None
        self.url = ""

    def push(self, path: str, *answers: Canned) -> None:
        self.queues.setdefault(path, deque()).extend(answers)

    def requests_to(self, path: str) -> list[Seen]:
        return [s for s in self.seen if s.path == path]

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        body = await request.read()
        self.seen.append(Seen(request.method, request.path, request.rel_url.raw_query_string, body,
                              dict(request.headers), time.monotonic()))
        queue = self.queues.get(request.path)
        if queue:
            answer = queue.popleft()
        elif request.path == "/v5/market/time":
            answer = Canned(body=lambda_time())
        else:
            answer = self.defaults.get(request.path, Canned(body=envelope()))
        if answer.delay:
            await asyncio.sleep(answer.delay)
        payload = answer.body
        if isinstance(payload, dict):
            payload = json.dumps(payload).encode()
        elif isinstance(payload, str):
            payload = payload.encode()
        return web.Response(status=answer.status, body=payload, headers=answer.headers)

    async def start(self) -> str:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self.url = f"http://127.0.0.1:{port}"
        return self.url

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()


def lambda_time() -> dict[str, Any]:
    now_ns = time.time_ns()
    return envelope({"timeSecond": str(now_ns // 10**9), "timeNano": str(now_ns)})
