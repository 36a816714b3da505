"""Vectorised, causal indicators on float64 numpy arrays (TA-Lib underneath).

Every function takes whole arrays and returns arrays of the same length with NaN during the
warm-up. Values at index i depend only on inputs <= i (TA-Lib's EMA/ATR/ADX/RSI are recursive
filters), so computing on ``x[:i+1]`` or on the whole series gives the same value at i.
No Python loop over candles anywhere.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import talib


def as_float(values: np.ndarray | pd.Series) -> np.ndarray:
    """Contiguous float64 copy-free view where possible (what TA-Lib requires)."""
    return np.ascontiguousarray(np.asarray(values, dtype=np.float64))


def unstable_candles(alpha: float, *, passes: int = 1) -> int:
    """Candles after which a recursive smoothing (weight ``alpha`` on the new value, ``passes`` chained
    smoothings) has forgotten its start to below 1e-13: what TA-Lib calls its unstable period. Live
    computes over at least this many candles so its values, and the decisions on them, equal a
    computation over the whole history."""
    return passes * math.ceil(math.log(1e-13) / math.log(1 - alpha))


def ema_alpha(period: int) -> float:
    return 2 / (period + 1)


def wilder_alpha(period: int) -> float:
    """RSI, ATR and ADX smooth with 1/period."""
    return 1 / period


def ema(close: np.ndarray, period: int) -> np.ndarray:
    return talib.EMA(as_float(close), timeperiod=period)


def sma(close: np.ndarray, period: int) -> np.ndarray:
    return talib.SMA(as_float(close), timeperiod=period)


def rsi(close: np.ndarray, period: int = 14) -> np.ndarray:
    return talib.RSI(as_float(close), timeperiod=period)


def atr(high: np.ndarray, low: np.ndarray, close: np.ndarray, period: int = 14) -> np.ndarray:
    return talib.ATR(as_float(high), as_float(low), as_float(close), timeperiod=period)


def adx(
    high: np.ndarray, low: np.ndarray, close: np.ndarray, period: int = 14
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(ADX, +DI, -DI)."""
    h, lo, c = as_float(high), as_float(low), as_float(close)
    return (
        talib.ADX(h, lo, c, timeperiod=period),
        talib.PLUS_DI(h, lo, c, timeperiod=period),
        talib.MINUS_DI(h, lo, c, timeperiod=period),
    )


def bollinger(
    close: np.ndarray, period: int = 20, nbdev: float = 2.0
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(upper, middle, lower)."""
    return talib.BBANDS(as_float(close), timeperiod=period, nbdevup=nbdev, nbdevdn=nbdev, matype=talib.MA_Type.SMA)


def true_range(high: np.ndarray, low: np.ndarray, close: np.ndarray) -> np.ndarray:
    """Wilder's true range in numpy (index 0 is NaN, as in TA-Lib's TRANGE)."""
    h, lo, c = as_float(high), as_float(low), as_float(close)
    prev = np.empty_like(c)
    prev[0] = np.nan
    prev[1:] = c[:-1]
    tr = np.maximum(h - lo, np.maximum(np.abs(h - prev), np.abs(lo - prev)))
    tr[0] = np.nan
    return tr


def rolling_max(values: np.ndarray, period: int) -> np.ndarray:
    return talib.MAX(as_float(values), timeperiod=period)


def rolling_min(values: np.ndarray, period: int) -> np.ndarray:
    return talib.MIN(as_float(values), timeperiod=period)


def crossed_above(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """True at i when a[i] > b[i] and a[i-1] <= b[i-1] (NaN compares False)."""
    above = a > b
    prev = np.zeros_like(above)
    prev[1:] = (a[:-1] <= b[:-1])
    return above & prev


def crossed_below(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return crossed_above(b, a)


def rising_edge(cond: np.ndarray) -> np.ndarray:
    """True at i when cond[i] and not cond[i-1] (cond[-1] treated as False for i = 0)."""
    cond = np.asarray(cond, dtype=bool)
    prev = np.zeros_like(cond)
    prev[1:] = cond[:-1]
    return cond & ~prev


def regularize(df: pd.DataFrame, freq: str | pd.Timedelta) -> pd.DataFrame:
    """Fill missing candles of a gapped series: close carried forward as a flat candle, volume 0.

    ``freq`` is a pandas offset ("1min", "5min", "1h") or a Timedelta. Real exchanges skip minutes without
    trades; a regular grid keeps bar-count-based indicators meaningful in wall-clock terms.
    """
    if len(df) == 0:
        return df
    full = pd.date_range(df.index[0], df.index[-1], freq=freq)
    out = df.reindex(full)
    close = out["close"].ffill()
    missing = out["open"].isna()
    for col in ("open", "high", "low"):
        out[col] = out[col].where(~missing, close)
    out["close"] = close
    out["volume"] = out["volume"].fillna(0.0)
    out.index.name = df.index.name
    return out


def load_candles_csv(path: str) -> pd.DataFrame:
    """Read a ``timestamp_ms,open,high,low,close,volume`` CSV into a UTC-indexed float frame."""
    raw = pd.read_csv(path)
    idx = pd.to_datetime(raw["timestamp_ms"], unit="ms", utc=True)
    frame = raw[["open", "high", "low", "close", "volume"]].astype(np.float64)
    frame.index = pd.DatetimeIndex(idx, name="timestamp")
    return frame
