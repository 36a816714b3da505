"""ByBit V5-compatible exchange simulator: aiohttp routes, auth, envelopes, rate limits, faults, harness.

An independent implementation of ByBit's side of the wire (see docs/exchange.md); it must never import
traderagent.api, so that our client is tested against the protocol and not against itself.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import time
from collections import Counter, deque
from collections.abc import Awaitable, Callable
from decimal import Decimal
from pathlib import Path

from aiohttp import web

from traderagent.sim import batch, perp, persist, protection, wire
from traderagent.sim.auth import DEFAULT_RECV_WINDOW, check_signature, check_timestamp
from traderagent.sim.config import ApiKeySettings, Faults, SimConfig
from traderagent.sim.market import PriceSeries, SymbolSpec
from traderagent.sim.matching import ApiError, Engine, Fees
from traderagent.sim.streams import StreamServer

GATEWAY_BODY = {
    502: "<html>\r\n<head><title>502 Bad Gateway</title></head>\r\n<body>\r\n<center><h1>502 Bad Gateway</h1>"
         "</center>\r\n</body>\r\n</html>\r\n",
    503: "<html>\r\n<head><title>503 Service Temporarily Unavailable</title></head>\r\n<body>\r\n<center>"
         "<h1>503 Service Temporarily Unavailable</h1></center>\r\n</body>\r\n</html>\r\n",
}


SAVE_EVERY_S = 5.0  # the replay position (prices only: fills and requests save at once)


def now_ms() -> int:
    return time.time_ns() // 1_000_000


class _HttpError(Exception):
    def __init__(self, status: int, body: dict) -> None:
        super().__init__(status)
        self.status = status
        self.body = body


class ExchangeSimulator:
    """The simulated exchange plus its test harness: accounts, prices (``set_price``, ``step``), the book
    and balances as ByBit would report them, and injected faults (``faults``)."""

    def __init__(self, config: SimConfig | None = None) -> None:
        self.config = config or SimConfig()
        cfg = self.config
        start = cfg.start_time_ms or now_ms()
        self.specs: dict[str, SymbolSpec] = {s.symbol: s for s in cfg.symbols}
        self.series: dict[str, PriceSeries] = {
            s.symbol: PriceSeries.build(s, history=cfg.history_candles, source=cfg.price_source, seed=cfg.seed,
                                        now_ms=start)
            for s in cfg.symbols
        }
        fees = Fees(cfg.taker_fee, cfg.maker_fee, cfg.slippage, cfg.price_band, cfg.default_leverage)
        self.engine = Engine(self.specs, self.price, now_ms, fees, cfg.seed)
        self._rng = random.Random(cfg.seed)
        self._windows: dict[tuple[str, str, str], deque[int]] = {}
        self.request_counts: Counter[str] = Counter()
        self.key_settings: dict[str, ApiKeySettings] = {}
        self.base_url: str | None = None
        self._runner: web.AppRunner | None = None
        self._replay_task: asyncio.Task | None = None
        self._pending: set[asyncio.Task] = set()
        self.state_path: Path | None = None
        # per symbol, the next funding time on the replay's candle clock
        self.next_funding: dict[str, int] = {s: perp.next_funding_ms(series.live.ts) for s, series in self.series.items()}
        self.streams = StreamServer(self, now_ms)  # the V5 WebSocket endpoints; ``streams.drop_all()`` cuts them
        # tests: awaited as a request arrives, before anything checks it: holds one back "in the network"
        self.on_request: Callable[[web.Request], Awaitable[None]] | None = None

    # --- persistence (see persist.py) --------------------------------------------------------------
    def keep_state(self, path: Path) -> int | None:
        """Restore the state saved in ``path`` (if any) and save it there from now on. Call after
        ``add_account`` and before ``start``; returns the port the saved simulator listened on."""
        state = persist.load(path)
        if state is not None:
            persist.restore(self, state)
        persist.save(self, path)  # a folder it cannot write to is said now, not at the first order
        self.state_path = path
        return state["port"] if state else None

    def save_state(self) -> None:
        if self.state_path is not None:
            persist.save(self, self.state_path)

    @property
    def faults(self) -> Faults:
        return self.config.faults

    # --- harness -----------------------------------------------------------------------------------
    def add_account(self, api_key: str, api_secret: str, balances: dict[str, Decimal] | None = None,
                    key: ApiKeySettings | None = None) -> None:
        """Register an API key/secret with starting wallet balances (coin -> Decimal) and the key's settings."""
        self.engine.add_account(api_key, api_secret, balances)
        self.key_settings[api_key] = key or ApiKeySettings()

    def key(self, api_key: str) -> ApiKeySettings:
        """The settings of an account's key (ByBit's defaults for an account registered without any)."""
        return self.key_settings.setdefault(api_key, ApiKeySettings())

    def price(self, symbol: str) -> Decimal:
        return self.series[symbol].price

    def set_price(self, symbol: str, price: Decimal) -> int:
        """Move the market to ``price`` now; resting orders it touches fill. Returns the number filled."""
        series = self.series[symbol]
        series.set_price(Decimal(price))
        filled = self.engine.match(symbol, series.price, series.price)
        self.streams.on_price(symbol)
        return filled

    def step(self, symbol: str, n: int = 1) -> int:
        """Advance ``symbol``'s replay by n 1m candles, filling what each candle's range touches."""
        series, tick, filled = self.series[symbol], self.specs[symbol].tick_size, 0
        for _ in range(n):
            lo, hi = series.step()
            filled += self.engine.match(symbol, tick * lo, tick * hi)
            self._settle_funding(symbol)
            self.streams.on_price(symbol, closed=True)
        return filled

    def _settle_funding(self, symbol: str) -> None:
        """Charge funding when the replay's clock reaches the symbol's next funding time."""
        now = self.series[symbol].live.ts
        while now >= self.next_funding[symbol]:
            self.charge_funding(symbol)
            self.next_funding[symbol] += perp.FUNDING_INTERVAL_MS

    def charge_funding(self, symbol: str) -> int:
        """Settle ``symbol``'s funding now at ``config.funding_rate``; returns the positions charged."""
        charged = perp.charge_funding(self.engine, symbol, self.config.funding_rate)
        if charged:
            self.streams.on_funding(symbol)
        return charged

    def step_all(self, n: int = 1) -> int:
        return sum(self.step(s, n) for s in self.series)

    def advance_all(self, fraction: float) -> int:
        """Move every symbol's live candle to ``fraction`` of its replay path, filling what it touches."""
        filled = 0
        for symbol, series in self.series.items():
            moved = series.advance(fraction)
            if moved is not None:
                tick = self.specs[symbol].tick_size
                filled += self.engine.match(symbol, tick * moved[0], tick * moved[1])
                self.streams.on_price(symbol)
        return filled

    def fill(self, api_key: str, link_id: str, qty: Decimal | None = None) -> dict:
        """Fill the resting order ``link_id`` (only ``qty`` of it: a partial fill) at its limit price, as a
        counterparty would between two of the client's requests (cancel races, partial fills)."""
        o = self.engine.fill_resting(self.engine.accounts[api_key], link_id, qty)
        return o.to_wire(self.specs[o.symbol])

    def orders(self, api_key: str | None = None, *, symbol: str | None = None,
               open_only: bool = True) -> list[dict]:
        """Orders as the exchange sees them (wire dicts + "category", newest first); open ones by default."""
        out = []
        for acct in self._accounts(api_key):
            source = acct.open_orders.values() if open_only else acct.orders
            for o in reversed(list(source)):
                if symbol is None or o.symbol == symbol:
                    out.append({**o.to_wire(self.specs[o.symbol]), "category": o.category})
        return sorted(out, key=lambda d: -int(d["createdTime"]))

    def positions(self, api_key: str) -> list[dict]:
        """Non-flat linear positions (wire dicts)."""
        acct = self.engine.accounts[api_key]
        return [wire.position(self, acct, p) for p in acct.positions.values() if p.size]

    def balance(self, api_key: str) -> dict[str, Decimal]:
        """walletBalance per coin."""
        return dict(self.engine.accounts[api_key].wallet)

    def available(self, api_key: str, coin: str = "USDT") -> Decimal:
        return self.engine.available(self.engine.accounts[api_key], coin)

    def executions(self, api_key: str) -> list[dict]:
        return [e.to_wire() for e in reversed(self.engine.accounts[api_key].executions)]

    def _accounts(self, api_key: str | None) -> list:
        if api_key is None:
            return list(self.engine.accounts.values())
        return [self.engine.accounts[api_key]]

    # --- lifecycle ---------------------------------------------------------------------------------
    async def start(self, host: str = "127.0.0.1", port: int = 0) -> str:
        """Serve on host:port (0 = a free port); returns the base URL."""
        app = web.Application(client_max_size=1 << 20)
        self._add_routes(app)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.5)
        await self._runner.setup()
        site = web.TCPSite(self._runner, host, port)
        try:
            await site.start()
        except BaseException:
            await self._runner.cleanup()
            self._runner = None
            raise
        bound = self._runner.addresses[0][1]  # the bound port when port=0
        self.base_url = f"http://{host}:{bound}"
        self._replay_task = asyncio.create_task(self._replay())
        return self.base_url

    async def stop(self) -> None:
        if self._replay_task is not None:
            self._replay_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._replay_task
            self._replay_task = None
            self.save_state()
        if self._runner is not None:
            await self.streams.drop_all()
            await self._runner.cleanup()
            self._runner = None

    async def _replay(self) -> None:
        """Step every symbol at ``config.speed`` candles per second (speed may change at run time)."""
        loop = asyncio.get_running_loop()
        last, carry = loop.time(), 0.0
        saved = last
        while True:
            speed = self.config.speed
            await asyncio.sleep(min(0.5, max(0.02, 1 / speed)) if speed > 0 else 0.1)
            now = loop.time()
            # at most a second's worth of candles at once: a loop stalled by a busy machine slows the market
            # rather than replaying the whole stall in one burst that stalls it longer (and the desk with it)
            carry = min(carry + (now - last) * max(0.0, self.config.speed), max(self.config.speed, 1.0))
            last = now
            n = int(carry)
            filled = 0
            if n:
                carry -= n
                filled += self.step_all(n)
            filled += self.advance_all(carry)  # between candle closes the price moves too, as a real one does
            if filled or now - saved >= SAVE_EVERY_S:  # a fill is saved before any request can see it
                self.save_state()
                saved = now

    # --- HTTP plumbing -----------------------------------------------------------------------------
    def _add_routes(self, app: web.Application) -> None:
        public: dict[str, Callable[..., dict]] = {
            "/v5/market/time": wire.market_time, "/v5/market/tickers": wire.tickers,
            "/v5/market/instruments-info": wire.instruments, "/v5/market/kline": wire.kline,
            "/v5/market/orderbook": wire.orderbook,
        }
        private_get = {
            "/v5/account/wallet-balance": wire.wallet_balance, "/v5/account/info": wire.account_info,
            "/v5/account/fee-rate": wire.fee_rate, "/v5/user/query-api": wire.query_api,
            "/v5/asset/coin/query-info": wire.coin_info, "/v5/order/realtime": wire.realtime,
            "/v5/order/history": wire.history, "/v5/execution/list": wire.executions,
            "/v5/position/list": wire.position_list, "/v5/account/transaction-log": wire.transaction_log,
        }
        private_post = {
            "/v5/order/create": wire.create, "/v5/order/cancel": wire.cancel,
            "/v5/order/cancel-all": wire.cancel_all, "/v5/position/set-leverage": wire.set_leverage,
            "/v5/position/switch-mode": wire.switch_mode,
            "/v5/position/trading-stop": protection.trading_stop, "/v5/order/amend": batch.amend,
        }
        for path, fn in public.items():
            app.router.add_get(path, self._wrap(fn, private=False), allow_head=False)
        for path, fn in private_get.items():
            app.router.add_get(path, self._wrap(fn, private=True), allow_head=False)
        for path, fn in private_post.items():
            app.router.add_post(path, self._wrap(fn, private=True))
        for path, batch_fn in BATCHES.items():
            app.router.add_post(path, self._wrap(batch_fn, private=True))
        self.streams.add_routes(app)

    def _wrap(self, fn: Callable[..., dict | batch.Reply], *, private: bool) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
        async def handler(request: web.Request) -> web.StreamResponse:
            return await self._handle(request, fn, private)
        return handler

    def _chance(self, rate: float) -> bool:
        return rate > 0 and self._rng.random() < rate

    async def _handle(self, request: web.Request, fn: Callable[..., dict | batch.Reply], private: bool) -> web.StreamResponse:
        if self.on_request is not None:
            await self.on_request(request)
        path = request.path
        self.request_counts[path] += 1
        faults = self.faults
        if self._chance(faults.error_rate):
            status = self._rng.choice((502, 503))
            return web.Response(status=status, text=GATEWAY_BODY[status], content_type="text/html")
        headers: dict[str, str] = {}
        msg = "OK"
        try:
            acct = await self._authenticate(request) if private else None
            params = await self._params(request)
            if self._chance(faults.ratelimit_rate):
                if private:
                    headers = self._limit_headers(self._limit_for(path, params), 0, now_ms() + 1000)
                raise ApiError(10006, "Too many visits. Exceeded the API Rate Limit.")
            granted = 1
            if acct is not None:
                self._check_key(acct.api_key, request)
                cost = batch.cost(params) if path in BATCHES else 1
                headers, granted = self._rate_limit(acct.api_key, path, params, cost)
            result = fn(self, acct, params, granted) if path in BATCHES else fn(self, acct, params)
            if request.method == "POST":  # durable before the answer: the desk may act on it at once
                self.save_state()
            if path == "/v5/user/query-api":
                msg = ""
            if isinstance(result, batch.Reply):
                body = wire.envelope(0, msg, result.result)
                body["retExtInfo"] = {"list": result.ext}
            else:
                body = wire.envelope(0, msg, result)
        except ApiError as e:
            if isinstance(e, _RateLimited):
                headers = e.headers
            body = wire.envelope(e.code, e.msg, {})
        except _HttpError as e:
            return web.Response(status=e.status, text=json.dumps(e.body), content_type="application/json")
        resp = web.Response(text=json.dumps(body, separators=(",", ":")), content_type="application/json",
                            headers=headers)
        if self._chance(faults.timeout_rate):  # already executed: the client just never hears back in time
            await asyncio.sleep(faults.timeout_seconds)
        return resp

    async def _params(self, request: web.Request) -> dict:
        if request.method == "GET":
            return dict(request.query)
        raw = await request.read()
        if not raw:
            return {}
        try:
            data = json.loads(raw)
        except ValueError:
            raise ApiError(10001, "params error: request body is not valid JSON") from None
        if not isinstance(data, dict):
            raise ApiError(10001, "params error: request body must be a JSON object")
        return data

    async def _authenticate(self, request: web.Request):
        h = request.headers
        key, sign, ts = h.get("X-BAPI-API-KEY"), h.get("X-BAPI-SIGN"), h.get("X-BAPI-TIMESTAMP")
        if not key or not sign or not ts:
            raise _HttpError(401, wire.envelope(10003, "API key is invalid.", {}))
        acct = self.engine.accounts.get(key)
        if acct is None:
            raise ApiError(10003, "API key is invalid.")
        recv = h.get("X-BAPI-RECV-WINDOW") or str(DEFAULT_RECV_WINDOW)
        check_timestamp(ts, recv, now_ms())
        if request.method == "GET":
            payload, lenient = request.rel_url.raw_query_string.encode(), True
        else:
            payload, lenient = await request.read(), False
        check_signature(acct.api_secret, ts, key, h.get("X-BAPI-RECV-WINDOW") or "", payload, sign,
                        lenient_query=lenient)
        return acct

    def _check_key(self, api_key: str, request: web.Request) -> None:
        """The key's settings: a bound key answers only its IP addresses, a read-only key cannot write."""
        key = self.key(api_key)
        if "*" not in key.ips and request.remote not in key.ips:
            raise ApiError(10010, "Unmatched IP, please check your API key's bound IP addresses.")
        if key.read_only and request.method == "POST":
            raise ApiError(10005, "Permission denied, please check your API key permissions.")

    def _limit_for(self, path: str, params: dict) -> int:
        if params.get("category") == "spot" and path in self.config.spot_rate_limits:
            return self.config.spot_rate_limits[path]
        return self.config.rate_limits.get(path, 50)

    @staticmethod
    def _limit_headers(limit: int, remaining: int, reset: int) -> dict[str, str]:
        return {"X-Bapi-Limit": str(limit), "X-Bapi-Limit-Status": str(max(0, remaining)),
                "X-Bapi-Limit-Reset-Timestamp": str(reset)}

    def _rate_limit(self, api_key: str, path: str, params: dict, cost: int = 1) -> tuple[dict[str, str], int]:
        """Rolling 1 s window per (key, endpoint, spot-or-not); over the limit -> 10006 (HTTP 200). A batch
        costs one unit per order: it is granted what is left (its later items fail), nothing left -> 10006."""
        limit = self._limit_for(path, params)
        bucket = "spot" if params.get("category") == "spot" and path in self.config.spot_rate_limits else ""
        win = self._windows.setdefault((api_key, path, bucket), deque())
        now = now_ms()
        while win and win[0] <= now - 1000:
            win.popleft()
        granted = min(cost, limit - len(win))
        if granted <= 0:
            headers = self._limit_headers(limit, 0, win[0] + 1000)
            raise _RateLimited(headers)
        win.extend([now] * granted)
        return self._limit_headers(limit, limit - len(win), now), granted


BATCHES: dict[str, Callable[..., batch.Reply]] = {
    "/v5/order/create-batch": batch.create_batch, "/v5/order/amend-batch": batch.amend_batch,
    "/v5/order/cancel-batch": batch.cancel_batch,
}


class _RateLimited(ApiError):
    def __init__(self, headers: dict[str, str]) -> None:
        super().__init__(10006, "Too many visits. Exceeded the API Rate Limit.")
        self.headers = headers


__all__ = ["ApiKeySettings", "ExchangeSimulator", "Faults", "SimConfig", "SymbolSpec"]
