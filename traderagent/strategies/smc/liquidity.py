"""Liquidity: resting swing levels (pools) and sweeps of them.

A sweep is a candle whose wick goes beyond the latest confirmed swing level while its close stays on
the inside (bearish sweep of a high: high > level >= close; bullish sweep of a low: low < level <= close),
counted once per level and only while that level was not yet broken by a close.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from ._arrays import ffill, first_cross, first_in_group, group_cumsum, ohlc_arrays


def _sweep(wick_beyond, close_beyond, close_inside, raw: np.ndarray) -> np.ndarray:
    start = ~np.isnan(raw)
    broken = group_cumsum(close_beyond, start)  # closes beyond the level since it was confirmed
    cond = wick_beyond & close_inside & (broken == 0)
    return first_in_group(cond, start)


def liquidity_sweeps(df: pd.DataFrame, swings: pd.DataFrame) -> pd.DataFrame:
    """Columns sweep (+1 bullish: lows swept, -1 bearish: highs swept, 0 none) and level, aligned to df."""
    _, h, low, c = ohlc_arrays(df)
    raw_hi = swings["swing_high"].to_numpy(dtype=np.float64)
    raw_lo = swings["swing_low"].to_numpy(dtype=np.float64)
    hi, lo = ffill(raw_hi), ffill(raw_lo)
    with np.errstate(invalid="ignore"):
        bear = _sweep(h > hi, c > hi, c <= hi, raw_hi)
        bull = _sweep(low < lo, c < lo, c >= lo, raw_lo)
    both = bear & bull  # an outside candle sweeping both sides tells nothing
    bear &= ~both
    bull &= ~both
    sweep = bull.astype(np.int8) - bear.astype(np.int8)
    level = np.where(bull, lo, np.where(bear, hi, np.nan))
    return pd.DataFrame({"sweep": sweep, "level": level}, index=df.index)


def liquidity_pools(df: pd.DataFrame, swings: pd.DataFrame) -> pd.DataFrame:
    """One row per confirmed swing: side (+1 buy-side above highs, -1 sell-side below lows), level,
    pivot_pos, formed_pos (confirmation), taken_pos (first later candle trading beyond it, -1 if none)."""
    _, h, low, _ = ohlc_arrays(df)
    parts = []
    for side, col, values, above in ((1, "swing_high", h, True), (-1, "swing_low", low, False)):
        formed = np.flatnonzero(~np.isnan(swings[col].to_numpy(dtype=np.float64)))
        level = swings[col].to_numpy(dtype=np.float64)[formed]
        pivot = swings[f"{col}_pos"].to_numpy()[formed]
        taken = first_cross(values, formed, level, above=above)
        parts.append(
            pd.DataFrame(
                {"side": np.full(len(formed), side, dtype=np.int8), "level": level, "pivot_pos": pivot,
                 "formed_pos": formed, "taken_pos": taken}
            )
        )
    return pd.concat(parts, ignore_index=True).sort_values("formed_pos", kind="stable", ignore_index=True)


def open_pools(pools: pd.DataFrame, t: int) -> pd.DataFrame:
    """Pools known and still untaken at candle position t."""
    taken = pools["taken_pos"].to_numpy()
    keep = (pools["formed_pos"].to_numpy() <= t) & ((taken < 0) | (taken > t))
    return pools[keep]
