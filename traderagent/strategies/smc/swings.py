"""Fractal swing highs/lows, reported on the candle that CONFIRMS them (no look-ahead).

A swing high at pivot p is a candle whose high is strictly above the `swing_length` highs before it and
at least the `swing_length` highs after it (ties go to the earliest candle). It needs those later candles,
so it only becomes known on candle p + swing_length: every output row t uses data of candles <= t only.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from numpy.lib.stride_tricks import sliding_window_view

from ._arrays import Columns, ohlc_arrays

SWING_COLUMNS = ("swing_high", "swing_high_pos", "swing_low", "swing_low_pos")


def _pivots(values: np.ndarray, length: int, *, high: bool) -> np.ndarray:
    """Boolean pivot mask (at the pivot candle itself)."""
    n = len(values)
    mask = np.zeros(n, dtype=bool)
    if n < 2 * length + 1:
        return mask
    win = sliding_window_view(values if high else -values, length)
    wmax = win.max(axis=1)  # wmax[j] = max(values[j : j + length])
    p = np.arange(length, n - length)
    v = values[p] if high else -values[p]
    mask[p] = (v > wmax[p - length]) & (v >= wmax[p + 1])
    return mask


def swing_highs_lows(df: pd.DataFrame, swing_length: int = 5) -> pd.DataFrame:
    """Confirmed swings, aligned to `df`.

    Columns (set only on the confirmation candle c = pivot + swing_length, else NaN / -1):
    swing_high (level), swing_high_pos (pivot position), swing_low, swing_low_pos.
    """
    _, h, low, _ = ohlc_arrays(df)
    return pd.DataFrame(swing_arrays(h, low, swing_length), index=df.index)


def swing_arrays(h: np.ndarray, low: np.ndarray, swing_length: int) -> Columns:
    """`swing_highs_lows`'s columns as arrays."""
    if swing_length < 1:
        raise ValueError("swing_length must be >= 1")
    n = len(h)
    out = {}
    for name, values, is_high in (("swing_high", h, True), ("swing_low", low, False)):
        piv = np.flatnonzero(_pivots(values, swing_length, high=is_high))
        level = np.full(n, np.nan)
        pos = np.full(n, -1, dtype=np.int64)
        level[piv + swing_length] = values[piv]
        pos[piv + swing_length] = piv
        out[name] = level
        out[f"{name}_pos"] = pos
    return out
