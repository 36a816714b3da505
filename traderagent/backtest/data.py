"""Candle data for backtests: CSV loading, gap filling, resampling, closed-candle alignment.

Frames are what strategies consume (see `klines_to_frame`): a UTC `DatetimeIndex` of candle OPEN times and
float columns open, high, low, close, volume. Floats are fine here: these are indicator inputs; the engine
turns prices into Decimal only when something fills.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from traderagent.strategies.indicators import regularize
from traderagent.timeframes import timeframe_ms, timeframe_name

COLUMNS = ("open", "high", "low", "close", "volume")


class BacktestDataError(ValueError):
    """The candle file or a timeframe is unusable; the message says why (shown to the user as is)."""


def load_csv(path: str | Path) -> pd.DataFrame:
    """Read `timestamp_ms,open,high,low,close,volume` (oldest first) into a candle frame.

    Duplicated timestamps keep the last row; rows are sorted. Gaps are left alone (see `fill_gaps`).
    """
    path = Path(path)
    if not path.is_file():
        raise BacktestDataError(f"data file not found: {path}")
    try:
        raw = pd.read_csv(path)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise BacktestDataError(f"{path.name}: not a readable CSV ({exc.__class__.__name__})") from None
    raw.columns = [str(c).strip().lower() for c in raw.columns]
    ts_col = next((c for c in ("timestamp_ms", "timestamp", "time", "date") if c in raw.columns), None)
    missing = [c for c in COLUMNS if c not in raw.columns]
    if ts_col is None or missing:
        want = "timestamp_ms," + ",".join(COLUMNS)
        raise BacktestDataError(f"{path.name}: expected header {want}; missing {missing or ['timestamp_ms']}")
    if raw.empty:
        raise BacktestDataError(f"{path.name}: no candles")
    try:
        values = raw[list(COLUMNS)].astype("float64")
        ts = pd.to_numeric(raw[ts_col], errors="raise").astype("int64")
    except (ValueError, TypeError):
        raise BacktestDataError(f"{path.name}: non-numeric values in the candle columns") from None
    if values.isna().any().any():
        raise BacktestDataError(f"{path.name}: empty cells in the candle columns")
    frame = values.set_index(pd.to_datetime(ts.to_numpy(), unit="ms", utc=True).rename("timestamp"))
    frame = frame[~frame.index.duplicated(keep="last")].sort_index()
    return frame


def infer_timeframe_ms(frame: pd.DataFrame) -> int:
    """The most common spacing between candles (gaps make some spacings larger, never smaller)."""
    if len(frame) < 2:
        raise BacktestDataError("need at least two candles to infer the timeframe; pass --timeframe")
    steps = np.diff(index_ms(frame))
    values, counts = np.unique(steps, return_counts=True)
    return int(values[np.argmax(counts)])


def index_ms(frame: pd.DataFrame) -> np.ndarray:
    """Candle open times as int64 epoch milliseconds (independent of the index's resolution)."""
    return frame.index.as_unit("ms").asi8.astype(np.int64, copy=False)


def fill_gaps(frame: pd.DataFrame, tf_ms: int) -> tuple[pd.DataFrame, int]:
    """Make the series regular: a missing candle becomes a flat candle at the previous close, volume 0.

    That is what the exchange shows for a minute with no trades. Returns (frame, number of candles added).
    """
    ts = index_ms(frame)
    if len(ts) == 0:
        return frame, 0
    if np.any((ts - ts[0]) % tf_ms):
        raise BacktestDataError(f"candle times are not aligned to {timeframe_name(tf_ms)} steps")
    full = np.arange(ts[0], ts[-1] + tf_ms, tf_ms, dtype=np.int64)
    added = len(full) - len(ts)
    if added == 0:
        return frame, 0
    return regularize(frame, pd.Timedelta(milliseconds=tf_ms)), added


def resample(frame: pd.DataFrame, tf_ms: int, base_tf_ms: int | None = None) -> pd.DataFrame:
    """Aggregate to a higher timeframe (buckets aligned to the epoch, labelled by their open time).

    Only complete buckets are kept: an edge bucket holding fewer base candles than it should (data that
    starts or ends mid-hour) would be a candle that never closed.
    """
    base_tf_ms = base_tf_ms or infer_timeframe_ms(frame)
    if tf_ms % base_tf_ms:
        raise BacktestDataError(
            f"cannot build {timeframe_name(tf_ms)} candles from {timeframe_name(base_tf_ms)} data"
        )
    if tf_ms == base_tf_ms:
        return frame
    ts = index_ms(frame)
    bucket = ts - ts % tf_ms
    starts = np.flatnonzero(np.r_[True, bucket[1:] != bucket[:-1]])
    counts = np.diff(np.r_[starts, len(ts)])
    arr = {c: frame[c].to_numpy() for c in COLUMNS}
    out = pd.DataFrame(
        {
            "open": arr["open"][starts],
            "high": np.maximum.reduceat(arr["high"], starts),
            "low": np.minimum.reduceat(arr["low"], starts),
            "close": arr["close"][np.r_[starts[1:], len(ts)] - 1],
            "volume": np.add.reduceat(arr["volume"], starts),
        },
        index=pd.to_datetime(bucket[starts], unit="ms", utc=True).rename("timestamp"),
    )
    return out[counts == tf_ms // base_tf_ms]


def prepare(path: str | Path, timeframe: str | None = None) -> tuple[pd.DataFrame, int, dict]:
    """Load a CSV, fill its gaps and optionally resample. Returns (frame, timeframe ms, info for the report)."""
    frame = load_csv(path)
    base_tf = infer_timeframe_ms(frame)
    rows = len(frame)
    frame, added = fill_gaps(frame, base_tf)
    tf = base_tf
    if timeframe:
        tf = timeframe_ms(timeframe)
        if tf < base_tf:
            raise BacktestDataError(
                f"the data is {timeframe_name(base_tf)} candles; cannot backtest on a lower timeframe ({timeframe})"
            )
        frame = resample(frame, tf, base_tf)
    if len(frame) == 0:
        raise BacktestDataError("no complete candles after resampling")
    info = {
        "file": Path(path).name,
        "rows": rows,
        "source_timeframe": timeframe_name(base_tf),
        "gap_candles_filled": added,
        "timeframe": timeframe_name(tf),
        "candles": len(frame),
        "start": frame.index[0].isoformat(),
        "end": frame.index[-1].isoformat(),
    }
    return frame, tf, info
