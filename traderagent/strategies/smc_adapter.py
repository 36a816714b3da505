"""SMC (Smart Money Concepts) strategy: HTF structure bias, MTF order blocks / FVGs, LTF entries.

Driven through the BaseStrategy protocol (see base.py): ``prepare(htf, mtf, ltf)`` analyses the
three frames (highest first, as in ``timeframes``); ``signal_at(prepared, i, balance)`` is the entry
decision at the close of entry candle ``i`` using only data closed by then. Live, call
``analyze_market(*frames)`` each cycle: it caches the higher frames, so ``generate_signal(df, ...)``
and ``update_positions(price, df)`` with only the entry frame reuse them (and re-analyse only the
entry frame when it changed).

Signal: price inside an unmitigated middle-TF zone pointing the HTF bias' way (+ optional entry-TF
CHoCH/sweep confirmation), stop beyond the zone + ``atr_buffer`` x ATR, target >= ``min_risk_reward`` R
(the nearest opposing liquidity when further, up to ``max_risk_reward`` R). Each zone is traded once.
Management: stop/target exits (base ``check_exits``), optional breakeven move once price reached
``breakeven_at_r`` R, optional exit when the HTF bias flips against the position.
"""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal
from typing import Any, ClassVar

import numpy as np
import pandas as pd

from traderagent.numbers import ZERO, to_decimal
from traderagent.strategies import indicators as ind
from traderagent.strategies.base import BaseStrategy
from traderagent.strategies.numeric import round_down, round_up
from traderagent.strategies.params import RISK_PER_TRADE, TIMEFRAMES, Param
from traderagent.strategies.smc.mtf import MTFData, MTFState, Setup, SMCMultiTimeframe, SMCParams
from traderagent.strategies.types import (
    BaseMarketAnalysis,
    BaseSignal,
    ExitReason,
    PositionInfo,
    PreparedData,
    SignalDirection,
)

_MAX_USED_ZONES = 500  # remembered traded zones (restart-safe, bounded)


