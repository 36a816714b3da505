"""Candle-frame time helpers for strategies and their drivers (epoch ms open times, UTC).

The multi-timeframe rule (a higher-timeframe candle counts once its close time is <= the entry
candle's close time) and the closed-candle rule are described in ``strategies/base.py``.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from traderagent.timeframes import timeframe_ms


def align_higher_timeframe(
    higher_open_ms: np.ndarray, higher_tf: str, entry_open_ms: np.ndarray, entry_tf: str
) -> np.ndarray:
    """For each entry candle, the index of the last higher-tf candle CLOSED by the entry close (-1: none)."""
    higher_close = np.asarray(higher_open_ms, dtype=np.int64) + timeframe_ms(higher_tf)
    entry_close = np.asarray(entry_open_ms, dtype=np.int64) + timeframe_ms(entry_tf)
    return np.searchsorted(higher_close, entry_close, side="right").astype(np.int64) - 1


_MS = {"s": (1000, 1), "ms": (1, 1), "us": (1, 1000), "ns": (1, 1_000_000)}  # unit -> (times, divided by)


def open_ms_at(index: pd.DatetimeIndex, i: int) -> int:
    """Open time (epoch ms) of candle ``i`` of a time index, without building a new index (it is
    read on every tick of every bot)."""
    times, per = _MS[index.unit]
    return int(index.asi8[i]) * times // per


def last_open_ms(df: pd.DataFrame | None) -> int | None:
    """Open time (epoch ms) of the frame's last candle; None when empty or not indexed by time."""
    if df is None or len(df) == 0 or not isinstance(df.index, pd.DatetimeIndex):
        return None
    return open_ms_at(df.index, -1)


def closed_only(df: pd.DataFrame, now_ms: int, timeframe: str) -> pd.DataFrame:
    """Drop a still-forming last candle (driver helper; ``now_ms`` comes from the caller's clock)."""
    last_open = last_open_ms(df)
    if last_open is not None and last_open + timeframe_ms(timeframe) > now_ms:
        return df.iloc[:-1]
    return df


__all__ = ["align_higher_timeframe", "closed_only", "last_open_ms", "open_ms_at"]
