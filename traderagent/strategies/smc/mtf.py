"""Multi-timeframe SMC setup finder: HTF bias -> MTF zones -> LTF entry, evaluated per entry index.

- bias: direction of the latest BOS/CHoCH on the highest timeframe;
- zones: unmitigated order blocks / FVGs of the middle timeframe pointing the bias' way;
- entry: the entry candle's close sits inside such a zone (optionally after an entry-TF CHoCH or
  liquidity sweep in the bias' direction within `confirmation_window` candles);
- stop beyond the zone plus an ATR buffer; target at min_risk_reward R, or at the nearest opposing
  liquidity pool when that is further (up to max_risk_reward R).

No look-ahead: at entry index i only higher-TF candles CLOSED by the close of candle i are used
(`align_higher_timeframe`), and every detection is causal, so `state_at(prepare(frames cut at i), i)`
equals `state_at(prepare(whole frames), i)`. Analyses are cached per frame identity (length,
first/last stamp, last row), so a live tick with unchanged 4h/1h frames re-analyses only the entry frame.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from traderagent.strategies.frames import align_higher_timeframe
from traderagent.strategies.indicators import atr
from traderagent.timeframes import timeframe_ms

from . import SMCResult, analyze

CONFIRMATIONS = ("none", "choch", "sweep", "any")


@dataclass(frozen=True)
class SMCParams:
    """Detection and setup parameters (the adapter maps its user-facing params onto these)."""

    timeframes: tuple[str, ...] = ("4h", "1h", "15m")
    swing_lengths: tuple[int, ...] = (5, 5, 3)
    close_break: bool = True
    close_mitigation: bool = False
    min_fvg_pct: float = 0.0
    use_order_blocks: bool = True
    use_fvgs: bool = True
    confirmation: str = "any"
    confirmation_window: int = 8
    atr_period: int = 14
    atr_buffer: float = 0.5
    min_risk_reward: float = 2.5
    max_risk_reward: float = 6.0
    max_age: int = 200  # candles (of its own timeframe) a zone or liquidity pool stays in play after forming

    def __post_init__(self) -> None:
        if len(self.timeframes) != 3:
            raise ValueError("SMC needs exactly three timeframes: bias, zones, entry (highest first)")
        ms = [timeframe_ms(tf) for tf in self.timeframes]
        if not ms[0] >= ms[1] >= ms[2]:
            raise ValueError("timeframes must go from highest to lowest")
        if len(self.swing_lengths) != 3 or min(self.swing_lengths) < 1:
            raise ValueError("swing_lengths needs three integers >= 1")
        if self.confirmation not in CONFIRMATIONS:
            raise ValueError(f"confirmation must be one of {CONFIRMATIONS}")
        if not (0 < self.min_risk_reward <= self.max_risk_reward):
            raise ValueError("need 0 < min_risk_reward <= max_risk_reward")
        if self.atr_period < 1 or self.confirmation_window < 1 or self.max_age < 1:
            raise ValueError("atr_period, confirmation_window and max_age must be >= 1")
        if self.atr_buffer < 0 or self.min_fvg_pct < 0:
            raise ValueError("atr_buffer and min_fvg_pct must be >= 0")
        if not (self.use_order_blocks or self.use_fvgs):
            raise ValueError("enable order blocks, FVGs or both")


@dataclass(frozen=True)
class ZoneTable:
    """Middle-TF zones as arrays (fast per-index filtering)."""

    is_ob: np.ndarray
    direction: np.ndarray
    top: np.ndarray
    bottom: np.ndarray
    formed: np.ndarray
    mitigated: np.ndarray
    origin_ms: np.ndarray

    @classmethod
    def build(cls, res: SMCResult, open_ms: np.ndarray, params: SMCParams) -> ZoneTable:
        """The order blocks then the FVGs (those enabled), as `SMCResult.zones` lists them."""
        parts = [(z, ob) for z, ob, on in ((res.order_block_columns, True, params.use_order_blocks),
                                           (res.fvg_columns, False, params.use_fvgs)) if on]

        def column(name: str) -> np.ndarray:
            return np.concatenate([z[name] for z, _ in parts])

        origin = column("origin_pos")
        return cls(
            is_ob=np.concatenate([np.full(len(z["formed_pos"]), ob) for z, ob in parts]),
            direction=column("direction"),
            top=column("top"),
            bottom=column("bottom"),
            formed=column("formed_pos"),
            mitigated=column("mitigated_pos"),
            origin_ms=open_ms[origin] if len(origin) else np.zeros(0, dtype=np.int64),
        )


@dataclass
class MTFData:
    """Everything `state_at` needs, computed once per set of frames."""

    htf: SMCResult
    mtf: SMCResult
    ltf: SMCResult
    zones: ZoneTable
    h_idx: np.ndarray  # per entry candle: last closed HTF candle (-1 none)
    m_idx: np.ndarray  # per entry candle: last closed MTF candle
    m_close_ms: np.ndarray  # MTF candle close times
    open_ms: np.ndarray  # entry candle open times
    high: np.ndarray
    low: np.ndarray
    close: np.ndarray
    atr: np.ndarray
    h_pools: tuple[np.ndarray, ...]  # (side, level, formed, taken)
    m_pools: tuple[np.ndarray, ...]
    # the DataFrame columns state_at reads, as arrays (it runs per bot per candle; prepare once)
    h_trend: np.ndarray  # HTF structure trend per HTF candle
    h_choch_last: np.ndarray  # per HTF candle: the latest BOS/CHoCH so far was a CHoCH
    l_choch: np.ndarray  # entry-TF CHoCH direction per candle
    l_sweep: np.ndarray  # entry-TF sweep direction per candle


@dataclass(frozen=True)
class MTFState:
    """What the three timeframes say at the close of entry candle i."""

    i: int
    bias: int  # +1 bullish, -1 bearish, 0 none yet
    bias_event: str  # "bos" | "choch" | ""
    zone_rows: np.ndarray  # indices into MTFData.zones: active at i (either direction)
    liquidity_above: float | None
    liquidity_below: float | None
    atr: float
    close: float
    choch_recent: int  # entry-TF CHoCH direction within the confirmation window (0 none)
    sweep_recent: int


@dataclass(frozen=True)
class Setup:
    """An entry candidate (floats; the adapter turns it into a Decimal signal)."""

    direction: int
    entry: float
    stop: float
    target: float
    risk_reward: float
    zone_id: str
    zone_kind: str
    zone_top: float
    zone_bottom: float
    confirmation: str
    target_kind: str  # "rr" | "liquidity"


def open_ms_of(df: pd.DataFrame) -> np.ndarray:
    idx = df.index
    if not isinstance(idx, pd.DatetimeIndex):
        raise ValueError("SMC frames need a DatetimeIndex of candle open times")
    ts = idx.tz_localize("UTC") if idx.tz is None else idx.tz_convert("UTC")
    return ts.as_unit("ms").asi8.astype(np.int64)


def _frame_key(df: pd.DataFrame) -> tuple:
    if df.empty:
        return (0,)
    index = df.index
    return (len(df), index[0], index[-1], *(float(df[k].to_numpy()[-1]) for k in ("open", "high", "low", "close")))


def _pool_arrays(res: SMCResult) -> tuple[np.ndarray, ...]:
    p = res.pool_columns
    return tuple(p[k] for k in ("side", "level", "formed_pos", "taken_pos"))


class SMCMultiTimeframe:
    """Stateful analyser: caches the per-timeframe detections between calls."""

    def __init__(self, params: SMCParams) -> None:
        self.params = params
        self._cache: dict[int, tuple[tuple, SMCResult]] = {}
        self._zone_cache: tuple[tuple, ZoneTable] | None = None

    def _analyze(self, slot: int, df: pd.DataFrame) -> SMCResult:
        key = _frame_key(df)
        hit = self._cache.get(slot)
        if hit is not None and hit[0] == key:
            return hit[1]
        p = self.params
        res = analyze(
            df,
            p.swing_lengths[slot],
            close_break=p.close_break,
            close_mitigation=p.close_mitigation,
            min_fvg_pct=p.min_fvg_pct,
        )
        self._cache[slot] = (key, res)
        return res

    def prepare(self, htf: pd.DataFrame, mtf: pd.DataFrame, ltf: pd.DataFrame) -> MTFData:
        p = self.params
        h_res, m_res, l_res = self._analyze(0, htf), self._analyze(1, mtf), self._analyze(2, ltf)
        h_ms, m_ms, l_ms = open_ms_of(htf), open_ms_of(mtf), open_ms_of(ltf)
        m_key = _frame_key(mtf)
        if self._zone_cache is None or self._zone_cache[0] != m_key:
            self._zone_cache = (m_key, ZoneTable.build(m_res, m_ms, p))
        h, low, c = (ltf[k].to_numpy(dtype=np.float64) for k in ("high", "low", "close"))
        return MTFData(
            htf=h_res,
            mtf=m_res,
            ltf=l_res,
            zones=self._zone_cache[1],
            h_idx=align_higher_timeframe(h_ms, p.timeframes[0], l_ms, p.timeframes[2]),
            m_idx=align_higher_timeframe(m_ms, p.timeframes[1], l_ms, p.timeframes[2]),
            m_close_ms=m_ms + timeframe_ms(p.timeframes[1]),
            open_ms=l_ms,
            high=h,
            low=low,
            close=c,
            atr=atr(h, low, c, p.atr_period) if len(c) > p.atr_period else np.full(len(c), np.nan),
            h_pools=_pool_arrays(h_res),
            m_pools=_pool_arrays(m_res),
            h_trend=h_res.structure_columns["trend"],
            h_choch_last=_last_event_is_choch(h_res.structure_columns["bos"], h_res.structure_columns["choch"]),
            l_choch=l_res.structure_columns["choch"],
            l_sweep=l_res.sweep_columns["sweep"],
        )

    def state_at(self, data: MTFData, i: int) -> MTFState | None:
        """None when a higher timeframe has no closed candle yet at entry index i."""
        hi, mi = int(data.h_idx[i]), int(data.m_idx[i])
        if hi < 0 or mi < 0:
            return None
        bias = int(data.h_trend[hi])
        event = ("choch" if data.h_choch_last[hi] else "bos") if bias else ""
        close = float(data.close[i])
        above, below = _nearest_pools(close, self.params.max_age, (data.h_pools, hi), (data.m_pools, mi))
        w0 = max(0, i - self.params.confirmation_window + 1)
        return MTFState(
            i=i,
            bias=bias,
            bias_event=event,
            zone_rows=self._active_zone_rows(data, i, mi),
            liquidity_above=above,
            liquidity_below=below,
            atr=float(data.atr[i]),
            close=close,
            choch_recent=_recent(data.l_choch[w0 : i + 1]),
            sweep_recent=_recent(data.l_sweep[w0 : i + 1]),
        )

    def _active_zone_rows(self, data: MTFData, i: int, mi: int) -> np.ndarray:
        z = data.zones
        alive = (z.formed <= mi) & (z.formed >= mi - self.params.max_age) & ((z.mitigated < 0) | (z.mitigated > mi))
        # entry candles after the last closed MTF candle may already have traded through a zone
        j0 = int(np.searchsorted(data.open_ms, data.m_close_ms[mi], side="left"))
        if j0 <= i:
            src_lo = data.close if self.params.close_mitigation else data.low
            src_hi = data.close if self.params.close_mitigation else data.high
            lo, hi = float(src_lo[j0 : i + 1].min()), float(src_hi[j0 : i + 1].max())
            dead_bull = np.where(z.is_ob, lo < z.bottom, lo <= z.bottom)
            dead_bear = np.where(z.is_ob, hi > z.top, hi >= z.top)
            alive &= ~np.where(z.direction > 0, dead_bull, dead_bear)
        return np.flatnonzero(alive)

    def find_setup(self, data: MTFData, state: MTFState, exclude: frozenset[str] | set[str] = frozenset()) -> Setup | None:
        """The entry candidate at state.i, or None (no bias, no zone, no confirmation, R:R too low)."""
        d = state.bias
        if d == 0 or not np.isfinite(state.atr):
            return None
        confirmation = self._confirmation(state, d)
        if confirmation is None:
            return None
        z, rows = data.zones, state.zone_rows
        inside = rows[(z.direction[rows] == d) & (z.bottom[rows] <= state.close) & (z.top[rows] >= state.close)]
        # freshest zone first; an order block before an FVG formed on the same candle
        order = np.lexsort((~z.is_ob[inside], -z.formed[inside]))
        for r in inside[order]:
            kind = "ob" if z.is_ob[r] else "fvg"
            zone_id = f"{kind}:{d}:{int(z.origin_ms[r])}"
            if zone_id not in exclude:
                return self._levels(state, kind, float(z.top[r]), float(z.bottom[r]), zone_id, confirmation)
        return None

    def candidates(self, data: MTFData) -> np.ndarray:
        """Per entry index: can `find_setup` return a setup there? (bias, finite ATR, confirmation; a superset)."""
        h_idx, n = data.h_idx, len(data.close)
        trend = data.h_trend
        bias = np.where(h_idx >= 0, trend[np.maximum(h_idx, 0)] if len(trend) else 0, 0)
        mask = (bias != 0) & (data.m_idx >= 0) & np.isfinite(data.atr)
        mode, w = self.params.confirmation, self.params.confirmation_window
        if mode == "none":
            return mask
        confirmed = np.zeros(n, dtype=bool)
        if mode in ("choch", "any"):
            confirmed |= _recent_all(data.l_choch, w) == bias
        if mode in ("sweep", "any"):
            confirmed |= _recent_all(data.l_sweep, w) == bias
        return mask & confirmed

    def _confirmation(self, state: MTFState, d: int) -> str | None:
        mode = self.params.confirmation
        if mode == "none":
            return "none"
        if mode in ("choch", "any") and state.choch_recent == d:
            return "choch"
        if mode in ("sweep", "any") and state.sweep_recent == d:
            return "sweep"
        return None

    def _levels(self, state: MTFState, kind: str, top: float, bottom: float, zone_id: str, conf: str) -> Setup | None:
        p = self.params
        d, entry, buf = state.bias, state.close, p.atr_buffer * state.atr
        stop = bottom - buf if d > 0 else top + buf
        risk = (entry - stop) * d
        if risk <= 0:
            return None
        target, target_kind = entry + d * p.min_risk_reward * risk, "rr"
        pool = state.liquidity_above if d > 0 else state.liquidity_below
        if pool is not None and p.min_risk_reward < (pool - entry) * d / risk <= p.max_risk_reward:
            target, target_kind = pool, "liquidity"
        rr = (target - entry) * d / risk
        if rr < p.min_risk_reward - 1e-9:
            return None
        return Setup(d, entry, stop, target, rr, zone_id, kind, top, bottom, conf, target_kind)


def _last_event_is_choch(bos: np.ndarray, choch: np.ndarray) -> np.ndarray:
    """Per candle: whether the latest BOS or CHoCH up to it was a CHoCH (False before any)."""
    n = len(choch)
    pos = np.arange(n)
    last = np.where((bos != 0) | (choch != 0), pos, -1)
    np.maximum.accumulate(last, out=last)
    return (last >= 0) & (choch[np.maximum(last, 0)] != 0) if n else np.zeros(0, dtype=bool)


def _recent(values: np.ndarray) -> int:
    """Direction of the latest non-zero event in the window (0 if none)."""
    nz = values[values != 0]
    return int(nz[-1]) if len(nz) else 0


def _recent_all(values: np.ndarray, window: int) -> np.ndarray:
    """`_recent` of the window ending at every index, vectorised."""
    n = len(values)
    pos = np.arange(n)
    last = np.where(values != 0, pos, -1)
    np.maximum.accumulate(last, out=last)
    seen = (last >= 0) & (last > pos - window)
    return np.where(seen, values[np.maximum(last, 0)], 0).astype(np.int64) if n else np.zeros(0, np.int64)


def _nearest_pools(price: float, max_age: int, *pools: tuple[tuple[np.ndarray, ...], int]
                   ) -> tuple[float | None, float | None]:
    """Nearest untaken swing-high pool above and swing-low pool below `price`, as of each TF's index, formed
    at most `max_age` candles before it."""
    above: list[float] = []
    below: list[float] = []
    for (side, level, formed, taken), t in pools:
        live = (formed <= t) & (formed >= t - max_age) & ((taken < 0) | (taken > t))
        above.extend(level[live & (side > 0) & (level > price)].tolist())
        below.extend(level[live & (side < 0) & (level < price)].tolist())
    return (min(above) if above else None, max(below) if below else None)
