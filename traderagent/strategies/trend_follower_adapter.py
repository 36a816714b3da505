"""Trend follower: EMA fast/slow alignment with an ADX strength filter, ATR stop and trailing stop.

Entry (at the close of candle i, edge-triggered so one trend gives one entry):
  long  when ``ema_fast > ema_slow`` and ``ADX >= adx_threshold`` and ``+DI > -DI`` first become
  true together at i (an EMA crossover while ADX is strong, or ADX rising through the threshold
  while the EMAs are already aligned); short is the mirror (disabled on spot).
Stop: ``entry -/+ stop_atr_mult * ATR``; target: ``take_profit_r`` times that risk (None: no target).
Trailing stop: at every candle close ``close -/+ trailing_atr_mult * ATR``, applied only when it
moves the stop in the trade's favour. ``exit_on_reverse``: leave when the EMAs cross against the
position. Size: ``BaseStrategy.position_size`` (risk per trade over the stop distance).
"""

from __future__ import annotations

import math
from decimal import Decimal
from typing import Any, ClassVar

import numpy as np
import pandas as pd

from traderagent.numbers import ZERO
from traderagent.strategies import indicators as ind
from traderagent.strategies.base import BaseStrategy
from traderagent.strategies.params import RISK_PER_TRADE, Param, timeframe_param
from traderagent.strategies.types import (
    BaseMarketAnalysis,
    BaseSignal,
    ExitReason,
    PositionInfo,
    PreparedData,
    SignalDirection,
)


