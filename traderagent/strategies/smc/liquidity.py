"""Liquidity: resting swing levels (pools) and sweeps of them.

A sweep is a candle whose wick goes beyond the latest confirmed swing level while its close stays on
the inside (bearish sweep of a high: high > level >= close; bullish sweep of a low: low < level <= close),
counted once per level and only while that level was not yet broken by a close.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from ._arrays import OHLC, Columns, columns_of, ffill, first_cross, first_in_group, group_cumsum, ohlc_arrays

POOL_COLUMNS = ("side", "level", "pivot_pos", "formed_pos", "taken_pos")


def _sweep(wick_beyond, close_beyond, close_inside, raw: np.ndarray) -> np.ndarray:
    start = ~np.isnan(raw)
    broken = group_cumsum(close_beyond, start)  # closes beyond the level since it was confirmed
    cond = wick_beyond & close_inside & (broken == 0)
    return first_in_group(cond, start)


def liquidity_sweeps(df: pd.DataFrame, swings: pd.DataFrame) -> pd.DataFrame:
    """Columns sweep (+1 bullish: lows swept, -1 bearish: highs swept, 0 none) and level, aligned to df."""
    return pd.DataFrame(sweep_arrays(ohlc_arrays(df), columns_of(swings)), index=df.index)


def sweep_arrays(ohlc: OHLC, swings: Columns) -> Columns:
    """`liquidity_sweeps`'s columns as arrays (``swings``: `swing_arrays`)."""
    _, h, low, c = ohlc
    raw_hi = swings["swing_high"].astype(np.float64, copy=False)
    raw_lo = swings["swing_low"].astype(np.float64, copy=False)
    hi, lo = ffill(raw_hi), ffill(raw_lo)
    with np.errstate(invalid="ignore"):
        bear = _sweep(h > hi, c > hi, c <= hi, raw_hi)
        bull = _sweep(low < lo, c < lo, c >= lo, raw_lo)
    both = bear & bull  # an outside candle sweeping both sides tells nothing
    bear &= ~both
    bull &= ~both
    sweep = bull.astype(np.int8) - bear.astype(np.int8)
    level = np.where(bull, lo, np.where(bear, hi, np.nan))
    return {"sweep": sweep, "level": level}


def liquidity_pools(df: pd.DataFrame, swings: pd.DataFrame) -> pd.DataFrame:
    """One row per confirmed swing: side (+1 buy-side above highs, -1 sell-side below lows), level,
    pivot_pos, formed_pos (confirmation), taken_pos (first later candle trading beyond it, -1 if none)."""
    return pd.DataFrame(pool_arrays(ohlc_arrays(df), columns_of(swings)), columns=list(POOL_COLUMNS))


def pool_arrays(ohlc: OHLC, swings: Columns) -> Columns:
    """`liquidity_pools`'s columns as arrays, in order of formation (``swings``: `swing_arrays`)."""
    _, h, low, _ = ohlc
    parts = []
    for side, col, values, above in ((1, "swing_high", h, True), (-1, "swing_low", low, False)):
        levels = swings[col].astype(np.float64, copy=False)
        formed = np.flatnonzero(~np.isnan(levels))
        level = levels[formed]
        parts.append((np.full(len(formed), side, dtype=np.int8), level, swings[f"{col}_pos"][formed], formed,
                      first_cross(values, formed, level, above=above)))
    order = np.argsort(np.concatenate([p[3] for p in parts]), kind="stable")
    return {name: np.concatenate([p[k] for p in parts])[order] for k, name in enumerate(POOL_COLUMNS)}


def open_pools(pools: pd.DataFrame, t: int) -> pd.DataFrame:
    """Pools known and still untaken at candle position t."""
    taken = pools["taken_pos"].to_numpy()
    keep = (pools["formed_pos"].to_numpy() <= t) & ((taken < 0) | (taken > t))
    return pools[keep]
