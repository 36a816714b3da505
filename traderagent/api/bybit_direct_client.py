"""Async ByBit V5 REST client (aiohttp + tenacity + aiolimiter).

Wire rules (docs/exchange.md): the query string / JSON body is built once, signed and sent
byte for byte; timestamps carry the offset measured against /v5/market/time; every order has
an orderLinkId so a create retried after an uncertain outcome never makes a second order.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import random
import re
import time
import uuid
from collections import Counter, deque
from collections.abc import Awaitable, Callable, Mapping, Sequence
from decimal import Decimal
from typing import Any, TypeVar

import aiohttp
import orjson  # ~5x faster than json for the envelope
import yarl
from aiolimiter import AsyncLimiter
from tenacity import AsyncRetrying, RetryCallState, retry_if_exception, stop_after_attempt

from ..numbers import ZERO, decimal_or, to_decimal
from ..ports import HeldStops, LimitOrder, OrderKey
from ..timeframes import bybit_interval
from .exceptions import (
    AccessDeniedError,
    AuthenticationError,
    DuplicateOrderError,
    ExchangeAPIError,
    InvalidOrderError,
    InvalidTimestampError,
    IPBannedError,
    NetworkError,
    OrderNotFoundError,
    RateLimitError,
    exception_for_retcode,
)
from .markets import (
    LIQUIDATION_TYPES,
    Market,
    check_order,
    market_side_price,
    nonzero_or_none,
    normalize_symbol,
    parse_linear,
    parse_spot,
    parse_ticker,
    round_down,
)
from .ratelimit import RollingLimiter
from .signing import build_query, format_value, sign, sign_ws_auth

__all__ = ["ByBitDirectClient", "MAINNET_URL", "DEMO_URL", "RECV_WINDOW"]

logger = logging.getLogger("traderagent.api.bybit")

MAINNET_URL = "https://api.bybit.com"
DEMO_URL = "https://api-demo.bybit.com"
RECV_WINDOW = 10000
MARKET_TYPES = ("linear", "spot")
PUBLIC_GROUP = "public"

# ByBit per-UID, per-endpoint limits (docs/exchange.md section 5), requests per rolling second.
_COMMON_LIMITS: dict[str, float] = {
    "/v5/order/realtime": 50,
    "/v5/order/history": 50,
    "/v5/execution/list": 50,
    "/v5/position/list": 50,
    "/v5/account/wallet-balance": 50,
    "/v5/position/set-leverage": 10,
    "/v5/position/trading-stop": 10,
    "/v5/account/transaction-log": 25,
    # public market data: stay well inside the 600 / 5 s IP limit
    PUBLIC_GROUP: 100,
}
_ORDER_LIMITS: dict[str, dict[str, float]] = {
    "linear": {"/v5/order/create": 10, "/v5/order/amend": 10, "/v5/order/cancel": 10, "/v5/order/cancel-all": 10},
    "spot": {"/v5/order/create": 20, "/v5/order/amend": 10, "/v5/order/cancel": 20, "/v5/order/cancel-all": 20},
}
# the batch endpoints: their own bucket per path, charged per ORDER (orders per rolling second)
_BATCH_LIMITS: dict[str, float] = {"linear": 10, "spot": 20}
_BATCH_PATHS = ("/v5/order/create-batch", "/v5/order/amend-batch", "/v5/order/cancel-batch")
BATCH_MAX_ITEMS = {"linear": 20, "spot": 10}  # ByBit's cap on orders per batch request

_ORDER_STATUS = {
    "New": "open",
    "Untriggered": "open",
    "Triggered": "open",
    "PartiallyFilled": "partially_filled",
    "Filled": "filled",
    "Cancelled": "cancelled",
    "PartiallyFilledCanceled": "cancelled",
    "Deactivated": "cancelled",
    "Rejected": "rejected",
}
WINDOW_MS = 7 * 86_400_000  # the longest time range execution/list and transaction-log answer
# stopOrderType of orders executed on a trigger (v5/enum#stopordertype)
_STOP_TYPES = frozenset({"TakeProfit", "StopLoss", "TrailingStop", "PartialTakeProfit", "PartialStopLoss", "Stop",
                         "tpslOrder", "OcoOrder", "BidirectionalTpslOrder"})
_LINK_ID_RE = re.compile(r"^[A-Za-z0-9_-]{1,36}$")
T = TypeVar("T")
_Parse = Callable[[Mapping[str, Any], Mapping[str, Any]], dict[str, Any]]  # (sent item, its answer) -> order
_Single = Callable[[dict[str, Any], bool], Awaitable[dict[str, Any]]]  # (item, maybe done) -> single endpoint


def _level(price: Decimal | None) -> str:
    """A trading-stop level on the wire: "0" cancels it."""
    return "0" if price is None else format_value(price)


RATE_WINDOW_S = 1.0  # ByBit counts its per-endpoint limits over a rolling second


def _is_retryable(exc: BaseException) -> bool:
    return isinstance(exc, NetworkError | RateLimitError) and not isinstance(exc, IPBannedError)


def _reraise(exc: BaseException) -> Exception:
    raise exc  # a cancellation is not an item's outcome


def _failure(state: RetryCallState) -> BaseException | None:
    """The exception of the try that just failed (tenacity types `outcome` as optional)."""
    return state.outcome.exception() if state.outcome is not None else None


def _wire(params: Mapping[str, Any]) -> dict[str, Any]:
    """JSON-ready body: Decimals as plain strings; bools and ints stay native JSON."""
    return {k: (format_value(v) if isinstance(v, Decimal) else v) for k, v in params.items() if v is not None}


class _Stats:
    """Counters for get_statistics(); latencies keep the last `window` samples."""

    def __init__(self, window: int = 10000) -> None:
        self.requests = 0
        self.errors: Counter[str] = Counter()
        self.retries = 0
        self.rate_limit_waits = 0
        self.latencies: deque[float] = deque(maxlen=window)

    def snapshot(self) -> dict[str, Any]:
        lat = sorted(self.latencies)
        mean = sum(lat) / len(lat) if lat else 0.0
        p95 = lat[min(len(lat) - 1, int(0.95 * len(lat)))] if lat else 0.0
        return {
            "requests": self.requests,
            "errors": dict(self.errors),
            "retries": self.retries,
            "rate_limit_waits": self.rate_limit_waits,
            "latency_ms": {"mean": round(mean, 3), "p95": round(p95, 3)},
        }


class ByBitDirectClient:
    """ByBit V5 client for one account and one market type ("linear" USDT perps or "spot")."""

    def __init__(
        self,
        api_key: str,
        api_secret: str,
        testnet: bool = False,
        market_type: str = "linear",
        base_url: str | None = None,
        *,
        timeout: float = 10.0,
        max_retries: int = 5,
        recv_window: int = RECV_WINDOW,
        rate_limits: Mapping[str, float | None] | None = None,
        enable_rate_limit: bool = True,
        backoff_base: float = 0.25,
        backoff_max: float = 8.0,
        max_reset_wait: float = 30.0,
        connection_limit: int = 100,
        order_link_prefix: str = "ta-",
    ) -> None:
        if market_type not in MARKET_TYPES:
            raise ValueError(f"market_type must be one of {MARKET_TYPES}, not {market_type!r}")
        if len(order_link_prefix) > 4 or not re.fullmatch(r"[A-Za-z0-9_-]*", order_link_prefix):
            raise ValueError("order_link_prefix: at most 4 chars of [A-Za-z0-9_-]")
        self._api_key = api_key or ""
        self._secret = (api_secret or "").encode()
        self._secrets = tuple(s for s in (api_key, api_secret) if s)
        self.testnet = testnet
        self.market_type = market_type
        self.base_url = (base_url or (DEMO_URL if testnet else MAINNET_URL)).rstrip("/")
        self.timeout = timeout
        self.max_retries = max_retries
        self.recv_window = recv_window
        self._backoff_base = backoff_base
        self._backoff_max = backoff_max
        self._max_reset_wait = max_reset_wait
        self._connection_limit = connection_limit
        self._link_prefix = order_link_prefix
        self._limiters = self._build_limiters(rate_limits, enable_rate_limit)
        self._session: aiohttp.ClientSession | None = None
        self._offset_ms = 0
        self._time_lock = asyncio.Lock()
        self._time_generation = 0
        self._banned_until = 0.0
        self._markets: dict[str, Market] = {}
        self._stats = _Stats()
        # called right before each order-create request is written (after the rate limiter and the
        # signature); it may raise to refuse the send: the desk's send gate (orchestrator/gate.py)
        self.before_order: Callable[[], None] | None = None

    def __repr__(self) -> str:  # never shows the key or secret
        return f"ByBitDirectClient(base_url={self.base_url!r}, market_type={self.market_type!r}, testnet={self.testnet})"

    # ------------------------------------------------------------------ lifecycle
    async def initialize(self) -> None:
        """Open the session, measure the clock offset, load instruments."""
        self._ensure_session()
        await self.sync_time()
        await self.load_markets()

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def __aenter__(self) -> ByBitDirectClient:
        await self.initialize()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    def _ensure_session(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            connector = aiohttp.TCPConnector(limit=self._connection_limit, keepalive_timeout=60, ttl_dns_cache=300)
            self._session = aiohttp.ClientSession(
                connector=connector,
                timeout=aiohttp.ClientTimeout(total=self.timeout),
                json_serialize=lambda o: orjson.dumps(o).decode(),
            )
        return self._session

    @property
    def category(self) -> str:
        return self.market_type

    @property
    def time_offset_ms(self) -> int:
        return self._offset_ms

    # ------------------------------------------------------------------ rate limiting
    def _build_limiters(
        self, overrides: Mapping[str, float | None] | None, enabled: bool
    ) -> dict[str, AsyncLimiter | RollingLimiter]:
        if not enabled:
            return {}
        batch = dict.fromkeys(_BATCH_PATHS, _BATCH_LIMITS[self.market_type])
        rates: dict[str, float | None] = {**_COMMON_LIMITS, **_ORDER_LIMITS[self.market_type], **batch,
                                          **(overrides or {})}
        return {key: self._batch_limiter(rate) if key in _BATCH_PATHS else self._limiter(rate)
                for key, rate in rates.items() if rate}

    @staticmethod
    def _batch_limiter(rate: float) -> RollingLimiter:
        return RollingLimiter(max(1, int(0.9 * rate)))  # charged per order; 10% margin for arrival jitter

    @staticmethod
    def _limiter(rate: float) -> AsyncLimiter:
        # Leaky bucket: capacity C + drain r admits at most C + r in any 1 s window, so C + r = 0.9 x rate
        # keeps ByBit's rolling-second limit (10% margin for arrival jitter) with a small burst C.
        budget = 0.9 * rate
        burst = max(1.0, budget / 5)
        drain = max(budget - burst, 0.5)
        return AsyncLimiter(burst, burst / drain)

    async def _throttle(self, path: str, cost: int = 1) -> None:
        limiter = self._limiters.get(PUBLIC_GROUP if path.startswith("/v5/market/") else path)
        if limiter is None:
            return
        if not limiter.has_capacity(cost):
            self._stats.rate_limit_waits += 1
        await limiter.acquire(cost)

    # ------------------------------------------------------------------ transport
    def _now_ms(self) -> int:
        return int(time.time() * 1000) + self._offset_ms

    @property
    def account_id(self) -> str:
        """The same for every client of one account and host (a hash: the key itself is never shown)."""
        return hashlib.sha256(f"{self.base_url} {self._api_key}".encode()).hexdigest()[:16]

    def ws_auth_args(self, valid_ms: int = 10_000) -> list[Any]:
        """``args`` of a private WebSocket's auth request; ``expires`` leaves ``valid_ms`` for a lagging clock."""
        expires = self._now_ms() + valid_ms
        return [self._api_key, expires, sign_ws_auth(self._secret, expires)]

    def _signed_headers(self, payload: bytes) -> dict[str, str]:
        ts = self._now_ms()
        return {
            "X-BAPI-API-KEY": self._api_key,
            "X-BAPI-TIMESTAMP": str(ts),
            "X-BAPI-SIGN": sign(self._secret, ts, self._api_key, self.recv_window, payload),
            "X-BAPI-RECV-WINDOW": str(self.recv_window),
            "Content-Type": "application/json",
        }

    async def _send_once(self, method: str, path: str, params: Mapping[str, Any], signed: bool,
                         cost: int = 1) -> dict[str, Any]:
        """One HTTP exchange: throttle, sign the exact bytes, send them, parse the envelope."""
        await self._throttle(path, cost)
        if self._banned_until > time.monotonic():
            raise IPBannedError(f"{path}: IP banned by ByBit (HTTP 403), waiting out the ban", endpoint=path)
        session = self._ensure_session()
        body: bytes | None = None
        url = self.base_url + path
        if method == "GET":
            query = build_query(params)
            payload = query.encode()
            if query:
                url = f"{url}?{query}"
        else:
            body = payload = orjson.dumps(_wire(params))
        if signed:
            headers = self._signed_headers(payload)
        else:
            headers = {"Content-Type": "application/json"} if body is not None else {}
        if self.before_order is not None and path in ("/v5/order/create", "/v5/order/create-batch"):
            # after signing: a request let through here carries a timestamp from before the check, so
            # one delayed past recv_window (a process frozen right after) is refused by the exchange
            self.before_order()
        started = time.perf_counter()
        try:
            async with session.request(method, yarl.URL(url, encoded=True), data=body, headers=headers) as resp:
                raw = await resp.read()
                status = resp.status
                reset = resp.headers.get("X-Bapi-Limit-Reset-Timestamp")
        except TimeoutError as exc:
            raise self._count(NetworkError(f"{path}: timeout after {self.timeout}s", endpoint=path)) from exc
        except aiohttp.ClientError as exc:
            raise self._count(NetworkError(f"{path}: {type(exc).__name__}", endpoint=path)) from exc
        finally:
            self._stats.requests += 1
            self._stats.latencies.append((time.perf_counter() - started) * 1000.0)
        try:
            return self._parse(path, status, raw, reset)
        except ExchangeAPIError as exc:
            raise self._count(exc) from None

    def _count(self, exc: ExchangeAPIError) -> ExchangeAPIError:
        self._stats.errors[type(exc).__name__] += 1
        logger.warning("ByBit %s failed: %s retCode=%s", exc.endpoint, type(exc).__name__, exc.ret_code)
        return exc

    def _parse(self, path: str, status: int, raw: bytes, reset: str | None) -> dict[str, Any]:
        reset_ms = int(reset) if reset and reset.isdigit() else None
        if status == 403:
            self._raise_403(path, raw)
        if status == 429:
            raise RateLimitError(f"{path}: HTTP 429 system overload", endpoint=path, reset_at_ms=reset_ms)
        if status >= 500:
            raise NetworkError(f"{path}: HTTP {status}", endpoint=path)
        try:
            data = orjson.loads(raw)
        except ValueError:
            data = None
        if not isinstance(data, dict) or not isinstance(data.get("retCode"), int):
            if status == 401:
                raise AuthenticationError(f"{path}: HTTP 401 (auth headers missing or key wrong)", endpoint=path)
            if status == 200:  # a proxy/gateway page instead of the envelope: transient
                raise NetworkError(f"{path}: non-JSON response body", endpoint=path)
            raise ExchangeAPIError(f"{path}: HTTP {status}", endpoint=path)
        code = data["retCode"]
        if code != 0:
            raise exception_for_retcode(
                code, str(data.get("retMsg", "")), path, secrets=self._secrets, reset_at_ms=reset_ms
            )
        if status != 200:
            raise ExchangeAPIError(f"{path}: HTTP {status}", endpoint=path)
        if logger.isEnabledFor(logging.DEBUG):
            logger.debug("ByBit %s retCode=0", path)
        return data

    def _raise_403(self, path: str, raw: bytes) -> None:
        text = raw[:300].decode("utf-8", "replace").lower()
        if "frequent" in text or "rate limit" in text or "too many" in text:
            self._banned_until = time.monotonic() + IPBannedError.ban_seconds
            raise IPBannedError(f"{path}: HTTP 403 IP rate limit breached; ByBit bans ~10 min", endpoint=path)
        raise AccessDeniedError(f"{path}: HTTP 403 access denied (IP region blocked or forbidden)", endpoint=path)

    async def _send(self, method: str, path: str, params: Mapping[str, Any], signed: bool,
                    cost: int = 1) -> dict[str, Any]:
        """One logical attempt; a 10002 (clock) re-syncs the offset and resends once."""
        try:
            return await self._send_once(method, path, params, signed, cost)
        except InvalidTimestampError:
            if not signed:
                raise
            await self._resync_time()
            return await self._send_once(method, path, params, signed, cost)

    async def _retry(self, attempt: Callable[[], Awaitable[T]]) -> T:
        """Run `attempt`; on NetworkError / RateLimitError retry with tenacity (exponential backoff
        + jitter, or until X-Bapi-Limit-Reset-Timestamp). The first try skips tenacity's machinery:
        it is the hot path and almost always succeeds."""
        try:
            return await attempt()
        except Exception as exc:
            if not _is_retryable(exc) or self.max_retries < 1:
                raise
            first = exc
        self._note_retry(first, 1)
        await asyncio.sleep(self._delay(first, 1))
        retrying = AsyncRetrying(
            stop=stop_after_attempt(self.max_retries),
            wait=lambda state: self._delay(_failure(state), state.attempt_number + 1),
            retry=retry_if_exception(_is_retryable),
            before_sleep=lambda state: self._note_retry(_failure(state), state.attempt_number + 1),
            reraise=True,
        )


        async def call() -> T:  # tenacity awaits only real coroutine functions, not lambdas
            return await attempt()

        return await retrying(call)

    def _delay(self, exc: BaseException | None, failures: int) -> float:
        """Seconds to wait after the `failures`-th failed try."""
        if isinstance(exc, RateLimitError) and exc.reset_at_ms is not None:
            # wait until X-Bapi-Limit-Reset-Timestamp (server clock -> ours) plus a little jitter
            self._stats.rate_limit_waits += 1
            delay = (exc.reset_at_ms - self._now_ms()) / 1000.0
            return min(max(delay, 0.0), self._max_reset_wait) + random.uniform(0, 0.05)
        if isinstance(exc, RateLimitError) and exc.per_item:
            # ByBit's windows are rolling seconds: one second after the refusal the window is free again
            return max(RATE_WINDOW_S, min(self._backoff_max, self._backoff_base * 2 ** (failures - 1)))
        exp = min(self._backoff_max, self._backoff_base * 2 ** (failures - 1))
        return random.uniform(exp / 2, exp)

    def _note_retry(self, exc: BaseException | None, failures: int) -> None:
        self._stats.retries += 1
        logger.info("ByBit retry %d of %s: %s", failures, getattr(exc, "endpoint", "?"), type(exc).__name__)

    async def _request(
        self, method: str, path: str, params: Mapping[str, Any] | None = None, *, signed: bool = True
    ) -> dict[str, Any]:
        """Send with retries (NetworkError / RateLimitError only); returns the envelope's `result`."""
        data = await self._retry(lambda: self._send(method, path, params or {}, signed))
        return data.get("result") or {}

    # ------------------------------------------------------------------ time
    async def sync_time(self) -> int:
        """Measure offset = server time - local time via /v5/market/time; returns it (ms)."""
        result = await self._request("GET", "/v5/market/time", signed=False)
        local_after = int(time.time() * 1000)
        if result.get("timeNano"):
            server_ms = int(result["timeNano"]) // 1_000_000
        else:
            server_ms = int(result.get("timeSecond", 0)) * 1000
        # taken against the local time at *receipt*: the stamp errs into the past, which the
        # recv_window tolerates, never into the future (only 1 s is tolerated there)
        self._offset_ms = server_ms - local_after if server_ms else 0
        self._time_generation += 1
        return self._offset_ms

    async def _resync_time(self) -> None:
        generation = self._time_generation
        async with self._time_lock:  # concurrent 10002s share one re-sync
            if generation == self._time_generation:
                await self.sync_time()

    # ------------------------------------------------------------------ markets
    async def load_markets(self) -> dict[str, Market]:
        """Instruments of this market type (linear: USDT LinearPerpetual Trading), all pages."""
        parse = parse_linear if self.market_type == "linear" else parse_spot
        markets: dict[str, Market] = {}
        cursor: str | None = None
        while True:
            params: dict[str, Any] = {"category": self.market_type, "limit": 1000}
            if cursor:
                params["cursor"] = cursor
            result = await self._request("GET", "/v5/market/instruments-info", params, signed=False)
            for item in result.get("list") or []:
                market = parse(item)
                if market is not None:
                    markets[market.symbol] = market
            cursor = result.get("nextPageCursor") or None
            if not cursor:
                break
        self._markets = markets
        return markets

    async def _market(self, symbol: str) -> Market:
        sym = normalize_symbol(symbol)
        if not self._markets:
            await self.load_markets()
        market = self._markets.get(sym)
        if market is None:
            raise InvalidOrderError(f"unknown {self.market_type} symbol {sym}")
        return market

    def market(self, symbol: str) -> Market:
        """Loaded instrument rules for a symbol (after initialize())."""
        sym = normalize_symbol(symbol)
        if sym not in self._markets:
            raise InvalidOrderError(f"unknown {self.market_type} symbol {sym}")
        return self._markets[sym]

    async def fetch_markets(self) -> dict[str, dict[str, Any]]:
        if not self._markets:
            await self.load_markets()
        return {sym: m.as_dict() for sym, m in self._markets.items()}

    def amount_to_precision(self, symbol: str, amount: Any) -> Decimal:
        return round_down(to_decimal(amount), self.market(symbol).qty_step)

    def price_to_precision(self, symbol: str, price: Any) -> Decimal:
        return round_down(to_decimal(price), self.market(symbol).tick_size)

    # ------------------------------------------------------------------ market data
    async def fetch_ticker(self, symbol: str) -> dict[str, Any]:
        sym = normalize_symbol(symbol)
        data = await self._send_with_retry("GET", "/v5/market/tickers", {"category": self.category, "symbol": sym})
        items = (data.get("result") or {}).get("list") or []
        if not items:
            raise InvalidOrderError(f"/v5/market/tickers: no ticker for {sym}", endpoint="/v5/market/tickers")
        return parse_ticker({"symbol": sym, **items[0]}, self.market_type, int(data.get("time") or self._now_ms()))

    async def _send_with_retry(self, method: str, path: str, params: Mapping[str, Any]) -> dict[str, Any]:
        """Like _request but returns the whole envelope (public, unsigned)."""
        return await self._retry(lambda: self._send(method, path, params, False))

    async def fetch_klines(self, symbol: str, interval: str, limit: int = 200) -> list[list[Any]]:
        """Oldest-first [ts_ms, open, high, low, close, volume]; pages back with `end` past 1000 rows."""
        sym = normalize_symbol(symbol)
        ivl = bybit_interval(interval)
        rows: dict[int, list[Any]] = {}
        end: int | None = None
        while len(rows) < limit:
            want = min(1000, limit - len(rows))
            params: dict[str, Any] = {"category": self.category, "symbol": sym, "interval": ivl, "limit": want}
            if end is not None:
                params["end"] = end
            result = await self._request("GET", "/v5/market/kline", params, signed=False)
            page = result.get("list") or []
            for r in page:
                ts = int(r[0])
                rows[ts] = [ts, Decimal(r[1]), Decimal(r[2]), Decimal(r[3]), Decimal(r[4]), Decimal(r[5])]
            if len(page) < want:
                break
            end = min(int(r[0]) for r in page) - 1
        return [rows[ts] for ts in sorted(rows)][-limit:]

    # ------------------------------------------------------------------ account
    async def fetch_api_key_info(self) -> dict[str, Any]:
        """What this key may do (GET /v5/user/query-api): {"read_only": bool, "ips": ("*",) when bound to
        no IP, "permissions": {"Wallet": ("Withdraw", ...), "ContractTrade": ("Order", "Position"), ...}}."""
        result = await self._request("GET", "/v5/user/query-api")
        return {
            "read_only": str(result.get("readOnly", "0")) == "1",
            "ips": tuple(ip.strip() for entry in result.get("ips") or () for ip in str(entry).split(",")),
            "permissions": {k: tuple(v or ()) for k, v in (result.get("permissions") or {}).items()},
        }

    async def fetch_balance(self) -> dict[str, dict[str, Decimal]]:
        """UNIFIED wallet: free = wallet - locked - order IM - position IM (never below 0)."""
        result = await self._request("GET", "/v5/account/wallet-balance", {"accountType": "UNIFIED"})
        return self.parse_balance(result.get("list") or [])

    @staticmethod
    def parse_balance(accounts: Sequence[Mapping[str, Any]]) -> dict[str, dict[str, Decimal]]:
        """wallet-balance ``list`` (or a ``wallet`` stream message's data): free, used, total per coin."""
        free: dict[str, Decimal] = {}
        used: dict[str, Decimal] = {}
        total: dict[str, Decimal] = {}
        for account in accounts:
            for c in account.get("coin") or []:
                coin = c["coin"]
                wallet = decimal_or(c.get("walletBalance"), ZERO)
                held = decimal_or(c.get("locked"), ZERO) + decimal_or(c.get("totalOrderIM"), ZERO) + decimal_or(c.get("totalPositionIM"), ZERO)
                avail = max(wallet - held, ZERO)
                total[coin] = wallet
                free[coin] = avail
                used[coin] = wallet - avail
        return {"free": free, "used": used, "total": total}

    async def fetch_positions(self, symbol: str | None = None) -> list[dict[str, Any]]:
        """Open linear positions (flat rows dropped); [] for spot."""
        if self.market_type != "linear":
            return []
        params: dict[str, Any] = {"category": "linear"}
        if symbol:
            params["symbol"] = normalize_symbol(symbol)
        else:
            params["settleCoin"] = "USDT"
        params["limit"] = 200
        rows = [self.parse_position(p) for p in await self._paged("/v5/position/list", params)]
        return [r for r in rows if r["size"]]

    @staticmethod
    def parse_position(p: Mapping[str, Any]) -> dict[str, Any]:
        """A position/list row, or a ``position`` stream row (``entryPrice`` there): size 0 when flat."""
        size = decimal_or(p.get("size"), ZERO)
        if p.get("side") not in ("Buy", "Sell"):
            size = ZERO
        return {
            "symbol": p["symbol"],
            "side": "long" if p.get("side") == "Buy" else "short",
            "size": size,
            "entry_price": decimal_or(p.get("avgPrice") or p.get("entryPrice"), ZERO),
            "mark_price": decimal_or(p.get("markPrice"), ZERO),
            "unrealized_pnl": decimal_or(p.get("unrealisedPnl"), ZERO),
            "realized_pnl": decimal_or(p.get("cumRealisedPnl"), ZERO),
            "leverage": nonzero_or_none(p.get("leverage")),
            "liq_price": nonzero_or_none(p.get("liqPrice")),  # "" beyond the price limits
            "margin": decimal_or(p.get("positionIM"), ZERO),
            "maintenance_margin": decimal_or(p.get("positionMM"), ZERO),
            "position_idx": int(p.get("positionIdx") or 0),
            "seq": int(p.get("seq") or 0),
        }

    # ------------------------------------------------------------------ perpetual risk
    async def position_mode(self, symbol: str) -> str:
        """"one-way" or "hedge": position/list answers a hedge-mode symbol with its two rows (idx 1 and 2)."""
        if self.market_type != "linear":
            return "one-way"
        result = await self._request("GET", "/v5/position/list",
                                     {"category": "linear", "symbol": normalize_symbol(symbol)})
        hedged = any(int(p.get("positionIdx") or 0) in (1, 2) for p in result.get("list") or [])
        return "hedge" if hedged else "one-way"

    async def fetch_funding(self, symbol: str | None, since_ms: int | None = None) -> list[dict[str, Any]]:
        """Funding settlements of ``symbol`` (None: of every linear symbol, in the same requests) since
        ``since_ms`` (None: the last 7 days), from the transaction log (``type=SETTLEMENT``), newest first;
        ``id`` is the log row's, ``fee`` > 0 paid (the log's ``funding`` has the opposite sign)."""
        if self.market_type != "linear":
            return []
        market = await self._market(symbol) if symbol is not None else None
        rows = []
        for start, end in _windows(since_ms):
            params = {"accountType": "UNIFIED", "category": "linear", "type": "SETTLEMENT",
                      "startTime": start, "endTime": end, "limit": 50}
            if market is not None:
                params["baseCoin"] = market.base
            rows += await self._paged("/v5/account/transaction-log", params)
        return [{"id": r.get("id", ""), "symbol": r.get("symbol", ""), "side": r.get("side", ""),
                 "size": abs(decimal_or(r.get("size"), ZERO)), "mark": decimal_or(r.get("tradePrice"), ZERO),
                 "fee": -decimal_or(r.get("funding"), ZERO), "rate": decimal_or(r.get("feeRate"), ZERO),
                 "timestamp": int(r.get("transactionTime") or 0)}
                for r in rows if r.get("type") == "SETTLEMENT" and (market is None or r.get("symbol") == market.symbol)]

    async def fetch_liquidations(self, symbol: str, since_ms: int | None = None) -> list[dict[str, Any]]:
        """The exchange's liquidations (``BustTrade``) and auto-deleveragings (``AdlTrade``) of the linear
        position in ``symbol`` since ``since_ms`` (None: the last 7 days), one per order, oldest first:
        ``id`` (the order's), ``exec_type``, ``side`` (of the closing order), ``qty``, ``avg_price``, ``fee``."""
        if self.market_type != "linear":
            return []
        sym = normalize_symbol(symbol)
        rows = []
        for exec_type in LIQUIDATION_TYPES:
            for start, end in _windows(since_ms):
                params = {"category": "linear", "symbol": sym, "execType": exec_type, "startTime": start,
                          "endTime": end, "limit": 100}
                rows += await self._paged("/v5/execution/list", params)
        orders: dict[str, dict[str, Any]] = {}
        for r in sorted(rows, key=lambda r: int(r.get("execTime") or 0)):
            qty, price = decimal_or(r.get("execQty"), ZERO), decimal_or(r.get("execPrice"), ZERO)
            o = orders.setdefault(r.get("orderId", ""), {"id": r.get("orderId", ""), "exec_type": r.get("execType"),
                                                        "side": str(r.get("side", "")).lower(), "qty": ZERO,
                                                        "value": ZERO, "fee": ZERO, "timestamp": 0})
            o["qty"] += qty
            o["value"] += qty * price
            o["fee"] += decimal_or(r.get("execFee"), ZERO)
            o["timestamp"] = int(r.get("execTime") or 0)
        return [{k: v for k, v in o.items() if k != "value"} | {"avg_price": o["value"] / o["qty"]}
                for o in orders.values() if o["qty"]]

    async def set_leverage(self, symbol: str, leverage: Any) -> Decimal:
        """Set buy and sell leverage (one-way mode); "not modified" (110043) counts as success."""
        if self.market_type != "linear":
            raise InvalidOrderError("set_leverage is for linear contracts only")
        lev = format_value(to_decimal(leverage).normalize())
        body = {"category": "linear", "symbol": normalize_symbol(symbol), "buyLeverage": lev, "sellLeverage": lev}
        try:
            await self._request("POST", "/v5/position/set-leverage", body)
        except InvalidOrderError as exc:
            if exc.ret_code != 110043:
                raise
        return Decimal(lev)

    async def _paged(self, path: str, params: dict[str, Any], *, max_items: int | None = None) -> list[dict]:
        """Follow nextPageCursor (passed through verbatim) until the last page or max_items."""
        items: list[dict] = []
        cursor: str | None = None
        while True:
            page_params = dict(params, cursor=cursor) if cursor else params
            result = await self._request("GET", path, page_params)
            items.extend(result.get("list") or [])
            cursor = result.get("nextPageCursor") or None
            if not cursor or (max_items is not None and len(items) >= max_items):
                return items[:max_items] if max_items is not None else items

    # ------------------------------------------------------------------ orders
    def new_client_order_id(self) -> str:
        """prefix + uuid4 hex, at most 36 chars of [A-Za-z0-9_-]."""
        return (self._link_prefix + uuid.uuid4().hex)[:36]

    def _link_id(self, client_order_id: str | None) -> str:
        if client_order_id is None:
            return self.new_client_order_id()
        if not _LINK_ID_RE.match(client_order_id):
            raise InvalidOrderError(
                f"client_order_id {client_order_id!r} must be 1-36 chars of [A-Za-z0-9_-]"
            )
        return client_order_id

    @staticmethod
    def _side(side: str) -> str:
        s = str(side).lower()
        if s not in ("buy", "sell"):
            raise InvalidOrderError(f"side must be 'buy' or 'sell', not {side!r}")
        return "Buy" if s == "buy" else "Sell"

    async def create_limit_order(
        self,
        symbol: str,
        side: str,
        amount: Any,
        price: Any,
        *,
        client_order_id: str | None = None,
        reduce_only: bool = False,
        post_only: bool = False,
    ) -> dict[str, Any]:
        market = await self._market(symbol)
        qty = round_down(to_decimal(amount), market.qty_step)
        px = round_down(to_decimal(price), market.tick_size)
        check_order(market, qty, px, is_market=False)
        body: dict[str, Any] = {
            "category": self.category,
            "symbol": market.symbol,
            "side": self._side(side),
            "orderType": "Limit",
            "qty": qty,
            "price": px,
            "timeInForce": "PostOnly" if post_only else "GTC",
            "orderLinkId": self._link_id(client_order_id),
        }
        self._add_position_fields(body, reduce_only)
        return await self._place(body)

    async def create_market_order(
        self,
        symbol: str,
        side: str,
        amount: Any,
        *,
        client_order_id: str | None = None,
        reduce_only: bool = False,
        reference_price: Decimal | None = None,
    ) -> dict[str, Any]:
        """``reference_price``: the price the minimum notional is checked at (the ask for a buy, the bid
        for a sell), when the caller has a fresh ticker; None: one is fetched."""
        market = await self._market(symbol)
        bybit_side = self._side(side)
        qty = round_down(to_decimal(amount), market.qty_step)
        check_order(market, qty, None, is_market=True)  # qty limits first: no ticker call for a bad qty
        if reference_price is None:
            reference_price = market_side_price(await self.fetch_ticker(market.symbol), bybit_side == "Buy")
        check_order(market, qty, None, is_market=True, reference_price=reference_price)
        body: dict[str, Any] = {
            "category": self.category,
            "symbol": market.symbol,
            "side": bybit_side,
            "orderType": "Market",
            "qty": qty,
            "orderLinkId": self._link_id(client_order_id),
        }
        if self.market_type == "spot":
            body["marketUnit"] = "baseCoin"  # spot market buys are in quote coin by default
        self._add_position_fields(body, reduce_only)
        return await self._place(body)

    def _add_position_fields(self, body: dict[str, Any], reduce_only: bool) -> None:
        if self.market_type == "linear":
            body["positionIdx"] = 0
            body["reduceOnly"] = bool(reduce_only)
        elif reduce_only:
            raise InvalidOrderError("reduce_only applies to linear contracts only")

    async def _place(self, body: dict[str, Any], *, uncertain: bool = False) -> dict[str, Any]:
        """Create idempotently: after an uncertain failure, look the orderLinkId up before resending."""
        link, symbol = body["orderLinkId"], body["symbol"]

        async def attempt() -> dict[str, Any]:
            nonlocal uncertain
            if uncertain:
                found = await self._lookup(symbol, link)
                if found is not None:
                    return found
            try:
                data = await self._send("POST", "/v5/order/create", body, True)
            except NetworkError:
                uncertain = True  # it may have reached the matching engine
                raise
            except DuplicateOrderError:
                if not uncertain:
                    raise
                found = await self._lookup(symbol, link)
                if found is None:  # the duplicate is not visible yet: transient, look again
                    raise NetworkError("/v5/order/create: duplicate orderLinkId not yet visible",
                                       endpoint="/v5/order/create") from None
                return found
            return self._order_from_ack(body, data.get("result") or {})

        return await self._retry(attempt)

    async def _lookup(self, symbol: str, link: str) -> dict[str, Any] | None:
        return await self._lookup_order({"category": self.category, "symbol": symbol, "orderLinkId": link})

    async def _lookup_order(self, params: Mapping[str, Any]) -> dict[str, Any] | None:
        """Realtime then history, without its own retry loop (the caller's loop retries)."""
        for path in ("/v5/order/realtime", "/v5/order/history"):
            data = await self._send("GET", path, params, True)
            items = (data.get("result") or {}).get("list") or []
            if items:
                return self.parse_order(items[0])
        return None

    def _order_from_ack(self, body: Mapping[str, Any], ack: Mapping[str, Any]) -> dict[str, Any]:
        now = self._now_ms()
        is_limit = body["orderType"] == "Limit"
        return {
            "id": ack.get("orderId", ""),
            "client_order_id": ack.get("orderLinkId") or body["orderLinkId"],
            "symbol": body["symbol"],
            "side": body["side"].lower(),
            "type": "limit" if is_limit else "market",
            "price": body["price"] if is_limit else None,
            "amount": body["qty"],
            "filled": ZERO,
            "avg_price": None,
            "status": "open",
            "fee": ZERO,
            "reduce_only": bool(body.get("reduceOnly", False)),
            "created_at": now,
            "updated_at": now,
        }

    @staticmethod
    def parse_order(o: Mapping[str, Any]) -> dict[str, Any]:
        fee_detail = o.get("cumFeeDetail")
        if isinstance(fee_detail, dict) and fee_detail:
            fee = sum((decimal_or(v, ZERO) for v in fee_detail.values()), ZERO)
        else:
            fee = decimal_or(o.get("cumExecFee"), ZERO)
        order_type = str(o.get("orderType", "")).lower()
        created = int(o.get("createdTime") or 0)
        return {
            "id": o.get("orderId", ""),
            "client_order_id": o.get("orderLinkId", ""),
            "symbol": o.get("symbol", ""),
            "side": str(o.get("side", "")).lower(),
            "type": order_type,
            "price": nonzero_or_none(o.get("price")) if order_type == "limit" else None,
            "amount": decimal_or(o.get("qty"), ZERO),
            "filled": decimal_or(o.get("cumExecQty"), ZERO),
            "avg_price": nonzero_or_none(o.get("avgPrice")),
            "status": _ORDER_STATUS.get(str(o.get("orderStatus")), "open"),
            "fee": fee,
            "reduce_only": bool(o.get("reduceOnly", False)),
            "trigger_price": nonzero_or_none(o.get("triggerPrice")),  # conditional orders (protection)
            "created_at": created,
            "updated_at": int(o.get("updatedTime") or created),
        }

    def _id_params(self, symbol: str, order_id: str | None, client_order_id: str | None) -> dict[str, Any]:
        if not order_id and not client_order_id:
            raise InvalidOrderError("order_id or client_order_id is required")
        params: dict[str, Any] = {"category": self.category, "symbol": normalize_symbol(symbol)}
        if order_id:
            params["orderId"] = order_id
        else:
            params["orderLinkId"] = client_order_id
        return params

    async def fetch_order(
        self, symbol: str, order_id: str | None = None, client_order_id: str | None = None
    ) -> dict[str, Any] | None:
        """The order by id or orderLinkId: realtime (finds closed ones too by id), then history."""
        params = self._id_params(symbol, order_id, client_order_id)
        for path in ("/v5/order/realtime", "/v5/order/history"):
            result = await self._request("GET", path, params)
            items = result.get("list") or []
            if items:
                return self.parse_order(items[0])
        return None

    async def fetch_open_orders(self, symbol: str | None = None) -> list[dict[str, Any]]:
        params: dict[str, Any] = {"category": self.category}
        if symbol:
            params["symbol"] = normalize_symbol(symbol)
        elif self.market_type == "linear":
            params["settleCoin"] = "USDT"  # linear needs symbol | baseCoin | settleCoin
        params["limit"] = 50
        return [self.parse_order(o) for o in await self._paged("/v5/order/realtime", params)]

    async def cancel_order(
        self, order_id: str | None, symbol: str, *, client_order_id: str | None = None, confirm: bool = True
    ) -> dict[str, Any]:
        """Cancel; returns the order (status "cancelled"). Idempotent across retries.

        confirm=True (default) reads the order back after the ack so amount/filled/fee are real;
        confirm=False returns a dict built from the ack alone (one request, fields unknown = zero/empty).
        """
        params = self._id_params(symbol, order_id, client_order_id)
        uncertain = False

        async def attempt() -> tuple[dict[str, Any], bool]:
            nonlocal uncertain
            try:
                data = await self._send("POST", "/v5/order/cancel", params, True)
            except NetworkError:
                uncertain = True
                raise
            except (OrderNotFoundError, InvalidOrderError):
                # a resend after an uncertain first try: the first one may have cancelled it
                if not uncertain:
                    raise
                found = await self._lookup_order(params)
                if found is None or found["status"] != "cancelled":
                    raise
                return found, True
            return data, False

        data, done = await self._retry(attempt)
        if done:
            return data
        ack = data.get("result") or {}
        if confirm:
            found = await self._after_cancel(symbol, ack.get("orderId") or order_id, client_order_id)
            if found is not None:
                return found
        now = self._now_ms()
        return {
            "id": ack.get("orderId", order_id or ""), "client_order_id": ack.get("orderLinkId", client_order_id or ""),
            "symbol": params["symbol"], "side": "", "type": "", "price": None, "amount": ZERO, "filled": ZERO,
            "avg_price": None, "status": "cancelled", "fee": ZERO, "reduce_only": False,
            "created_at": now, "updated_at": now,
        }

    async def _after_cancel(self, symbol: str, order_id: str | None, link: str | None) -> dict[str, Any] | None:
        """Fills/fee of the cancelled order; cancel is asynchronous, so a still-open view is the ack'd cancel."""
        try:
            found = await self.fetch_order(symbol, order_id, None if order_id else link)
        except NetworkError:
            return None
        if found is not None and found["status"] in ("open", "partially_filled"):
            found["status"] = "cancelled"
        return found

    async def cancel_all_orders(self, symbol: str) -> list[str]:
        body = {"category": self.category, "symbol": normalize_symbol(symbol)}
        result = await self._request("POST", "/v5/order/cancel-all", body)
        return [item.get("orderId", "") for item in result.get("list") or []]

    async def fetch_my_trades(self, symbol: str, limit: int = 50) -> list[dict[str, Any]]:
        """Trade fills only (execType=Trade): funding, liquidation and settlement rows are not trades."""
        params = {"category": self.category, "symbol": normalize_symbol(symbol), "execType": "Trade",
                  "limit": min(max(limit, 1), 100)}
        items = await self._paged("/v5/execution/list", params, max_items=limit)
        return [
            {
                "id": e.get("execId", ""),
                "order_id": e.get("orderId", ""),
                "client_order_id": e.get("orderLinkId", ""),
                "symbol": e.get("symbol", ""),
                "side": str(e.get("side", "")).lower(),
                "price": decimal_or(e.get("execPrice"), ZERO),
                "amount": decimal_or(e.get("execQty"), ZERO),
                "fee": decimal_or(e.get("execFee"), ZERO),
                "timestamp": int(e.get("execTime") or 0),
            }
            for e in items
        ]

    # ------------------------------------------------------------------ exchange-held protection
    # TP/SL the exchange executes even when the desk is down (docs/exchange.md section 6a).
    async def set_trading_stop(self, symbol: str, *, stop_loss: Decimal | None, take_profit: Decimal | None,
                               trigger_by: str = "LastPrice") -> None:
        """Hold the linear position's stop and target on ByBit (tpslMode Full, market on trigger); None
        cancels one. Setting what is already set (34040 "not modified") counts as success."""
        if self.market_type != "linear":
            raise InvalidOrderError("trading-stop is for linear contracts; spot uses create_conditional_order")
        body = {"category": "linear", "symbol": normalize_symbol(symbol), "tpslMode": "Full", "positionIdx": 0,
                "stopLoss": _level(self.price_to_precision(symbol, stop_loss) if stop_loss else None),
                "takeProfit": _level(self.price_to_precision(symbol, take_profit) if take_profit else None),
                "slTriggerBy": trigger_by, "tpTriggerBy": trigger_by}
        try:
            await self._request("POST", "/v5/position/trading-stop", body)
        except ExchangeAPIError as exc:
            if exc.ret_code != 34040:
                raise

    async def fetch_held_stops(self, symbol: str) -> HeldStops | None:
        """The linear position's size and the stop/target ByBit holds on it; None when flat."""
        if self.market_type != "linear":
            return None
        result = await self._request("GET", "/v5/position/list",
                                     {"category": "linear", "symbol": normalize_symbol(symbol)})
        for p in result.get("list") or []:
            size = decimal_or(p.get("size"), ZERO)
            if size and p.get("side") in ("Buy", "Sell"):
                return HeldStops("long" if p["side"] == "Buy" else "short", size,
                                 nonzero_or_none(p.get("stopLoss")), nonzero_or_none(p.get("takeProfit")))
        return None

    async def create_conditional_order(self, symbol: str, side: str, amount: Any, trigger_price: Any, *,
                                       client_order_id: str | None = None) -> dict[str, Any]:
        """A market order ByBit holds until the last price reaches ``trigger_price`` (spot:
        ``orderFilter=StopOrder``, assets reserved only on trigger; linear: reduce-only, close on trigger)."""
        sym = normalize_symbol(symbol)
        trigger = self.price_to_precision(symbol, trigger_price)
        body: dict[str, Any] = {"category": self.category, "symbol": sym, "side": self._side(side),
                                "orderType": "Market", "qty": format_value(self.amount_to_precision(symbol, amount)),
                                "triggerPrice": format_value(trigger), "triggerBy": "LastPrice",
                                "orderLinkId": self._link_id(client_order_id)}
        if self.market_type == "spot":
            body |= {"orderFilter": "StopOrder", "marketUnit": "baseCoin"}
        else:
            last = to_decimal((await self.fetch_ticker(symbol))["last"])
            body |= {"triggerDirection": 1 if trigger > last else 2, "positionIdx": 0, "reduceOnly": True,
                     "closeOnTrigger": True}
        return await self._place(body)

    async def fetch_stop_executions(self, symbol: str, since_ms: int | None = None) -> list[dict[str, Any]]:
        """Orders the exchange executed on a trigger (TP/SL, conditional) since ``since_ms`` (None: ByBit's
        default, the last 7 days), oldest first:
        each a parsed order plus ``stop_order_type`` ("StopLoss", "TakeProfit", "TrailingStop", "Stop", ...)."""
        params = {"category": self.category, "symbol": normalize_symbol(symbol), "startTime": since_ms or None,
                  "orderFilter": "StopOrder" if self.market_type == "spot" else None, "limit": 50}
        items = await self._paged("/v5/order/history", {k: v for k, v in params.items() if v is not None})
        out = []
        for o in items:
            kind = str(o.get("stopOrderType") or "")
            if kind in _STOP_TYPES and decimal_or(o.get("cumExecQty"), ZERO) > 0:
                out.append(self.parse_order(o) | {"stop_order_type": kind})
        return sorted(out, key=lambda o: o["updated_at"])

    # ------------------------------------------------------------------ batches and amend
    @property
    def batch_size(self) -> int:
        """Orders per batch request: ByBit's cap, and no more than the batch bucket holds."""
        cap = BATCH_MAX_ITEMS[self.market_type]
        limiter = self._limiters.get("/v5/order/create-batch")
        return min(cap, int(limiter.max_rate)) if limiter is not None else cap

    async def place_orders_batch(self, symbol: str, orders: Sequence[LimitOrder]) -> list[dict[str, Any] | Exception]:
        """Limit orders through /v5/order/create-batch; per order (in order) the order dict or its error.
        A batch whose answer is lost is uncertain: its items answer NetworkError (look them up by orderLinkId)."""
        market = await self._market(symbol)
        bodies: list[dict[str, Any] | Exception] = []
        for o in orders:
            try:
                bodies.append(self._limit_body(market, o))
            except InvalidOrderError as exc:
                bodies.append(exc)
        return await self._batch("/v5/order/create-batch", bodies, self._order_from_ack,
                                 lambda body, lost: self._place({"category": self.category, **body}, uncertain=lost))

    def _limit_body(self, market: Market, o: LimitOrder) -> dict[str, Any]:
        qty = round_down(to_decimal(o.amount), market.qty_step)
        px = round_down(to_decimal(o.price), market.tick_size)
        check_order(market, qty, px, is_market=False)
        body: dict[str, Any] = {"symbol": market.symbol, "side": self._side(o.side), "orderType": "Limit",
                                "qty": qty, "price": px, "timeInForce": "GTC",
                                "orderLinkId": self._link_id(o.client_order_id)}
        self._add_position_fields(body, o.reduce_only)
        return body

    async def cancel_orders_batch(self, symbol: str, refs: Sequence[OrderKey]) -> list[dict[str, Any] | Exception]:
        """Cancel through /v5/order/cancel-batch; per order the ack (status "cancelled", fills unknown) or its error."""
        bodies: list[dict[str, Any] | Exception] = []
        for ref in refs:
            params = self._id_params(symbol, ref.order_id, ref.client_order_id)
            del params["category"]
            bodies.append(params)
        return await self._batch("/v5/order/cancel-batch", bodies, self._cancel_ack,
                                 lambda body, _: self.cancel_order(body.get("orderId"), body["symbol"], confirm=False,
                                                                client_order_id=body.get("orderLinkId")))

    def _cancel_ack(self, body: Mapping[str, Any], ack: Mapping[str, Any]) -> dict[str, Any]:
        now = self._now_ms()
        return {"id": ack.get("orderId", ""), "client_order_id": ack.get("orderLinkId") or body.get("orderLinkId", ""),
                "symbol": body["symbol"], "side": "", "type": "", "price": None, "amount": ZERO, "filled": ZERO,
                "avg_price": None, "status": "cancelled", "fee": ZERO, "reduce_only": False,
                "created_at": now, "updated_at": now}

    async def amend_order(self, symbol: str, ref: OrderKey, *, amount: Decimal | None = None,
                          price: Decimal | None = None) -> dict[str, Any]:
        """Change a resting order's qty and/or price in place (same ids, keeps its place if only qty falls);
        returns ``{id, client_order_id}``. A lost answer is retried: an amend to the same values is harmless."""
        market = await self._market(symbol)
        body = self._id_params(symbol, ref.order_id, ref.client_order_id)
        if amount is not None:
            body["qty"] = round_down(to_decimal(amount), market.qty_step)
        if price is not None:
            body["price"] = round_down(to_decimal(price), market.tick_size)
        ack = await self._request("POST", "/v5/order/amend", body)
        return {"id": ack.get("orderId", ""), "client_order_id": ack.get("orderLinkId", ref.client_order_id)}

    async def _batch(self, path: str, items: Sequence[dict[str, Any] | Exception], parse: _Parse,
                     one: _Single) -> list[dict[str, Any] | Exception]:
        """Send the items that are requests in chunks of ``batch_size``; each answer goes back to its slot."""
        out: list[dict[str, Any] | Exception] = list(items)
        todo = {i: item for i, item in enumerate(items) if isinstance(item, dict)}
        slots = list(todo)
        chunks = [slots[k:k + self.batch_size] for k in range(0, len(slots), self.batch_size)]
        answers = await asyncio.gather(*(self._send_chunk(path, [todo[i] for i in c], parse, one) for c in chunks))
        for chunk, answer in zip(chunks, answers, strict=True):
            for i, result in zip(chunk, answer, strict=True):
                out[i] = result
        return out

    @staticmethod
    async def _singles(bodies: list[dict[str, Any]], one: _Single, *, lost: bool) -> list[dict[str, Any] | Exception]:
        singles = await asyncio.gather(*(one(b, lost) for b in bodies), return_exceptions=True)
        return [r if isinstance(r, dict | Exception) else _reraise(r) for r in singles]

    async def _send_chunk(self, path: str, bodies: list[dict[str, Any]], parse: _Parse,
                          one: _Single) -> list[dict[str, Any] | Exception]:
        """One batch request, retried whole only when the rate limit refused it (nothing was done). A lost
        answer (maybe done) is settled item by item through ``one``, the single request's idempotent path
        (a create looks its orderLinkId up before sending again). Items past what the exchange's rate
        window granted answer 10006 each and were not executed: they go again, backing off, as the
        window moves on (a request delayed on its way can arrive right behind the previous one)."""
        if self.testnet and self.market_type == "spot":  # demo trading has batches on linear only
            return await self._singles(bodies, one, lost=False)
        out = await self._send_batch(path, bodies, parse, one)
        for failures in range(1, self.max_retries + 1):
            refused = {i: r for i, r in enumerate(out) if isinstance(r, RateLimitError) and r.per_item}
            if not refused:
                break
            first = next(iter(refused.values()))
            self._note_retry(first, failures)
            await asyncio.sleep(self._delay(first, failures))
            again = await self._send_batch(path, [bodies[i] for i in refused], parse, one)
            for i, result in zip(refused, again, strict=True):
                out[i] = result
        return out

    async def _send_batch(self, path: str, bodies: list[dict[str, Any]], parse: _Parse,
                          one: _Single) -> list[dict[str, Any] | Exception]:
        params = {"category": self.category, "request": [_wire(b) for b in bodies]}

        async def attempt() -> dict[str, Any] | None:
            try:
                return await self._send("POST", path, params, True, cost=len(bodies))
            except NetworkError:
                return None

        try:
            data = await self._retry(attempt)
        except ExchangeAPIError as exc:  # refused whole (rate limit past the retries, auth, ...)
            return [exc] * len(bodies)
        if data is None:
            return await self._singles(bodies, one, lost=True)
        rows = (data.get("result") or {}).get("list") or []
        ext = (data.get("retExtInfo") or {}).get("list") or []
        if len(rows) != len(bodies) or len(ext) != len(bodies):
            return [ExchangeAPIError(f"{path}: {len(rows)} results for {len(bodies)} orders", endpoint=path)] * len(bodies)
        return [parse(b, row) if e.get("code") == 0 else self._item_error(e, path)
                for b, row, e in zip(bodies, rows, ext, strict=True)]

    def _item_error(self, ext: Mapping[str, Any], path: str) -> ExchangeAPIError:
        exc = exception_for_retcode(int(ext.get("code") or -1), str(ext.get("msg", "")), path, secrets=self._secrets)
        if isinstance(exc, RateLimitError):
            exc.per_item = True  # this item alone was refused (not executed); the request went through
        return exc

    # ------------------------------------------------------------------ stats
    def get_statistics(self) -> dict[str, Any]:
        return self._stats.snapshot()


def _windows(since_ms: int | None) -> list[tuple[int, int]]:
    """``[since_ms, now]`` (None: the last 7 days) cut in ByBit's 7-day windows; a minute past now, for clocks
    that differ."""
    end = int(time.time() * 1000) + 60_000
    start = end - WINDOW_MS if since_ms is None else min(since_ms, end)
    return [(t, min(t + WINDOW_MS, end)) for t in range(start, end, WINDOW_MS)] or [(start, end)]