class TrendFollowerAdapter(BaseStrategy):
    PARAMS: ClassVar[tuple[Param, ...]] = (
        timeframe_param("1h", "decision timeframe"),
        Param("ema_fast", int, 20, "fast EMA period (< ema_slow)", low=Decimal(2), high=Decimal(200), aliases=("fast_ema",)),
        Param("ema_slow", int, 50, "slow EMA period", low=Decimal(3), high=Decimal(400), aliases=("slow_ema",)),
        Param("adx_period", int, 14, "ADX period", low=Decimal(2)),
        Param("adx_threshold", float, 25.0, "ADX at or above which the market trends", low=ZERO, high=Decimal(100)),
        Param("atr_period", int, 14, "ATR period (stops)", low=Decimal(1)),
        Param("rsi_period", int, 14, "RSI period (reported in the analysis)", low=Decimal(2)),
        Param("stop_atr_mult", Decimal, Decimal("2.0"), "stop distance in ATRs", low=Decimal("0.3"), high=Decimal(5),
              aliases=("atr_sl_multiplier", "sl_atr_mult")),
        Param("trailing_atr_mult", Decimal, Decimal("3.0"), "trailing stop distance in ATRs (none: no trailing)",
              low=Decimal("0.5"), high=Decimal(10), optional=True),
        Param("take_profit_r", Decimal, Decimal("3.0"), "fixed target in multiples of the risk (none: no target)",
              low=Decimal(1), high=Decimal(10), optional=True),
        Param("allow_short", bool, None, "trade shorts (none: on linear, not on spot)", optional=True),
        Param("exit_on_reverse", bool, True, "leave when the EMAs cross against the position"),
        RISK_PER_TRADE,
        Param("max_positions", int, 1, "positions open at once", low=Decimal(1)),
    )

    def __init__(self, params: dict[str, Any] | None = None, **kwargs: Any) -> None:
        super().__init__(params, **kwargs)
        p = self.params
        self.fast = self._int_param("ema_fast")
        self.slow = self._int_param("ema_slow")
        if self.fast >= self.slow:
            raise ValueError("parameter 'ema_fast' must be smaller than 'ema_slow'")
        self.adx_period = self._int_param("adx_period")
        self.atr_period = self._int_param("atr_period")
        self.rsi_period = self._int_param("rsi_period")
        self.adx_threshold = float(p["adx_threshold"])
        self.stop_mult = self._dec_param("stop_atr_mult")
        self.trail_mult = self._opt_dec_param("trailing_atr_mult")
        self.tp_r = self._opt_dec_param("take_profit_r")
        self.max_positions = self._int_param("max_positions")
        allow_short = p["allow_short"]
        if allow_short is None:
            allow_short = self.market_type == "linear"
        elif allow_short and self.market_type == "spot":
            raise ValueError("parameter 'allow_short' cannot be true on spot markets")
        self.allow_short = bool(allow_short)
        self.exit_on_reverse = bool(p["exit_on_reverse"])
        self.timeframes = (self._str_param("timeframe"),)
        # ADX needs 2*period-1 bars; one more so the edge trigger has a valid previous candle.
        self.min_candles = max(self.slow, 2 * self.adx_period, self.atr_period + 1) + 1

    @property
    def strategy_type(self) -> str:
        return "trend_follower"

    @property
    def history_candles(self) -> int:
        """EMAs, ATR and RSI smooth once, ADX twice (+DI/-DI, then DX)."""
        return self.min_candles + max(ind.unstable_candles(ind.ema_alpha(self.slow)),
                                      ind.unstable_candles(ind.wilder_alpha(self.adx_period), passes=2),
                                      ind.unstable_candles(ind.wilder_alpha(self.atr_period)),
                                      ind.unstable_candles(ind.wilder_alpha(self.rsi_period)))

    # ------------------------------------------------------------ vectorised part
    def prepare(self, *dataframes: pd.DataFrame) -> PreparedData:
        df = dataframes[-1]
        data = PreparedData.from_frame(df)
        h, lo, c = data.high, data.low, data.close
        fast, slow = ind.ema(c, self.fast), ind.ema(c, self.slow)
        adx, pdi, mdi = ind.adx(h, lo, c, self.adx_period)
        atr = ind.atr(h, lo, c, self.atr_period)
        with np.errstate(invalid="ignore"):
            strong = adx >= self.adx_threshold
            long_cond = (fast > slow) & strong & (pdi > mdi)
            short_cond = (fast < slow) & strong & (mdi > pdi)
        valid = np.arange(len(c)) >= self.min_candles - 1
        data.columns = {
            "ema_fast": fast,
            "ema_slow": slow,
            "adx": adx,
            "plus_di": pdi,
            "minus_di": mdi,
            "atr": atr,
            "rsi": ind.rsi(c, self.rsi_period),
            "long_entry": ind.rising_edge(long_cond) & valid & np.isfinite(atr),
            "short_entry": ind.rising_edge(short_cond) & valid & np.isfinite(atr),
        }
        return data

    def analyze_at(self, prepared: PreparedData, i: int) -> BaseMarketAnalysis:
        i = prepared.index(i)
        col = prepared.columns
        fast, slow, adx = col["ema_fast"][i], col["ema_slow"][i], col["adx"][i]
        close, atr = prepared.close[i], col["atr"][i]
        if not (math.isfinite(fast) and math.isfinite(slow) and math.isfinite(adx)):
            trend, strength = "unknown", 0.0
        elif adx < self.adx_threshold:
            trend, strength = "sideways", float(adx) / 100.0
        else:
            trend = "bullish" if fast > slow else "bearish"
            strength = min(1.0, float(adx) / 50.0)
        volatility = float(atr / close) if math.isfinite(atr) and close > 0 else 0.0
        details = {k: _f(col[k][i]) for k in ("ema_fast", "ema_slow", "adx", "plus_di", "minus_di", "atr", "rsi")}
        return BaseMarketAnalysis(trend, strength, volatility, prepared.timestamp(i), self.strategy_type, details)

    # ------------------------------------------------------------ decisions
    def signal_candidates(self, prepared: PreparedData) -> np.ndarray:
        """Entries happen only on the edge candles (shorts only when allowed)."""
        col = prepared.columns
        return col["long_entry"] | col["short_entry"] if self.allow_short else col["long_entry"]

    def signal_at(self, prepared: PreparedData, i: int, balance: Decimal) -> BaseSignal | None:
        i = prepared.index(i)
        if len(self._positions) >= self.max_positions:
            return None
        col = prepared.columns
        if col["long_entry"][i]:
            direction = SignalDirection.LONG
        elif self.allow_short and col["short_entry"][i]:
            direction = SignalDirection.SHORT
        else:
            return None
        entry = self.round_price(self.price_of(prepared.close[i]))
        risk = self.round_price(self.price_of(col["atr"][i]) * self.stop_mult)
        if risk <= 0:
            return None
        sign = 1 if direction is SignalDirection.LONG else -1
        stop = entry - sign * risk
        if stop <= 0:
            return None
        target = entry + sign * risk * self.tp_r if self.tp_r is not None else None
        target = self.round_price(target) if target is not None else None
        size = self.position_size(entry, stop, balance)
        if size <= 0:
            return None
        return BaseSignal(
            direction=direction,
            entry_price=entry,
            stop_loss=stop,
            take_profit=target,
            size=size,
            confidence=min(1.0, float(col["adx"][i]) / 50.0),
            timestamp=prepared.timestamp(i),
            strategy_type=self.strategy_type,
            signal_reason=f"ema{self.fast}/{self.slow} aligned {direction.value}, adx {col['adx'][i]:.1f}",
            risk_reward_ratio=float(self.tp_r) if self.tp_r is not None else 0.0,
            metadata={"adx": _f(col["adx"][i]), "atr": _f(col["atr"][i]), "candle_index": i},
        )

    def on_candle_close(self, prepared: PreparedData, i: int) -> list[PositionInfo]:
        """Ratchet trailing stops; exit on an EMA reversal (executed at the next price)."""
        i = prepared.index(i)
        col = prepared.columns
        close = self.price_of(prepared.close[i])
        atr = col["atr"][i]
        reversed_up = col["ema_fast"][i] > col["ema_slow"][i]
        reversed_down = col["ema_fast"][i] < col["ema_slow"][i]
        exits = []
        for pos in list(self._positions.values()):
            pos.current_price = close
            pos.unrealized_pnl = pos.gross_pnl_at(close) - pos.fees
            against = reversed_down if pos.is_long else reversed_up
            if self.exit_on_reverse and against:
                pos.exit_reason, pos.exit_price = ExitReason.SIGNAL_REVERSED, close
                exits.append(pos)
                continue
            if self.trail_mult is not None and math.isfinite(atr):
                self._ratchet(pos, close, self.price_of(atr) * self.trail_mult)
        return exits

    def _ratchet(self, pos: PositionInfo, close: Decimal, distance: Decimal) -> None:
        candidate = self.round_price(close - distance if pos.is_long else close + distance)
        better = pos.stop_loss is None or (
            candidate > pos.stop_loss if pos.is_long else candidate < pos.stop_loss
        )
        if better and candidate > 0:
            pos.stop_loss = candidate
            pos.metadata["stop_reason"] = ExitReason.TRAILING_STOP.value


def _f(value: float) -> float | None:
    return float(value) if math.isfinite(value) else None
