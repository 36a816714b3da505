"""Order blocks and fair value gaps, each a table with one row per zone.

Zone rows carry `formed_pos` (the candle on which the zone becomes known) and `mitigated_pos` (first
later candle that invalidated it, -1 if none yet). "Zones active at t" = formed_pos <= t and
(mitigated_pos == -1 or mitigated_pos > t): this depends on candles <= t only.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from ._arrays import OHLC, Columns, columns_of, ffill_int, first_cross, ohlc_arrays

ZONE_COLUMNS = ("kind", "direction", "top", "bottom", "origin_pos", "formed_pos", "mitigated_pos")
_ZONE_TYPES = (np.int8, np.float64, np.float64, np.int64, np.int64, np.int64)  # ZONE_COLUMNS after "kind"


def _zones(direction, top, bottom, origin, formed, mitigated) -> Columns:
    """A zone table's numeric columns (its kind is the detector's: `zone_frame`)."""
    return {name: np.asarray(values, dtype=dtype) for name, values, dtype in
            zip(ZONE_COLUMNS[1:], (direction, top, bottom, origin, formed, mitigated), _ZONE_TYPES, strict=True)}


def zone_frame(kind: str, zones: Columns) -> pd.DataFrame:
    return pd.DataFrame({"kind": kind, **zones}, columns=list(ZONE_COLUMNS))


def _last_index(mask: np.ndarray) -> np.ndarray:
    """last_index[t] = largest i <= t with mask[i], -1 if none."""
    return ffill_int(np.where(mask, np.arange(len(mask)), -1))


def _mitigation(h, low, c, formed, direction, top, bottom, *, close_mitigation: bool) -> np.ndarray:
    """First candle after formation trading back through the zone's far side (bull: below bottom)."""
    out = np.full(len(formed), -1, dtype=np.int64)
    bull = direction > 0
    bear = ~bull
    out[bull] = first_cross(c if close_mitigation else low, formed[bull], bottom[bull], above=False)
    out[bear] = first_cross(c if close_mitigation else h, formed[bear], top[bear], above=True)
    return out


def order_blocks(
    df: pd.DataFrame, structure: pd.DataFrame, *, close_mitigation: bool = False
) -> pd.DataFrame:
    """One order block per BOS/CHoCH.

    Bullish break at b of the swing high pivoted at p: the impulse starts at the lowest low of [p, b];
    the OB is the last bearish candle at or before that low (inside [p, b]; the low candle itself if
    none). Zone = that candle's high/low; formed on b. Mirror for bearish breaks.
    """
    return zone_frame("ob", order_block_arrays(ohlc_arrays(df), columns_of(structure),
                                               close_mitigation=close_mitigation))


def order_block_arrays(ohlc: OHLC, structure: Columns, *, close_mitigation: bool = False) -> Columns:
    """`order_blocks`' numeric columns as arrays (``structure``: `structure_arrays`)."""
    o, h, low, c = ohlc
    event = structure["bos"] + structure["choch"]
    ev = np.flatnonzero(event)
    if len(ev) == 0:
        return _zones([], [], [], [], [], [])
    piv = structure["swing_pos"][ev]
    dirs = event[ev].astype(np.int8)
    last_bear = _last_index(c < o)
    last_bull = _last_index(c > o)
    origin = np.empty(len(ev), dtype=np.int64)
    for i, (b, p, d) in enumerate(zip(ev, piv, dirs, strict=True)):  # one step per break, not per candle
        extreme = p + (int(np.argmin(low[p : b + 1])) if d > 0 else int(np.argmax(h[p : b + 1])))
        k = (last_bear if d > 0 else last_bull)[extreme]
        origin[i] = k if k >= p else extreme
    top, bottom = h[origin], low[origin]
    mitigated = _mitigation(h, low, c, ev, dirs, top, bottom, close_mitigation=close_mitigation)
    return _zones(dirs, top, bottom, origin, ev, mitigated)


def fair_value_gaps(df: pd.DataFrame, *, min_gap_pct: float = 0.0) -> pd.DataFrame:
    """3-candle gaps, formed on the third candle i.

    Bullish: low[i] > high[i-2], zone [high[i-2], low[i]], filled when a later low reaches the bottom.
    Bearish: high[i] < low[i-2], zone [high[i], low[i-2]], filled when a later high reaches the top.
    `min_gap_pct` drops gaps smaller than that fraction of the middle candle's close.
    """
    return zone_frame("fvg", fvg_arrays(ohlc_arrays(df), min_gap_pct=min_gap_pct))


def fvg_arrays(ohlc: OHLC, *, min_gap_pct: float = 0.0) -> Columns:
    """`fair_value_gaps`' numeric columns as arrays."""
    o, h, low, c = ohlc
    n = len(c)
    if n < 3:
        return _zones([], [], [], [], [], [])
    i = np.arange(2, n)
    mid = c[1:-1]
    bull = low[2:] > h[:-2]
    bear = h[2:] < low[:-2]
    top = np.where(bull, low[2:], low[:-2])
    bottom = np.where(bull, h[:-2], h[2:])
    keep = (bull | bear) & ((top - bottom) >= min_gap_pct * mid)
    formed = i[keep]
    direction = np.where(bull[keep], 1, -1).astype(np.int8)
    top, bottom = top[keep], bottom[keep]
    # filled = a later candle reaches the far edge (bull: low <= bottom), i.e. the gap is fully traded
    filled = np.full(len(formed), -1, dtype=np.int64)
    up = direction > 0
    filled[up] = first_cross(low, formed[up], np.nextafter(bottom[up], np.inf), above=False)
    filled[~up] = first_cross(h, formed[~up], np.nextafter(top[~up], -np.inf), above=True)
    return _zones(direction, top, bottom, formed - 1, formed, filled)


def active_zones(zones: pd.DataFrame, t: int) -> pd.DataFrame:
    """Zones known and not yet mitigated/filled at candle position t."""
    m = zones["mitigated_pos"].to_numpy()
    keep = (zones["formed_pos"].to_numpy() <= t) & ((m < 0) | (m > t))
    return zones[keep]
