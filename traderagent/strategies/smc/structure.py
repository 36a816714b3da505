"""Market structure: BOS / CHoCH when a candle CLOSES beyond the latest confirmed swing level.

The reference level at candle t is the latest swing confirmed at or before t; each level can be broken
once. A break in the direction of the previous break is a BOS, against it a CHoCH (the first break
ever is a BOS). Everything at row t depends on candles <= t only.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from ._arrays import OHLC, Columns, columns_of, ffill, ffill_int, first_in_group, ohlc_arrays

STRUCTURE_COLUMNS = ("bos", "choch", "level", "swing_pos", "trend")


def _breaks(price: np.ndarray, swings: Columns, side: str, *, bullish: bool) -> tuple[np.ndarray, ...]:
    """First close beyond each confirmed swing level of `side` ("swing_high"/"swing_low")."""
    raw = swings[side].astype(np.float64, copy=False)
    level = ffill(raw)
    pos = ffill_int(swings[f"{side}_pos"].astype(np.int64, copy=False))
    with np.errstate(invalid="ignore"):
        cond = price > level if bullish else price < level
    cond &= ~np.isnan(level)
    return first_in_group(cond, ~np.isnan(raw)), level, pos


def market_structure(df: pd.DataFrame, swings: pd.DataFrame, *, close_break: bool = True) -> pd.DataFrame:
    """BOS/CHoCH events aligned to `df`.

    bos / choch: +1 bullish, -1 bearish, 0 none (on the breaking candle); level: the broken level;
    swing_pos: pivot position of the broken swing (-1 when no event); trend: direction of the latest
    break so far (+1 / -1, 0 before the first).
    """
    columns = structure_arrays(ohlc_arrays(df), columns_of(swings), close_break=close_break)
    return pd.DataFrame(columns, index=df.index)


def structure_arrays(ohlc: OHLC, swings: Columns, *, close_break: bool = True) -> Columns:
    """`market_structure`'s columns as arrays (``swings``: `swing_arrays`)."""
    o, h, low, c = ohlc
    up, hi_level, hi_pos = _breaks(c if close_break else h, swings, "swing_high", bullish=True)
    dn, lo_level, lo_pos = _breaks(c if close_break else low, swings, "swing_low", bullish=False)
    both = up & dn  # only possible with crossed levels; the candle body decides
    up &= ~both | (c >= o)
    dn &= ~both | (c < o)
    direction = up.astype(np.int8) - dn.astype(np.int8)

    ev = np.flatnonzero(direction)
    dirs = direction[ev]
    prev = np.concatenate(([0], dirs[:-1])).astype(np.int8)
    is_choch = (prev != 0) & (dirs != prev)

    n = len(c)
    bos = np.zeros(n, dtype=np.int8)
    choch = np.zeros(n, dtype=np.int8)
    bos[ev[~is_choch]] = dirs[~is_choch]
    choch[ev[is_choch]] = dirs[is_choch]
    level = np.where(up, hi_level, np.where(dn, lo_level, np.nan))
    swing_pos = np.where(up, hi_pos, np.where(dn, lo_pos, -1))
    trend = np.zeros(n, dtype=np.int8)
    if len(ev):
        filled = ffill(np.where(direction != 0, direction, np.nan).astype(np.float64))
        trend = np.nan_to_num(filled).astype(np.int8)
    return {"bos": bos, "choch": choch, "level": level, "swing_pos": swing_pos, "trend": trend}