class SMCStrategyAdapter(BaseStrategy):
    """strategy_type "smc"; frames (htf, mtf, ltf) in the order of ``timeframes``."""

    PARAMS: ClassVar[tuple[Param, ...]] = (
        Param("timeframes", str, ("4h", "1h", "15m"), "bias, zones, entry: highest first, entry last",
              choices=TIMEFRAMES, count=3),
        Param("swing_lengths", int, (5, 5, 3), "fractal lookback per timeframe (confirmation delay = same)",
              low=Decimal(1), high=Decimal(100), count=3),
        Param("close_break", bool, True, "BOS/CHoCH need a close beyond the swing (false: a wick suffices)"),
        Param("close_mitigation", bool, False, "an order block is mitigated by a close (true) or any trade through it"),
        Param("min_fvg_pct", float, 0.0, "ignore FVGs smaller than this fraction of price", low=ZERO, high=Decimal("0.1")),
        Param("use_order_blocks", bool, True, "trade order blocks"),
        Param("use_fvgs", bool, True, "trade fair value gaps"),
        Param("confirmation", str, "any", "entry-timeframe confirmation", choices=("none", "choch", "sweep", "any")),
        Param("confirmation_window", int, 8, "entry candles the confirmation may lie back", low=Decimal(1)),
        Param("atr_period", int, 14, "entry-timeframe ATR period (stop buffer)", low=Decimal(1)),
        Param("max_age", int, 200, "candles of its own timeframe a zone or liquidity pool stays in play "
              "(bounds the history live needs)", low=Decimal(1), high=Decimal(2000)),
        Param("atr_buffer", float, 0.5, "stop = zone edge -/+ atr_buffer x ATR", low=ZERO, high=Decimal(10)),
        Param("min_risk_reward", float, 2.5, "smallest reward:risk of an entry", low=Decimal("1.5"), high=Decimal(10),
              aliases=("min_rr",)),
        Param("max_risk_reward", float, 6.0, "largest reward:risk (a further liquidity target uses min_risk_reward)",
              low=Decimal("1.5"), high=Decimal(20)),
        RISK_PER_TRADE,
        Param("max_positions", int, 1, "positions open at once", low=Decimal(1)),
        Param("breakeven_at_r", Decimal, Decimal("1.0"), "move the stop to entry at this many R (none: off)",
              low=ZERO, low_open=True, optional=True),
        Param("exit_on_bias_flip", bool, False, "exit when the bias timeframe's structure turns against the position"),
    )
    timeframes: tuple[str, ...] = ("4h", "1h", "15m")

    def __init__(self, params: Mapping[str, Any] | None = None, **kwargs: Any) -> None:
        super().__init__(params, **kwargs)
        p = self.params
        self.smc_params = SMCParams(
            timeframes=tuple(p["timeframes"]),
            swing_lengths=tuple(p["swing_lengths"]),
            close_break=p["close_break"],
            close_mitigation=p["close_mitigation"],
            min_fvg_pct=p["min_fvg_pct"],
            use_order_blocks=p["use_order_blocks"],
            use_fvgs=p["use_fvgs"],
            confirmation=p["confirmation"],
            confirmation_window=p["confirmation_window"],
            atr_period=p["atr_period"],
            atr_buffer=p["atr_buffer"],
            min_risk_reward=p["min_risk_reward"],
            max_risk_reward=p["max_risk_reward"],
            max_age=p["max_age"],
        )
        self.max_positions = self._int_param("max_positions")
        self.breakeven_at_r = self._opt_dec_param("breakeven_at_r")
        self.exit_on_bias_flip = bool(p["exit_on_bias_flip"])
        self.timeframes = self.smc_params.timeframes
        self.min_candles = max(30, 2 * self.smc_params.atr_period, 6 * max(self.smc_params.swing_lengths))
        self.engine = SMCMultiTimeframe(self.smc_params)
        self._higher: tuple[pd.DataFrame, pd.DataFrame] | None = None
        self._used_zones: list[str] = []

    @property
    def strategy_type(self) -> str:
        return "smc"

    @property
    def history_candles(self) -> int:
        """Candles of each timeframe live analyses: the ATR's unstable period, and the zones and pools still in
        play (``max_age``) with room before them for the swings that form them."""
        atr = ind.unstable_candles(ind.wilder_alpha(self.smc_params.atr_period))
        return self.min_candles + max(atr, 2 * self.smc_params.max_age)

    # ------------------------------------------------------------ analysis
    def prepare(self, *dataframes: pd.DataFrame) -> PreparedData:
        """Frames (htf, mtf, ltf); or only the entry frame, reusing the last higher frames seen."""
        if len(dataframes) == 3:
            htf, mtf, ltf = dataframes
            self._higher = (htf, mtf)
        elif len(dataframes) == 1:
            ltf = dataframes[0]
        else:
            raise ValueError(f"SMC expects 3 frames {self.timeframes} (or the entry frame), got {len(dataframes)}")
        prepared = PreparedData.from_frame(ltf)
        data = None
        if self._higher is not None and len(ltf) and all(len(f) for f in self._higher):
            data = self.engine.prepare(*self._higher, ltf)
        prepared.extra["smc"] = data
        return prepared

    def _state(self, prepared: PreparedData, i: int) -> tuple[MTFData | None, MTFState | None]:
        data: MTFData | None = prepared.extra.get("smc")
        if data is None or len(prepared) == 0:
            return None, None
        return data, self.engine.state_at(data, prepared.index(i))

    def analyze_at(self, prepared: PreparedData, i: int) -> BaseMarketAnalysis:
        data, state = self._state(prepared, i)
        ts = prepared.timestamp(prepared.index(i)) if len(prepared) else None
        if data is None or state is None:
            return BaseMarketAnalysis("unknown", 0.0, 0.0, ts, self.strategy_type, {"reason": "higher timeframes missing"})
        z = data.zones
        rows = state.zone_rows
        inside = rows[(z.bottom[rows] <= state.close) & (z.top[rows] >= state.close)]
        trend = {1: "bullish", -1: "bearish"}.get(state.bias, "unknown")
        strength = {"bos": 1.0, "choch": 0.6}.get(state.bias_event, 0.0)
        vol = state.atr / state.close if state.close > 0 and state.atr == state.atr else 0.0
        details = {
            "bias": state.bias,
            "bias_event": state.bias_event,
            "bullish_zones": int((z.direction[rows] > 0).sum()),
            "bearish_zones": int((z.direction[rows] < 0).sum()),
            "price_in_zone": [
                {"kind": "ob" if z.is_ob[r] else "fvg", "direction": int(z.direction[r]),
                 "top": float(z.top[r]), "bottom": float(z.bottom[r])}
                for r in inside
            ],
            "liquidity_above": state.liquidity_above,
            "liquidity_below": state.liquidity_below,
            "entry_choch": state.choch_recent,
            "entry_sweep": state.sweep_recent,
        }
        return BaseMarketAnalysis(trend, strength, vol, ts, self.strategy_type, details)

    # ------------------------------------------------------------ entries
    def signal_at(self, prepared: PreparedData, i: int, balance: Decimal) -> BaseSignal | None:
        i = prepared.index(i)
        if len(self._positions) >= self.max_positions or i + 1 < self.min_candles:
            return None
        data, state = self._state(prepared, i)
        if data is None or state is None:
            return None
        setup = self.engine.find_setup(data, state, exclude=set(self._used_zones))
        if setup is None:
            return None
        return self._signal(setup, state, prepared, i, to_decimal(balance))

    def signal_candidates(self, prepared: PreparedData) -> np.ndarray:
        """Candles with an HTF bias, a finite ATR and the entry confirmation (vectorised superset)."""
        data: MTFData | None = prepared.extra.get("smc")
        if data is None:
            return np.zeros(len(prepared), dtype=bool)
        mask = self.engine.candidates(data)
        mask[: max(self.min_candles - 1, 0)] = False
        return mask

    def _signal(self, s: Setup, state: MTFState, prepared: PreparedData, i: int, balance: Decimal) -> BaseSignal | None:
        long = s.direction > 0
        if not long and self.market_type == "spot":  # spot cannot sell coins it does not hold
            return None
        entry = self.round_price(self.price_of(s.entry))
        # round the stop away from the entry and the target toward it: the R:R never improves by rounding
        stop = (round_down if long else round_up)(self.price_of(s.stop), self.tick_size)
        target = (round_down if long else round_up)(self.price_of(s.target), self.tick_size)
        sign = 1 if long else -1
        risk, reward = (entry - stop) * sign, (target - entry) * sign
        if risk <= 0 or reward <= 0 or stop <= 0 or target <= 0:
            return None
        rr = reward / risk
        if rr < to_decimal(self.smc_params.min_risk_reward):
            return None
        size = self.position_size(entry, stop, min(balance, self.allocated_capital))
        if size <= 0:
            return None
        confidence = 0.5 + 0.15 * (s.confirmation != "none") + 0.15 * (state.bias_event == "bos")
        confidence += 0.1 * (s.zone_kind == "ob") + 0.1 * (s.target_kind == "liquidity")
        return BaseSignal(
            direction=SignalDirection.LONG if long else SignalDirection.SHORT,
            entry_price=entry,
            stop_loss=stop,
            take_profit=target,
            size=size,
            confidence=min(confidence, 1.0),
            timestamp=prepared.timestamp(i),
            strategy_type=self.strategy_type,
            signal_reason=f"{'long' if long else 'short'} in {s.zone_kind.upper()} with {state.bias_event.upper()} bias"
            + (f", {s.confirmation} confirmed" if s.confirmation != "none" else ""),
            risk_reward_ratio=float(rr),
            metadata={
                "zone_id": s.zone_id,
                "zone_kind": s.zone_kind,
                "zone_top": str(self.price_of(s.zone_top)),
                "zone_bottom": str(self.price_of(s.zone_bottom)),
                "bias_event": state.bias_event,
                "confirmation": s.confirmation,
                "target_kind": s.target_kind,
                "atr": str(self.price_of(state.atr)),
            },
        )

    def open_position(self, signal: BaseSignal, size: Decimal, fill_price: Decimal, **kwargs: Any) -> PositionInfo:
        pos = super().open_position(signal, size, fill_price, **kwargs)
        zone_id = signal.metadata.get("zone_id")
        if zone_id and zone_id not in self._used_zones:
            self._used_zones = [*self._used_zones, zone_id][-_MAX_USED_ZONES:]
        return pos

    # ------------------------------------------------------------ management
    def on_candle_close(self, prepared: PreparedData, i: int) -> list[PositionInfo]:
        i = prepared.index(i)
        if len(prepared) == 0 or not self._positions:
            return []
        high, low = self.price_of(prepared.high[i]), self.price_of(prepared.low[i])
        for pos in self._positions.values():
            self._maybe_breakeven(pos, high, low)
        if not self.exit_on_bias_flip:
            return []
        _, state = self._state(prepared, i)
        if state is None or state.bias == 0:
            return []
        out = []
        for pos in self._positions.values():
            if state.bias == (-1 if pos.is_long else 1):
                pos.exit_reason = ExitReason.SIGNAL_REVERSED
                pos.exit_price = self.price_of(prepared.close[i])
                out.append(pos)
        return out

    def _maybe_breakeven(self, pos: PositionInfo, high: Decimal, low: Decimal) -> None:
        if self.breakeven_at_r is None or pos.metadata.get("breakeven") or pos.stop_loss is None:
            return
        risk = abs(pos.entry_price - to_decimal(pos.metadata.get("initial_stop", pos.stop_loss)))
        if risk <= 0:
            return
        trigger = self.breakeven_at_r * risk
        reached = (high - pos.entry_price >= trigger) if pos.is_long else (pos.entry_price - low >= trigger)
        if not reached:
            return
        # only ever tighten: long stops move up to entry, short stops down to entry
        better = pos.entry_price > pos.stop_loss if pos.is_long else pos.entry_price < pos.stop_loss
        if better:
            pos.stop_loss = pos.entry_price
            pos.metadata["stop_reason"] = ExitReason.BREAKEVEN.value
        pos.metadata["breakeven"] = True

    # ------------------------------------------------------------ state
    def get_state(self) -> dict[str, Any]:
        state = super().get_state()
        state["used_zones"] = list(self._used_zones)
        return state

    def load_state(self, state: Mapping[str, Any]) -> None:
        super().load_state(state)
        self._used_zones = [str(z) for z in state.get("used_zones", [])][-_MAX_USED_ZONES:]

    def reset(self) -> None:
        super().reset()
        self._used_zones = []


__all__ = ["SMCStrategyAdapter"]
