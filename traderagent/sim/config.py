"""Simulator configuration: instruments, price source, fees, per-endpoint rate limits and fault injection."""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal

from traderagent.sim.market import DEFAULT_SYMBOLS, SymbolSpec

# ByBit's default per-UID, per-endpoint limits (requests per rolling second; docs/exchange.md section 5)
DEFAULT_RATE_LIMITS: dict[str, int] = {
    "/v5/order/create": 10, "/v5/order/amend": 10, "/v5/order/cancel": 10, "/v5/order/cancel-all": 10,
    "/v5/order/realtime": 50, "/v5/order/history": 50, "/v5/execution/list": 50,
    "/v5/position/list": 50, "/v5/position/set-leverage": 10, "/v5/position/switch-mode": 10,
    "/v5/position/trading-stop": 10,
    "/v5/account/wallet-balance": 50, "/v5/account/info": 50, "/v5/account/fee-rate": 5,
    "/v5/account/transaction-log": 25,
    "/v5/user/query-api": 10, "/v5/asset/coin/query-info": 5,
    # the batch endpoints share their own bucket per path, charged per order (orders per rolling second)
    "/v5/order/create-batch": 10, "/v5/order/amend-batch": 10, "/v5/order/cancel-batch": 10,
}
# spot order endpoints allow more
DEFAULT_SPOT_RATE_LIMITS: dict[str, int] = {
    "/v5/order/create": 20, "/v5/order/cancel": 20, "/v5/order/cancel-all": 20,
    "/v5/order/create-batch": 20, "/v5/order/amend-batch": 20, "/v5/order/cancel-batch": 20,
}


# the permission groups of GET /v5/user/query-api, each a list of granted permissions
PERMISSION_GROUPS = ("ContractTrade", "Spot", "Wallet", "Options", "Derivatives", "CopyTrading", "BlockTrade",
                     "Exchange", "Earn", "NFT", "Affiliate")


@dataclass
class ApiKeySettings:
    """A key's settings in ByBit's API management, as GET /v5/user/query-api reports them; mutable while the
    simulator runs. The default is a new read-write trading key bound to no IP address (ByBit reports "*")."""

    read_only: bool = False  # a read-only key's POST requests answer 10005
    ips: tuple[str, ...] = ("*",)  # a bound key answers 10010 to requests from any other address
    permissions: dict[str, list[str]] = field(default_factory=lambda: {
        "ContractTrade": ["Order", "Position"], "Spot": ["SpotTrade"], "Derivatives": ["DerivativesTrade"]})


@dataclass
class Faults:
    """Injected failures; mutable while the simulator runs. Each applies per request with its probability."""

    error_rate: float = 0.0  # HTTP 502/503 with a non-JSON gateway body; the request is NOT executed
    timeout_rate: float = 0.0  # the request IS executed, then the answer waits timeout_seconds
    timeout_seconds: float = 15.0
    ratelimit_rate: float = 0.0  # retCode 10006 (HTTP 200) with rate-limit headers; not executed


@dataclass
class SimConfig:
    seed: int = 0
    speed: float = 0.0  # base (1m) candles replayed per second; 0 = frozen (set_price/step only)
    price_source: str = "real"  # "real": shipped real candles (+ seeded walk around them); "random": walk
    symbols: tuple[SymbolSpec, ...] = DEFAULT_SYMBOLS
    history_candles: int = 245_000  # 1m candles before the replay start (>= 1000 four-hour candles)
    taker_fee: Decimal = Decimal("0.00055")
    maker_fee: Decimal = Decimal("0.0002")
    slippage: Decimal = Decimal("0.0002")  # market orders fill at last * (1 +/- slippage)
    price_band: Decimal = Decimal("0.10")  # a limit may not be more than this far through the market
    default_leverage: Decimal = Decimal("10")
    funding_rate: Decimal = Decimal("0.0001")  # every 8 h of the replay's clock; > 0: longs pay shorts
    rate_limits: dict[str, int] = field(default_factory=lambda: dict(DEFAULT_RATE_LIMITS))
    spot_rate_limits: dict[str, int] = field(default_factory=lambda: dict(DEFAULT_SPOT_RATE_LIMITS))
    faults: Faults = field(default_factory=Faults)
    start_time_ms: int | None = None  # open time of the first live candle (default: now)
