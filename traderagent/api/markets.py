"""Instrument rules (from /v5/market/instruments-info) and Decimal order rounding/validation."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from decimal import ROUND_DOWN, Decimal
from typing import Any

import numpy as np
import pandas as pd

from ..numbers import ZERO, decimal_or
from .exceptions import InvalidOrderError

__all__ = ["LIQUIDATION_TYPES", "Market", "check_order", "klines_to_frame", "normalize_symbol", "parse_linear", "parse_spot",
           "parse_ticker", "round_down"]

# the execType of an execution by which the exchange closed the position (takeover, auto-deleveraging)
LIQUIDATION_TYPES = ("BustTrade", "AdlTrade")


@dataclass(frozen=True, slots=True)
class Market:
    symbol: str
    base: str
    quote: str
    market_type: str
    qty_step: Decimal
    tick_size: Decimal
    min_qty: Decimal
    max_qty: Decimal | None
    max_market_qty: Decimal | None
    min_notional: Decimal

    def as_dict(self) -> dict[str, Any]:
        return {
            "symbol": self.symbol,
            "base": self.base,
            "quote": self.quote,
            "market_type": self.market_type,
            "qty_step": self.qty_step,
            "tick_size": self.tick_size,
            "min_qty": self.min_qty,
            "max_qty": self.max_qty,
            "max_market_qty": self.max_market_qty,
            "min_notional": self.min_notional,
        }


def normalize_symbol(symbol: str) -> str:
    """'BTC/USDT', 'BTC/USDT:USDT', 'btcusdt' -> 'BTCUSDT'."""
    return symbol.split(":", 1)[0].replace("/", "").replace("-", "").strip().upper()


def round_down(value: Decimal, step: Decimal) -> Decimal:
    """Largest multiple of `step` <= value (for value >= 0), with the step's exponent."""
    if step <= 0:
        return value
    units = (value / step).to_integral_value(rounding=ROUND_DOWN)
    return (units * step).quantize(step)


def nonzero_or_none(text: object) -> Decimal | None:
    """ByBit's "not set" ('', '0' or absent) -> None; otherwise the Decimal."""
    value = decimal_or(text, None)
    return value if value else None


def parse_linear(item: dict[str, Any]) -> Market | None:
    """USDT-settled LinearPerpetual in status Trading; anything else -> None."""
    if (
        item.get("contractType") != "LinearPerpetual"
        or item.get("settleCoin") != "USDT"
        or item.get("status") != "Trading"
    ):
        return None
    lot = item.get("lotSizeFilter") or {}
    price = item.get("priceFilter") or {}
    return Market(
        symbol=item["symbol"],
        base=item.get("baseCoin", ""),
        quote=item.get("quoteCoin", "USDT"),
        market_type="linear",
        qty_step=decimal_or(lot.get("qtyStep"), ZERO),
        tick_size=decimal_or(price.get("tickSize"), ZERO),
        min_qty=decimal_or(lot.get("minOrderQty"), ZERO),
        max_qty=nonzero_or_none(lot.get("maxOrderQty")),
        max_market_qty=nonzero_or_none(lot.get("maxMktOrderQty")) or nonzero_or_none(lot.get("maxOrderQty")),
        min_notional=decimal_or(lot.get("minNotionalValue"), ZERO),
    )


def parse_spot(item: dict[str, Any]) -> Market | None:
    """Spot: qty step is basePrecision, minimum notional is minOrderAmt."""
    if item.get("status") != "Trading":
        return None
    lot = item.get("lotSizeFilter") or {}
    price = item.get("priceFilter") or {}
    max_limit = nonzero_or_none(lot.get("maxLimitOrderQty")) or nonzero_or_none(lot.get("maxOrderQty"))
    return Market(
        symbol=item["symbol"],
        base=item.get("baseCoin", ""),
        quote=item.get("quoteCoin", ""),
        market_type="spot",
        qty_step=decimal_or(lot.get("basePrecision"), ZERO),
        tick_size=decimal_or(price.get("tickSize"), ZERO),
        min_qty=decimal_or(lot.get("minOrderQty"), ZERO),
        max_qty=max_limit,
        max_market_qty=nonzero_or_none(lot.get("maxMarketOrderQty")) or max_limit,
        min_notional=decimal_or(lot.get("minOrderAmt"), ZERO),
    )


