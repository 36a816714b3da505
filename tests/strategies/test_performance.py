"""Cost budgets: a live tick <= 5 ms per strategy; a year of 1m candles stays cheap per candle."""

from __future__ import annotations

import time
from decimal import Decimal

import numpy as np
import pandas as pd
import pytest

from traderagent.strategies import create_strategy


def _median_ms(fn, runs=60):
    for _ in range(5):
        fn()
    samples = []
    for _ in range(runs):
        t = time.perf_counter()
        fn()
        samples.append((time.perf_counter() - t) * 1000)
    return float(np.median(samples))


@pytest.mark.parametrize("st", ["trend_follower", "grid", "dca"])
def test_live_tick_under_5ms(st, xrp_5m):
    s = create_strategy(st, {}, qty_step="1", tick_size="0.0001", allocated_capital="10000")
    window = xrp_5m.iloc[-500:]

    def tick():
        s.analyze_market(window)
        s.generate_signal(window, Decimal("10000"))
        s.update_positions(Decimal("1.07"), window)

    assert _median_ms(tick) <= 5.0


def test_year_of_minutes_prepare_and_per_candle_path_is_cheap():
    n = 525_600
    rng = np.random.default_rng(42)  # seeded random walk (1 year of 1m candles)
    close = 100 * np.exp(np.cumsum(rng.normal(0, 0.0008, n)))
    spread = close * rng.uniform(0, 0.001, n)
    idx = pd.date_range("2023-01-01", periods=n, freq="1min", tz="UTC")
    df = pd.DataFrame({"open": close, "high": close + spread, "low": close - spread, "close": close,
                       "volume": 1.0}, index=idx)
    s = create_strategy("trend_follower", {}, qty_step="0.001", tick_size="0.01", allocated_capital="10000")
    t = time.perf_counter()
    p = s.prepare(df)
    prepare_s = time.perf_counter() - t
    t = time.perf_counter()
    signals = sum(s.signal_at(p, i, Decimal("10000")) is not None for i in range(n))
    loop_s = time.perf_counter() - t
    assert signals > 0
    assert prepare_s < 2.0 and loop_s < 10.0, (prepare_s, loop_s)
