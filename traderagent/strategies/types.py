"""Value types of the strategy contract: signals, positions, analysis, performance, order intents.

Plain dataclasses (JSON-safe through ``to_dict``); money and quantities are ``Decimal``. Their meaning
in the driving loops is described in ``strategies/base.py``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from enum import Enum
from typing import Any

import numpy as np
import pandas as pd

from traderagent.numbers import ZERO, to_decimal
from traderagent.utils.plain import json_safe


class SignalDirection(str, Enum):
    LONG = "long"
    SHORT = "short"


class ExitReason(str, Enum):
    TAKE_PROFIT = "take_profit"
    STOP_LOSS = "stop_loss"
    TRAILING_STOP = "trailing_stop"
    BREAKEVEN = "breakeven"
    PARTIAL_CLOSE = "partial_close"
    MANUAL = "manual"
    SIGNAL_REVERSED = "signal_reversed"
    RISK_LIMIT = "risk_limit"
    TIMEOUT = "timeout"
    GRID_PAIR = "grid_pair"  # the counter order of a grid lot filled
    LIQUIDATION = "liquidation"  # the exchange took the position over (or auto-deleveraged it)


def _parse_ts(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value) if value else None


@dataclass
class BaseMarketAnalysis:
    trend: str  # "bullish" | "bearish" | "sideways" | "unknown"
    trend_strength: float  # 0..1
    volatility: float  # ATR / close
    timestamp: datetime | None
    strategy_type: str
    details: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return json_safe(self)


@dataclass
class BaseSignal:
    direction: SignalDirection
    entry_price: Decimal
    stop_loss: Decimal
    take_profit: Decimal | None
    size: Decimal
    confidence: float
    timestamp: datetime | None
    strategy_type: str
    signal_reason: str = ""
    risk_reward_ratio: float = 0.0
    metadata: dict[str, Any] = field(default_factory=dict)

    @property
    def risk_amount(self) -> Decimal:
        """Price distance to the stop (positive when the stop is on the losing side)."""
        if self.direction is SignalDirection.LONG:
            return self.entry_price - self.stop_loss
        return self.stop_loss - self.entry_price

    @property
    def reward_amount(self) -> Decimal:
        if self.take_profit is None:
            return ZERO
        if self.direction is SignalDirection.LONG:
            return self.take_profit - self.entry_price
        return self.entry_price - self.take_profit

    def to_dict(self) -> dict[str, Any]:
        return json_safe(self)


@dataclass
class PositionInfo:
    position_id: str
    direction: SignalDirection
    entry_price: Decimal  # average entry (fees excluded)
    current_price: Decimal
    size: Decimal
    stop_loss: Decimal | None
    take_profit: Decimal | None
    unrealized_pnl: Decimal
    entry_time: datetime | None
    strategy_type: str
    metadata: dict[str, Any] = field(default_factory=dict)
    status: str = "open"  # "open" | "closed"
    fees: Decimal = ZERO  # quote fees paid so far (entry + exit)
    exit_price: Decimal | None = None  # trigger price while pending exit, fill price once closed
    exit_reason: ExitReason | None = None
    exit_time: datetime | None = None
    realized_pnl: Decimal | None = None  # net of all fees, set when closed
    cost_basis: Decimal | None = None  # exact sum(price*qty) once averaged into (entry_price rounds)

    @property
    def is_long(self) -> bool:
        return self.direction is SignalDirection.LONG

    def gross_pnl_at(self, price: Decimal) -> Decimal:
        cost = self.cost_basis if self.cost_basis is not None else self.entry_price * self.size
        value = price * self.size
        return value - cost if self.is_long else cost - value

    def to_dict(self) -> dict[str, Any]:
        return json_safe(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> PositionInfo:
        def dec(key: str) -> Decimal | None:
            return to_decimal(data[key]) if data.get(key) is not None else None

        return cls(
            position_id=data["position_id"],
            direction=SignalDirection(data["direction"]),
            entry_price=to_decimal(data["entry_price"]),
            current_price=to_decimal(data["current_price"]),
            size=to_decimal(data["size"]),
            stop_loss=dec("stop_loss"),
            take_profit=dec("take_profit"),
            unrealized_pnl=to_decimal(data.get("unrealized_pnl", "0")),
            entry_time=_parse_ts(data.get("entry_time")),
            strategy_type=data["strategy_type"],
            metadata=dict(data.get("metadata") or {}),
            status=data.get("status", "open"),
            fees=to_decimal(data.get("fees", "0")),
            exit_price=dec("exit_price"),
            exit_reason=ExitReason(data["exit_reason"]) if data.get("exit_reason") else None,
            exit_time=_parse_ts(data.get("exit_time")),
            realized_pnl=dec("realized_pnl"),
            cost_basis=dec("cost_basis"),
        )


@dataclass
class StrategyPerformance:
    total_trades: int = 0
    winning_trades: int = 0
    losing_trades: int = 0
    win_rate: float = 0.0
    total_pnl: Decimal = ZERO
    profit_factor: float | None = None  # None: no losing trade
    sharpe_ratio: float | None = None  # None: undefined (fewer than two trades, or no variance)
    max_drawdown: float = 0.0
    avg_trade_pnl: Decimal = ZERO
    total_fees: Decimal = ZERO
    metadata: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        out = json_safe(self)
        for key in ("win_rate", "profit_factor", "sharpe_ratio", "max_drawdown"):
            if out[key] is not None:
                out[key] = round(out[key], 4)
        return out


@dataclass(frozen=True)
class OrderIntent:
    """An order a ladder strategy wants resting (limit), executed now (market) or armed (stop)."""

    tag: str
    side: str  # "buy" | "sell"
    order_type: str  # "limit" | "market" | "stop"
    qty: Decimal
    price: Decimal | None
    reduce_only: bool = False

    def __post_init__(self) -> None:
        if self.side not in ("buy", "sell"):
            raise ValueError(f"OrderIntent.side must be buy/sell, got {self.side!r}")
        if self.order_type not in ("limit", "market", "stop"):
            raise ValueError(f"OrderIntent.order_type invalid: {self.order_type!r}")
        if self.order_type != "market" and self.price is None:
            raise ValueError(f"OrderIntent {self.tag}: {self.order_type} order needs a price")

    def to_dict(self) -> dict[str, Any]:
        return json_safe(self)


@dataclass(frozen=True)
class SignalArrays:
    """A signal strategy's whole decision as arrays (base.py's optional ``signal_arrays``): one position at a
    time of a fixed ``size``, no stop or target; enter at the close of i where ``entries[i]`` while flat, exit
    at the close of i where ``exits[i]`` while in the position (the candle it opened at included)."""

    entries: np.ndarray  # bool per entry-frame candle
    exits: np.ndarray
    direction: SignalDirection
    size: Decimal
    exit_reason: ExitReason = ExitReason.SIGNAL_REVERSED


@dataclass
class PreparedData:
    """Arrays of the entry frame (plus indicator columns) computed once by ``prepare``."""

    open_ms: np.ndarray  # int64 candle open times, UTC ms
    open: np.ndarray
    high: np.ndarray
    low: np.ndarray
    close: np.ndarray
    volume: np.ndarray
    columns: dict[str, np.ndarray] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)  # strategy specific (higher frames, maps)

    def __len__(self) -> int:
        return len(self.close)

    def timestamp(self, i: int) -> datetime | None:
        if len(self.open_ms) == 0:
            return None
        return datetime.fromtimestamp(int(self.open_ms[i]) / 1000, tz=UTC)

    def index(self, i: int) -> int:
        """Normalise negative indices (-1 = last candle)."""
        return i + len(self) if i < 0 else i

    @classmethod
    def from_frame(cls, df: pd.DataFrame) -> PreparedData:
        idx = df.index
        if isinstance(idx, pd.DatetimeIndex):
            ts = idx.tz_localize("UTC") if idx.tz is None else idx.tz_convert("UTC")
            open_ms = ts.as_unit("ms").asi8.astype(np.int64)
        elif "timestamp_ms" in df.columns:
            open_ms = df["timestamp_ms"].to_numpy(dtype=np.int64)
        else:
            open_ms = np.zeros(0, dtype=np.int64)

        def col(name: str) -> np.ndarray:
            return np.ascontiguousarray(df[name].to_numpy(dtype=np.float64))

        return cls(open_ms, col("open"), col("high"), col("low"), col("close"), col("volume"))


__all__ = [
    "BaseMarketAnalysis",
    "BaseSignal",
    "ExitReason",
    "OrderIntent",
    "PositionInfo",
    "PreparedData",
    "SignalArrays",
    "SignalDirection",
    "StrategyPerformance",
]