def check_order(
    market: Market,
    amount: Decimal,
    price: Decimal | None,
    *,
    is_market: bool,
    reference_price: Decimal | None = None,
) -> None:
    """Raise InvalidOrderError naming the violated limit and the values. Inputs are already rounded."""
    sym = market.symbol
    if amount <= 0:
        raise InvalidOrderError(f"{sym}: amount {amount} rounds to zero on qty_step {market.qty_step}")
    if amount < market.min_qty:
        raise InvalidOrderError(f"{sym}: amount {amount} is below min_qty {market.min_qty}")
    cap = market.max_market_qty if is_market else market.max_qty
    if cap is not None and amount > cap:
        name = "max_market_qty" if is_market else "max_qty"
        raise InvalidOrderError(f"{sym}: amount {amount} is above {name} {cap}")
    if not is_market and (price is None or price <= 0):
        raise InvalidOrderError(f"{sym}: price {price} rounds to zero on tick_size {market.tick_size}")
    ref = price if not is_market else reference_price
    if ref is None:
        return
    notional = amount * ref
    if notional < market.min_notional:
        raise InvalidOrderError(
            f"{sym}: notional {notional.normalize():f} (amount {amount} x price {ref}) "
            f"is below min_notional {market.min_notional}"
        )


def parse_ticker(t: Mapping[str, Any], market_type: str, timestamp: int) -> dict[str, Any]:
    """A /v5/market/tickers item, or a ``tickers`` stream message's merged data, in the desk's shape."""
    ticker = {
        "symbol": t.get("symbol", ""),
        "last": decimal_or(t.get("lastPrice"), ZERO),
        "bid": decimal_or(t.get("bid1Price"), ZERO),
        "ask": decimal_or(t.get("ask1Price"), ZERO),
        "high": decimal_or(t.get("highPrice24h"), ZERO),
        "low": decimal_or(t.get("lowPrice24h"), ZERO),
        "volume": decimal_or(t.get("volume24h"), ZERO),
        "timestamp": timestamp,
    }
    if market_type == "linear":
        ticker["mark"] = decimal_or(t.get("markPrice"), ZERO)
        # the next funding settlement (epoch ms); None on a dated future or when not sent
        ticker["next_funding"] = int(t["nextFundingTime"]) if str(t.get("nextFundingTime") or "").isdigit() else None
    return ticker


def market_side_price(ticker: Mapping[str, Any], buy: bool) -> Decimal:
    """Where a market order starts to fill (``parse_ticker``'s shape): the ask for a buy, the bid for a sell,
    the last price when that side of the book is empty."""
    return (ticker["ask"] if buy else ticker["bid"]) or ticker["last"]


CANDLE_COLUMNS = ("open", "high", "low", "close", "volume")
Candles = tuple[np.ndarray, np.ndarray]  # (open ms: int64 (n,), OHLCV as floats: float64 (5, n))


def klines_to_frame(rows: Sequence[Sequence[Any]]) -> pd.DataFrame:
    """[[ts_ms, o, h, l, c, v], ...] -> float DataFrame indexed by a UTC DatetimeIndex."""
    return candles_frame(candle_arrays(rows))


def candle_arrays(rows: Sequence[Sequence[Any]]) -> Candles:
    """Kline rows as arrays (``candles_frame`` makes the frame; ``add_candle`` appends one row)."""
    ts = np.fromiter((int(r[0]) for r in rows), dtype=np.int64, count=len(rows))
    values = np.array([[float(r[i]) for r in rows] for i in range(1, 6)], dtype=np.float64).reshape(5, len(rows))
    return ts, values


def add_candle(candles: Candles, row: Sequence[Any], keep: int) -> Candles:
    """``candles`` with ``row`` appended, the oldest dropped beyond ``keep``: a new candle converts one row,
    not the whole history (new arrays: frames made from the old ones stay as they are)."""
    ts, values = candles
    column = np.array([[float(v)] for v in row[1:6]], dtype=np.float64)
    return np.append(ts[-keep + 1:] if keep > 1 else ts[:0], int(row[0])), np.hstack(
        (values[:, -keep + 1:] if keep > 1 else values[:, :0], column))


def candles_frame(candles: Candles) -> pd.DataFrame:
    ts, values = candles
    if not len(ts):
        index = pd.DatetimeIndex([], tz="UTC", name="timestamp")
        return pd.DataFrame({c: pd.Series(dtype="float64") for c in CANDLE_COLUMNS}, index=index)
    # microseconds, as pd.to_datetime(unit="ms") gives; one (5, n) block, each column contiguous
    index = pd.DatetimeIndex(ts.astype("datetime64[ms]").astype("datetime64[us]"), name="timestamp").tz_localize("UTC")
    return pd.DataFrame(values.T, index=index, columns=list(CANDLE_COLUMNS), dtype="float64")
