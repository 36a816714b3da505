"""Candle data for backtests: CSV loading, gap filling, resampling, closed-candle alignment.

Frames are what strategies consume (see `klines_to_frame`): a UTC `DatetimeIndex` of candle OPEN times and
float columns open, high, low, close, volume. Floats are fine here: these are indicator inputs; the engine
turns prices into Decimal only when something fills.
"""

from __future__ import annotations

from pathlib import Path
from typing import cast

import numpy as np
import pandas as pd

from traderagent.strategies.indicators import regularize
from traderagent.timeframes import timeframe_ms, timeframe_name

COLUMNS = ("open", "high", "low", "close", "volume")


class BacktestDataError(ValueError):
    """The candle file or a timeframe is unusable; the message says why (shown to the user as is)."""


def load_csv(path: str | Path) -> tuple[pd.DataFrame, list[str]]:
    """Read `timestamp_ms,open,high,low,close,volume` into a candle frame, oldest first.

    An impossible candle (a price <= 0, high below low/open/close, low above open/close, negative volume)
    is an error naming its line. Rows out of time order are sorted and duplicated timestamps keep the last
    row; each repair is returned as a warning for the user (with counts). Gaps are left alone (see `fill_gaps`).
    """
    path = Path(path)
    if path.is_dir():
        raise BacktestDataError(f"{path} is a directory, not a candle file")
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
        ts = pd.to_numeric(raw[ts_col], errors="raise").astype("int64").to_numpy()
    except (ValueError, TypeError):
        raise BacktestDataError(f"{path.name}: non-numeric values in the candle columns") from None
    if values.isna().any().any():
        raise BacktestDataError(f"{path.name}: empty cells in the candle columns")
    _check_candles(path.name, ts, values)
    return _in_time_order(path.name, ts, values)


def _candle_faults(values: pd.DataFrame) -> list[tuple[np.ndarray, str, str, str]]:
    """(bad rows, column, what is wrong, column compared with) for every rule a real candle obeys."""
    v = {c: values[c].to_numpy() for c in COLUMNS}
    faults = [(~np.isfinite(v[c]) | (v[c] <= 0), c, "is not a positive price", "") for c in ("open", "high", "low", "close")]
    faults.append((~np.isfinite(v["volume"]) | (v["volume"] < 0), "volume", "is not a number >= 0", ""))
    faults += [(v["high"] < v[c], "high", "is below", c) for c in ("low", "open", "close")]
    faults += [(v["low"] > v[c], "low", "is above", c) for c in ("open", "close")]
    return faults


def _check_candles(name: str, ts: np.ndarray, values: pd.DataFrame) -> None:
    """Raise naming the first impossible candle by its line in the file (the header is line 1)."""
    found = [fault for fault in _candle_faults(values) if fault[0].any()]
    if not found:
        return
    bad = np.logical_or.reduce([rows for rows, *_ in found])
    i = int(np.argmax(bad))
    _, col, wrong, other = next(fault for fault in found if fault[0][i])
    row = {c: float(x) for c, x in values.iloc[i].items()}
    why = f"{col} {row[col]!r} {wrong}" + (f" {other} {row[other]!r}" if other else "")
    more = int(bad.sum()) - 1
    raise BacktestDataError(f"{name} line {i + 2} (timestamp_ms {ts[i]}): {why}"
                            + (f"; {_count(more, 'more impossible candle')} after it" if more else ""))


def _in_time_order(name: str, ts: np.ndarray, values: pd.DataFrame) -> tuple[pd.DataFrame, list[str]]:
    """Sort by time and keep the last row of each duplicated timestamp, saying how many rows that touched."""
    frame = values.set_index(pd.to_datetime(ts, unit="ms", utc=True).rename("timestamp"))
    warnings = []
    backwards = int((np.diff(ts) < 0).sum())
    if backwards:
        warnings.append(f"{name}: {_count(backwards, 'row')} out of time order (sorted)")
    dup = frame.index.duplicated(keep="last")
    if dup.any():
        warnings.append(f"{name}: {_count(int(dup.sum()), 'duplicated timestamp')} (kept the last row of each)")
        frame = frame[~dup]
    return frame.sort_index(kind="stable"), warnings


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}{'s' if n != 1 else ''}"


def infer_timeframe_ms(frame: pd.DataFrame) -> int:
    """The most common spacing between candles (gaps make some spacings larger, never smaller)."""
    if len(frame) < 2:
        raise BacktestDataError("need at least two candles to tell their timeframe; the data has one")
    steps = np.diff(index_ms(frame))
    values, counts = np.unique(steps, return_counts=True)
    return int(values[np.argmax(counts)])


def index_ms(frame: pd.DataFrame) -> np.ndarray:
    """Candle open times as int64 epoch milliseconds (independent of the index's resolution)."""
    return cast(pd.DatetimeIndex, frame.index).as_unit("ms").asi8.astype(np.int64, copy=False)


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
    """Load a CSV, fill its gaps and optionally resample. Returns (frame, timeframe ms, info for the report;
    its "warnings" say what was repaired)."""
    frame, warnings = load_csv(path)
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
        "warnings": warnings,
    }
    return frame, tf, info
