"""The one timeframe table: names, lengths and ByBit codes agree for the client, simulator, validator and backtest."""

from __future__ import annotations

import pandas as pd
import pytest

from traderagent.strategies.frames import closed_only, last_open_ms
from traderagent.timeframes import TIMEFRAMES, TimeframeError, bybit_interval, timeframe_ms, timeframe_name

MIN = 60_000


def test_names_and_bybit_codes_parse_to_one_length() -> None:
    assert timeframe_ms("15m") == timeframe_ms("15") == 15 * MIN
    assert timeframe_ms("1h") == timeframe_ms("60") == 60 * MIN
    assert timeframe_ms("D") == timeframe_ms("1d") == 1440 * MIN
    assert timeframe_ms("W") == timeframe_ms("1w") == 7 * 1440 * MIN
    assert timeframe_ms("10m") == 10 * MIN  # a backtest may resample to lengths ByBit does not serve
    assert timeframe_name(4 * 60 * MIN) == "4h" and timeframe_name(10 * MIN) == "10m"
    for bad in ("7x", "0m", "", "M"):
        with pytest.raises(TimeframeError, match="unknown timeframe"):
            timeframe_ms(bad)


def test_bybit_interval() -> None:
    assert bybit_interval("1h") == bybit_interval("60") == "60"
    assert bybit_interval("1d") == "D"
    with pytest.raises(TimeframeError, match="unsupported kline interval '10m'"):
        bybit_interval("10m")


def test_simulator_and_validator_read_the_same_table() -> None:
    from traderagent.sim.market import INTERVALS
    from traderagent.utils.config_validator import TIMEFRAME_MINUTES

    assert INTERVALS == {code: timeframe_ms(code) // MIN for code in TIMEFRAMES.values()}
    assert TIMEFRAME_MINUTES == {name: timeframe_ms(name) // MIN for name in TIMEFRAMES}  # 30m was missing


def test_last_open_ms() -> None:
    index = pd.date_range("2024-01-01", periods=3, freq="5min", tz="UTC")
    frame = pd.DataFrame({"close": [1.0, 2.0, 3.0]}, index=index)
    assert last_open_ms(frame) == int(index[-1].timestamp() * 1000)
    assert last_open_ms(frame.iloc[:0]) is None  # the strategies' copy raised IndexError here
    assert last_open_ms(None) is None
    assert last_open_ms(frame.reset_index(drop=True)) is None
    now = last_open_ms(frame) + 4 * MIN  # type: ignore[operator]
    assert len(closed_only(frame, now, "5m")) == 2 and len(closed_only(frame, now + MIN, "5m")) == 3
