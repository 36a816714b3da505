"""Small numpy helpers shared by the SMC detectors (no pandas overhead on the hot path)."""

from __future__ import annotations

import numpy as np
import pandas as pd

# Upper bound of a (zones x candles) boolean matrix built at once; keeps memory flat on long series.
_CHUNK_CELLS = 4_000_000

# A detector's output as arrays by column name: what a DataFrame of it would hold (the public detectors
# return that DataFrame; `analyze` keeps the arrays and builds a frame only when one is asked for).
Columns = dict[str, np.ndarray]
OHLC = tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]


def ohlc_arrays(df: pd.DataFrame) -> OHLC:
    """open, high, low, close as float64 arrays (column names are case-sensitive lower-case)."""
    return tuple(df[c].to_numpy(dtype=np.float64) for c in ("open", "high", "low", "close"))  # type: ignore[return-value]


def columns_of(df: pd.DataFrame) -> Columns:
    return {str(c): df[c].to_numpy() for c in df.columns}


def ffill(values: np.ndarray) -> np.ndarray:
    """Forward-fill NaNs of a float array (leading NaNs stay NaN)."""
    n = len(values)
    if n == 0:
        return values.copy()
    idx = np.where(np.isnan(values), 0, np.arange(n))
    np.maximum.accumulate(idx, out=idx)
    return values[idx]


def ffill_int(values: np.ndarray, missing: int = -1) -> np.ndarray:
    """Forward-fill an int array whose gaps are `missing`."""
    n = len(values)
    idx = np.where(values == missing, 0, np.arange(n))
    np.maximum.accumulate(idx, out=idx)
    out = values[idx] if n else values.copy()
    return out


def group_cumsum(x: np.ndarray, is_start: np.ndarray) -> np.ndarray:
    """Running count of `x` restarting at every `is_start` (groups are contiguous runs)."""
    cs = np.cumsum(x, dtype=np.int64)
    base = np.where(is_start, cs - x, 0)
    np.maximum.accumulate(base, out=base)
    return cs - base


def first_in_group(cond: np.ndarray, is_start: np.ndarray) -> np.ndarray:
    """True where `cond` is True for the first time since the latest `is_start`."""
    return cond & (group_cumsum(cond, is_start) == 1)


def first_cross(values: np.ndarray, starts: np.ndarray, thresholds: np.ndarray, *, above: bool) -> np.ndarray:
    """For each k: the first index t > starts[k] with values[t] > thresholds[k] (or < when not above); -1 if none.

    Broadcast (zones x candles) in bounded chunks instead of a Python loop over zones.
    """
    k = len(starts)
    out = np.full(k, -1, dtype=np.int64)
    n = len(values)
    if k == 0 or n == 0:
        return out
    lo = int(starts.min()) + 1
    if lo >= n:
        return out
    cols = values[lo:]
    t_idx = np.arange(lo, n)
    rows = max(1, _CHUNK_CELLS // len(cols))
    for s in range(0, k, rows):
        st = starts[s : s + rows, None]
        th = thresholds[s : s + rows, None]
        hit = (cols[None, :] > th) if above else (cols[None, :] < th)
        hit &= t_idx[None, :] > st
        any_hit = hit.any(axis=1)
        first = hit.argmax(axis=1) + lo
        out[s : s + rows] = np.where(any_hit, first, -1)
    return out
