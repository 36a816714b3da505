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

from traderagent.strategies.base import (
    BaseMarketAnalysis,
    BaseSignal,
    BaseStrategy,
    ExitReason,
    PositionInfo,
    PreparedData,
    SignalDirection,
    round_down,
    round_up,
    to_decimal,
)
from traderagent.strategies.smc.mtf import MTFData, MTFState, Setup, SMCMultiTimeframe, SMCParams

_MAX_USED_ZONES = 500  # remembered traded zones (restart-safe, bounded)


class SMCStrategyAdapter(BaseStrategy):
    """strategy_type "smc"; frames (htf, mtf, ltf) in the order of ``timeframes``."""

    DEFAULTS: ClassVar[dict[str, Any]] = {
        "timeframes": ("4h", "1h", "15m"),  # bias, zones, entry (entry last)
        "swing_lengths": (5, 5, 3),  # fractal lookback per timeframe (confirmation delay = same)
        "close_break": True,  # BOS/CHoCH need a close beyond the swing (False: a wick suffices)
        "close_mitigation": False,  # OB mitigated by a close (True) or any trade (False) through it
        "min_fvg_pct": 0.0,  # ignore FVGs smaller than this fraction of price
        "use_order_blocks": True,
        "use_fvgs": True,
        "confirmation": "any",  # "none" | "choch" | "sweep" | "any" on the entry timeframe
        "confirmation_window": 8,  # entry candles the confirmation may lie back
        "atr_period": 14,  # entry-TF ATR for the stop buffer
        "atr_buffer": 0.5,  # stop = zone edge -/+ atr_buffer * ATR
        "min_risk_reward": 2.5,
        "max_risk_reward": 6.0,  # a liquidity target further than this uses min_risk_reward instead
        "risk_per_trade": "0.01",  # fraction of balance lost at the stop
        "max_positions": 1,
        "breakeven_at_r": 1.0,  # move the stop to entry once price reached this many R (None: off)
        "exit_on_bias_flip": False,  # exit when the HTF structure turns against the position
    }
    timeframes: tuple[str, ...] = ("4h", "1h", "15m")

    def __init__(self, params: Mapping[str, Any] | None = None, **kwargs: Any) -> None:
        super().__init__(params, **kwargs)
        p = self.params
        self.smc_params = SMCParams(
            timeframes=tuple(str(tf) for tf in p["timeframes"]),
            swing_lengths=tuple(self._int(v, "swing_lengths") for v in p["swing_lengths"]),
            close_break=self._bool("close_break"),
            close_mitigation=self._bool("close_mitigation"),
            min_fvg_pct=float(self._dec_param("min_fvg_pct")),
            use_order_blocks=self._bool("use_order_blocks"),
            use_fvgs=self._bool("use_fvgs"),
            confirmation=self._choice_param("confirmation", ("none", "choch", "sweep", "any")),
            confirmation_window=self._int_param("confirmation_window", 1),
            atr_period=self._int_param("atr_period", 1),
            atr_buffer=float(self._dec_param("atr_buffer")),
            min_risk_reward=float(self._dec_param("min_risk_reward", positive=True)),
            max_risk_reward=float(self._dec_param("max_risk_reward", positive=True)),
        )
        risk = self._dec_param("risk_per_trade", positive=True)
        if risk >= 1:
            raise ValueError("parameter 'risk_per_trade' must be < 1")
        self.max_positions = self._int_param("max_positions", 1)
        self.breakeven_at_r = self._dec_param("breakeven_at_r", positive=True, allow_none=True)
        self.exit_on_bias_flip = self._bool("exit_on_bias_flip")
        self.timeframes = self.smc_params.timeframes
        self.min_candles = max(30, 2 * self.smc_params.atr_period, 6 * max(self.smc_params.swing_lengths))
        self.engine = SMCMultiTimeframe(self.smc_params)
        self._higher: tuple[pd.DataFrame, pd.DataFrame] | None = None
        self._used_zones: list[str] = []

    @property
    def strategy_type(self) -> str:
        return "smc"

    # ------------------------------------------------------------ params
    def _bool(self, name: str) -> bool:
        value = self.params[name]
        if not isinstance(value, bool):
            raise ValueError(f"parameter {name!r} must be true/false, got {value!r}")
        return value

    @staticmethod
    def _int(value: Any, name: str) -> int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValueError(f"parameter {name!r} needs integers, got {value!r}")
        return value

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
