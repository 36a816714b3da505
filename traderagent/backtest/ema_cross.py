"""The plain EMA fast/slow crossover that vectorbt and backtrader also run: the engine's speed and parity yardstick.

Backtest only (not a service strategy): long only, a fixed quantity, no stop; in at the open after a cross up,
out at the open after a cross down. The benchmark (bench/bench_backtest.py), the parameter sweep's tests and
the engine's jump-over-positions test use it.
"""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal
from typing import Any, ClassVar

import numpy as np
import pandas as pd

from traderagent.strategies import indicators as ind
from traderagent.strategies.base import BaseStrategy
from traderagent.strategies.params import Param, timeframe_param
from traderagent.strategies.types import (
    BaseMarketAnalysis,
    BaseSignal,
    ExitReason,
    PositionInfo,
    PreparedData,
    SignalArrays,
    SignalDirection,
)


class EmaCross(BaseStrategy):
    """Plain EMA fast/slow crossover, long only, no stop: the vectorbt/backtrader reference in our protocol.

    Crossing as backtrader's CrossOver: up at i when the last NON-ZERO (fast - slow) before i was < 0 and
    fast > slow at i. TA-Lib's EMA is seeded with the SMA of the first `period` closes, like backtrader's.
    """

    PARAMS: ClassVar[tuple[Param, ...]] = (
        Param("fast", int, 20, "fast EMA", low=Decimal(2)),
        Param("slow", int, 50, "slow EMA", low=Decimal(3)),
        Param("qty", Decimal, Decimal(1), "order quantity", low=Decimal(0), low_open=True),
        timeframe_param("1m", "candle timeframe"),
    )

    def __init__(self, params: Mapping[str, Any] | None = None, **kw: Any) -> None:
        super().__init__(params, **kw)
        self.fast, self.slow = self._int_param("fast"), self._int_param("slow")
        if self.fast >= self.slow:
            raise ValueError("parameter 'fast' must be smaller than 'slow'")
        self.qty = self._dec_param("qty")
        self.timeframes = (self._str_param("timeframe"),)
        self.min_candles = self.slow + 1

    @property
    def strategy_type(self) -> str:
        return "ema_cross"

    def prepare(self, *frames: pd.DataFrame) -> PreparedData:
        data = PreparedData.from_frame(frames[-1])
        fast, slow = ind.ema(data.close, self.fast), ind.ema(data.close, self.slow)
        sign = np.sign(fast - slow)
        sign[np.isnan(sign)] = 0  # before the slow EMA exists: no side
        # a cross is a change of side between consecutive candles of non-zero difference
        nz = np.flatnonzero(sign)
        side = sign[nz]
        turns = nz[1:][side[1:] != side[:-1]]
        up = np.zeros(len(sign), dtype=bool)
        up[turns[sign[turns] > 0]] = True
        down = np.zeros(len(sign), dtype=bool)
        down[turns[sign[turns] < 0]] = True
        data.columns = {"up": up, "down": down}
        return data

    def analyze_at(self, prepared: PreparedData, i: int) -> BaseMarketAnalysis:
        up = bool(prepared.columns["up"][i])
        return BaseMarketAnalysis("bullish" if up else "unknown", 0.0, 0.0, prepared.timestamp(i), "ema_cross")

    def signal_candidates(self, prepared: PreparedData) -> np.ndarray:
        return prepared.columns["up"]

    def signal_arrays(self, prepared: PreparedData) -> SignalArrays:
        """The whole decision at once: the engine books it without per-candle calls (equal, tested)."""
        return SignalArrays(prepared.columns["up"], prepared.columns["down"], SignalDirection.LONG, self.qty)

    def exit_candidates(self, prepared: PreparedData) -> np.ndarray:
        """Only a cross down exits (no stop, nothing else changes)."""
        return prepared.columns["down"]

    def signal_at(self, prepared: PreparedData, i: int, balance: Decimal) -> BaseSignal | None:
        if self._positions or not prepared.columns["up"][i]:
            return None
        price = self.price_of(prepared.close[i])
        return BaseSignal(SignalDirection.LONG, price, Decimal(0), None, self.qty, 1.0, None, "ema_cross")

    def on_candle_close(self, prepared: PreparedData, i: int) -> list[PositionInfo]:
        if not prepared.columns["down"][i]:
            return []
        out = list(self._positions.values())
        for pos in out:
            pos.exit_reason = ExitReason.SIGNAL_REVERSED
        return out

