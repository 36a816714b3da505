"""Candle loading, gap filling, resampling and closed-candle alignment."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from traderagent.backtest.data import (
    BacktestDataError,
    fill_gaps,
    index_ms,
    infer_timeframe_ms,
    load_csv,
    prepare,
    resample,
)

MIN = 60_000


def _write(path, rows):
    path.write_text("timestamp_ms,open,high,low,close,volume\n" + "\n".join(",".join(map(str, r)) for r in rows) + "\n")
    return path


def test_gap_is_filled_with_flat_candles_at_previous_close(tmp_path):
    t0 = 1_700_000_040_000 - 1_700_000_040_000 % MIN
    csv = _write(tmp_path / "g.csv", [
        (t0, 10, 11, 9, 10.5, 5),
        (t0 + MIN, 10.5, 12, 10, 11.5, 7),
        # two minutes missing
        (t0 + 4 * MIN, 12, 13, 11.8, 12.5, 3),
    ])
    frame, warnings = load_csv(csv)
    assert warnings == []
    assert infer_timeframe_ms(frame) == MIN
    filled, added = fill_gaps(frame, MIN)
    assert added == 2
    assert np.all(np.diff(index_ms(filled)) == MIN)
    gap = filled.iloc[2:4]
    assert (gap[["open", "high", "low", "close"]].to_numpy() == 11.5).all()
    assert (gap["volume"] == 0).all()
    assert filled.iloc[4]["close"] == 12.5  # real candles untouched


def test_real_file_with_gaps_becomes_regular(candles_dir):
    frame, tf, info = prepare(candles_dir / "UNITTEST_BTC-1m.csv")
    assert tf == MIN and info["rows"] == 3_000 and info["warnings"] == []
    assert info["gap_candles_filled"] > 0
    assert len(frame) == info["rows"] + info["gap_candles_filled"]
    assert np.all(np.diff(index_ms(frame)) == MIN)
    assert not frame.isna().any().any()


def test_resample_aggregates_and_drops_incomplete_edge_buckets():
    t0 = 1_700_000_000_000 - 1_700_000_000_000 % (5 * MIN) + 3 * MIN  # starts 2 minutes before a bucket ends
    n = 12
    idx = pd.to_datetime(t0 + MIN * np.arange(n), unit="ms", utc=True)
    close = np.arange(1.0, n + 1)
    frame = pd.DataFrame({"open": close - 0.5, "high": close + 1, "low": close - 1, "close": close,
                          "volume": np.ones(n)}, index=idx)
    out = resample(frame, 5 * MIN, MIN)
    # minutes 0-1 belong to a bucket missing 3 minutes; minutes 2-6 and 7-11 make two full buckets
    assert len(out) == 2
    first = out.iloc[0]
    assert first["open"] == 2.5 and first["close"] == 7 and first["high"] == 8 and first["low"] == 2
    assert first["volume"] == 5
    assert index_ms(out)[0] % (5 * MIN) == 0


def test_resample_to_lower_timeframe_is_refused(candles_dir):
    with pytest.raises(BacktestDataError, match="lower timeframe"):
        prepare(candles_dir / "XRPUSDT-perp-1h.csv", "15m")


def test_bad_files_give_clear_errors(tmp_path):
    with pytest.raises(BacktestDataError, match="not found"):
        load_csv(tmp_path / "nope.csv")
    bad = tmp_path / "bad.csv"
    bad.write_text("time,price\n1,2\n")
    with pytest.raises(BacktestDataError, match="expected header"):
        load_csv(bad)
    txt = tmp_path / "txt.csv"
    txt.write_text("timestamp_ms,open,high,low,close,volume\n1,a,b,c,d,e\n")
    with pytest.raises(BacktestDataError, match="non-numeric"):
        load_csv(txt)


@pytest.mark.parametrize("bad_row,needle", [
    ((0, 10, 9, 10, 1), "open 0.0 is not a positive price"),
    ((10, 11, -9, 10, 1), "low -9.0 is not a positive price"),
    ((10, 11, 9, "inf", 1), "close inf is not a positive price"),
    ((10, 11, 9, 10, -1), "volume -1.0 is not a number >= 0"),
    ((10, 8, 9, 8.5, 1), "high 8.0 is below low 9.0"),
    ((10, 9.5, 9, 9.2, 1), "high 9.5 is below open 10.0"),
    ((10, 11, 9, 11.5, 1), "high 11.0 is below close 11.5"),
    ((10, 11, 10.2, 10.5, 1), "low 10.2 is above open 10.0"),
    ((10, 11, 9, 8.5, 1), "low 9.0 is above close 8.5"),
])
def test_an_impossible_candle_is_an_error_naming_its_line(tmp_path, bad_row, needle):
    t0 = 1_700_000_040_000 - 1_700_000_040_000 % MIN
    good = (10, 11, 9, 10, 1)
    rows = [(t0 + i * MIN, *(bad_row if i in (3, 5) else good)) for i in range(6)]
    with pytest.raises(BacktestDataError) as err:
        load_csv(_write(tmp_path / "c.csv", rows))
    # the first bad row is data row 4: line 5 of the file, after the header
    assert str(err.value) == f"c.csv line 5 (timestamp_ms {t0 + 3 * MIN}): {needle}; 1 more impossible candle after it"


def test_unsorted_and_duplicated_rows_are_repaired_with_counted_warnings(tmp_path):
    t0 = 1_700_000_040_000 - 1_700_000_040_000 % MIN
    rows = [(t0 + i * MIN, 10, 11, 9, 10, 1) for i in (0, 2, 1, 3, 5, 4, 4)]
    rows[-1] = (t0 + 4 * MIN, 10, 12, 9, 11, 7)  # the duplicate that wins
    rows.append((t0 + 2 * MIN, 10, 11, 9, 10, 2))
    frame, tf, info = prepare(_write(tmp_path / "u.csv", rows))
    assert info["warnings"] == ["u.csv: 3 rows out of time order (sorted)",
                                "u.csv: 2 duplicated timestamps (kept the last row of each)"]
    assert list(index_ms(frame)) == [t0 + i * MIN for i in range(6)] and tf == MIN
    assert frame.iloc[4]["close"] == 11 and frame.iloc[2]["volume"] == 2


def test_a_directory_is_not_a_data_file(tmp_path):
    with pytest.raises(BacktestDataError, match=f"^{tmp_path} is a directory, not a candle file$"):
        load_csv(tmp_path)


def test_a_single_candle_is_refused_without_a_false_hint(tmp_path):
    with pytest.raises(BacktestDataError, match="^need at least two candles to tell their timeframe; the data has one$"):
        prepare(_write(tmp_path / "one.csv", [(1_700_000_040_000, 10, 11, 9, 10, 1)]), "1h")
